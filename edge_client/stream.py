"""One logical stream of the edge client (``stream_id`` + session) over ``ClassifyStream``: the
window, the ledger of unanswered seqs, resends after reconnects and transient refusals, the
connection loop in its own thread. ``EdgeClient.stream`` feeds it and yields its results.

Streaming semantics (``stream``/``run``):

- flow control: at most ``window`` frames are sent and not yet answered;
- a dropped connection or a restarted server: the client reconnects with exponential backoff
  (jittered, from ``backoff_initial_s`` to ``backoff_max_s``) and resends every frame not yet
  answered, in order, under the same ``stream_id`` and session; it gives up after
  ``reconnect_timeout_s`` without progress (``StreamError``, the unanswered frames counted as
  lost);
- exactly once: the client keeps a ledger of unanswered seqs; an answer to a seq already
  answered is dropped, so every frame yields exactly one ``Result``. A server that stayed up
  also recognises resent frames by (stream id, session, seq) and does not classify or count them
  again. Each ``stream`` call draws a fresh session id, so running the same ``stream_id`` again
  with other clouds is a new ledger, never answered from the old one;
- a frame the server rejects (a per-frame ``error``) is a ``Result`` with ``error`` set; frames
  refused as transiently unavailable (queue full, shutting down) are resent after a jittered,
  exponentially growing backoff (per frame, from ``backoff_initial_s``);
- a frame larger than ``max_message_bytes`` is a ``Result`` with RESOURCE_EXHAUSTED, not sent;
- a stream the server refuses as a whole (FAILED_PRECONDITION: the edge's model is not the
  server's; NOT_FOUND; INVALID_ARGUMENT) answers every frame with that error, none with a label,
  and ``stream`` raises ``StreamError`` at the end.
"""
from __future__ import annotations

import collections
import heapq
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Iterator

import grpc

from splitinfer.proto.v2 import inference_pb2 as pb2

from .errors import StreamError
from .results import Result, failed_result, from_response

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED}
FRAME_RETRYABLE = {int(grpc.StatusCode.UNAVAILABLE.value[0])}
FATAL_STREAM = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNIMPLEMENTED}


@dataclass
class Frame:
    """One cloud's coded frame on its way: sends, timings, the model it was encoded with."""
    seq: int
    payload: bytes
    name: str
    label: int | None
    encode_ms: float
    sends: int = 0
    t_send: float = 0.0
    retries: int = 0
    model: str | None = None       # None: the stream's model
    t_ready: float = 0.0           # when it was encoded (perf_counter)
    wait_ms: float = 0.0           # t_ready -> first send
    backoff_ms: float = 0.0        # waited before resends
    dropped_points: int = 0        # NaN/inf points dropped before encoding


class Attempt:
    """One ClassifyStream call; ``dead`` stops its request generator."""

    def __init__(self):
        self.dead = False


class StreamSession:
    """The ledger and the connection loop of one logical stream (``stream_id`` + session).

    client: the ``EdgeClient`` that owns it (its stub and call metadata, limits, backoff and
    retry settings, the local models' digests and class names)."""

    def __init__(self, client, model: str, stream_id: str, window: int, controller=None):
        self.client = client
        self.model = model
        self.controller = controller      # an adaptive.RateController, told of every send and answer
        self.stream_id = stream_id
        self.session = os.urandom(8)      # a fresh ledger on the server for every run
        self.window = max(1, window)
        self.cond = threading.Condition()
        self.pending: dict[int, Frame] = {}        # queued or sent, not answered
        self.to_send: collections.deque[int] = collections.deque()
        self.delayed: list[tuple[float, int]] = []  # (due, seq): resends waiting out their backoff
        self.results: collections.deque[Result] = collections.deque()
        self.input_closed = False
        self.finished = False
        self.aborted = False
        self.fatal: str | None = None     # "CODE: details" of a stream refused as a whole
        self.error: BaseException | None = None
        self.sent = self.resent = self.reconnects = self.dropped_duplicates = 0
        self._call = None
        self.thread = threading.Thread(target=self._run, name=f"edge-stream-{stream_id[:8]}", daemon=True)

    # -- producer side (the caller's thread) ---------------------------------------------------------
    def put(self, frame: Frame) -> None:
        with self.cond:
            if self.fatal is not None:
                self.results.append(failed_result(frame, self.fatal))
                return
            if len(frame.payload) > self.client.max_message_bytes:
                self.results.append(failed_result(
                    frame, f"RESOURCE_EXHAUSTED: frame of {len(frame.payload)} bytes "
                           f"is over the limit of {self.client.max_message_bytes} bytes"))
                return
            while len(self.pending) >= self.window and not self.finished:
                self.cond.wait(0.5)
            if self.finished:
                if self.fatal is not None:
                    self.results.append(failed_result(frame, self.fatal))
                return
            self.pending[frame.seq] = frame
            self.to_send.append(frame.seq)
            self.cond.notify_all()

    def close_input(self) -> None:
        with self.cond:
            self.input_closed = True
            self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self.aborted = True
            self.finished = True
            self.cond.notify_all()
        call = self._call
        if call is not None:
            call.cancel()

    def take_results(self, block: bool) -> list[Result]:
        with self.cond:
            if block:
                while not self.results and not self.finished:
                    self.cond.wait(0.5)
            out = list(self.results)
            self.results.clear()
            return out

    # -- the connection loop (its own thread) -------------------------------------------------------
    def _header(self, model: str):
        c = self.client
        return pb2.StreamHeader(model=model, model_digest=c.digest(model), stream_id=self.stream_id,
                                session=self.session, top_k=c.top_k, names=False,
                                timings=c.timings or self.controller is not None)

    def _next(self, attempt: Attempt) -> Frame | None:
        """The next frame to send (None: stop); under the lock."""
        while True:
            if attempt.dead or self.aborted:
                return None
            if self.delayed:
                now = time.perf_counter()
                while self.delayed and self.delayed[0][0] <= now:
                    self.to_send.append(heapq.heappop(self.delayed)[1])
            if self.to_send:
                frame = self.pending.get(self.to_send.popleft())
                if frame is not None:
                    return frame
                continue
            if self.input_closed and not self.pending:
                return None  # half-close: everything is answered
            wait = 0.5 if not self.delayed else min(0.5, max(0.0, self.delayed[0][0] - time.perf_counter()))
            self.cond.wait(wait)

    def _requests(self, attempt: Attempt) -> Iterator:
        model, last = None, None
        while True:
            with self.cond:
                frame = self._next(attempt)
                if frame is None:
                    return
                first = frame.sends == 0
                if first:
                    self.sent += 1
                else:
                    self.resent += 1
                frame.sends += 1
                frame.t_send = time.perf_counter()
                if first and frame.t_ready:
                    frame.wait_ms = max(0.0, (frame.t_send - frame.t_ready) * 1e3)
            use = frame.model or self.model
            req = pb2.StreamRequest(latent=frame.payload)
            if use != model:                    # the first frame of a call, or a model switch
                req.header.CopyFrom(self._header(use))
                model = use
            if last is None or frame.seq != last + 1:
                req.seq = frame.seq             # implicit otherwise: the previous seq + 1
            last = frame.seq
            if self.controller is not None and first:
                from .rate_control import request_wire_bytes
                self.controller.on_send(frame.seq, frame.t_send, use, request_wire_bytes(len(frame.payload)))
            yield req

    def _on_response(self, resp) -> bool:
        """Book one answer; True when it made progress."""
        now = time.perf_counter()
        with self.cond:
            frame = self.pending.get(resp.seq)
            if frame is None or frame.sends == 0:
                self.dropped_duplicates += 1
                return False
            if (resp.HasField("error") and resp.error.code in FRAME_RETRYABLE
                    and frame.retries < self.client.frame_retries):
                # refused for now (queue full, shutting down): send it again after a backoff
                c = self.client
                delay = min(c.backoff_initial_s * 2 ** frame.retries, c.backoff_max_s) * (0.5 + random.random())
                frame.retries += 1
                frame.backoff_ms += delay * 1e3
                heapq.heappush(self.delayed, (now + delay, frame.seq))
                self.cond.notify_all()
                return False
            del self.pending[resp.seq]
            model = frame.model or self.model
            frame.model = model
            self.results.append(from_response(frame, resp, (now - frame.t_send) * 1e3,
                                              self.client.classes(model)))
            self.cond.notify_all()
        if self.controller is not None:
            from .rate_control import response_wire_bytes
            tm = resp.timings
            self.controller.on_ack(resp.seq, now, tm.decode_ms + tm.queue_ms + tm.inference_ms,
                                   response_wire_bytes(resp.ByteSize()))
        return True

    def _fail_all(self, why: str) -> None:
        """The stream was refused as a whole: every frame, pending or to come, fails with ``why``."""
        with self.cond:
            self.fatal = why
            for seq in sorted(self.pending):
                self.results.append(failed_result(self.pending[seq], why))
            self.pending.clear()
            self.to_send.clear()
            self.delayed.clear()
            self.cond.notify_all()

    def _run(self) -> None:
        c = self.client
        backoff = c.backoff_initial_s
        last_progress = time.monotonic()
        try:
            while True:
                with self.cond:
                    if self.aborted or (self.input_closed and not self.pending):
                        return
                    # a new call: everything unanswered is sent again, in order
                    self.to_send = collections.deque(sorted(self.pending))
                    self.delayed.clear()
                attempt = Attempt()
                call = c._stub.ClassifyStream(self._requests(attempt), metadata=c._metadata)
                self._call = call
                failure: grpc.RpcError | None = None
                try:
                    for resp in call:
                        if self._on_response(resp):
                            last_progress = time.monotonic()
                            backoff = c.backoff_initial_s
                except grpc.RpcError as e:
                    failure = e
                finally:
                    attempt.dead = True
                    with self.cond:
                        self.cond.notify_all()
                    call.cancel()
                    self._call = None
                if self.aborted:
                    return
                if failure is not None and failure.code() in FATAL_STREAM:
                    why = f"{failure.code().name}: {failure.details()}"
                    self._fail_all(why)
                    raise StreamError(f"stream refused: {why}", failure.code(), 0)
                if failure is not None and failure.code() not in RETRYABLE:
                    raise StreamError(f"stream failed: {failure.code().name}: {failure.details()}",
                                      failure.code(), len(self.pending))
                with self.cond:
                    if self.input_closed and not self.pending:
                        return
                if time.monotonic() - last_progress > c.reconnect_timeout_s:
                    why = (f"{failure.code().name}: {failure.details()}" if failure is not None
                           else "the server ended the stream")
                    raise StreamError(f"gave up after {c.reconnect_timeout_s:.0f} s without progress "
                                      f"({why}); {len(self.pending)} frames unanswered",
                                      failure.code() if failure is not None else None, len(self.pending))
                time.sleep(backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, c.backoff_max_s)
                self.reconnects += 1
        except BaseException as e:  # noqa: BLE001 - handed to the caller's thread
            self.error = e
        finally:
            with self.cond:
                self.finished = True
                self.cond.notify_all()
