"""``EdgeClient``: encode point clouds on the device and classify them in the cloud over gRPC
(``splitinfer.v2.Inference``, docs/protocol.md).

    from edge_client import EdgeClient

    with EdgeClient("127.0.0.1:50051", model="micro-p1024-l1000") as client:
        r = client.classify(points)                  # one cloud (N, 3), unary call
        print(r.class_name, r.bits, r.rtt_ms)
        for r in client.stream(clouds):              # many clouds over one ClassifyStream
            print(r.seq, r.class_name)
        report = client.run(clouds)                  # the same, collected: report.summary()

The edge half of the model (ONNX encoder + CDF tables + config) is loaded from the local model
repository (``splitinfer models pull`` fetches it from the server). A stream opens with a header
binding it to the model's digest; every later message is one frame's latent bytes. Answers are
compact (seq, label index, probability); class names come from the local model's metadata,
``top_k`` asks for the k most probable classes, ``timings`` for the server's timings.

Bandwidth-adaptive rate: ``client.run(clouds, controller=RateController(...))`` encodes each
cloud with the model the controller picks from what it learned from the acknowledgements so far
(``edge_client/adaptive.py``; ``splitinfer stream --family ... --latency-budget MS``); a model
switch resends the header (with the new model) in front of that frame.
``slowdown=K`` emulates a device K times slower (every encode takes K times as long).

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

Threads: ``stream`` encodes in the caller's thread while gRPC threads send and receive. Python's
default 5 ms GIL switch interval can then hold answers behind an encode and inflate the
measured round trips; ``splitinfer stream`` sets ``sys.setswitchinterval(0.001)``, and so may an
application that cares about them.

No torch: numpy, onnxruntime, constriction and grpcio.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import os
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import grpc
import numpy as np

from splitinfer.codec import BitstreamError, Container
from splitinfer.pointcloud.io import Cloud
from splitinfer.pointcloud.preprocess import InvalidPointCloud, validate
from splitinfer.proto.v2 import inference_pb2 as pb2
from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc

from . import balancing

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
             grpc.StatusCode.INTERNAL, grpc.StatusCode.ABORTED}
FRAME_RETRYABLE = {int(grpc.StatusCode.UNAVAILABLE.value[0])}
_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


class ClassifyError(RuntimeError):
    """A call failed with a gRPC status."""

    def __init__(self, code: grpc.StatusCode, details: str):
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class StreamError(RuntimeError):
    """A stream could not be completed (a fatal status, or no progress for too long)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, unanswered: int = 0):
        super().__init__(message)
        self.code = code
        self.unanswered = unanswered


@dataclass
class Result:
    """The answer to one frame, with the client's and the server's timings."""
    seq: int
    name: str
    label: int | None = None              # predicted class index (None when the frame failed)
    class_name: str | None = None          # from the model's metadata
    probability: float | None = None       # of the predicted class
    top: list[tuple[str, float]] = field(default_factory=list)   # top_k (name, probability)
    true_label: int | None = None
    payload_bytes: int = 0                 # what was sent: the coded latent (a container, unary)
    header_bytes: int = 0                  # a unary container's header (0 for stream frames)
    encode_ms: float = 0.0                 # client: preprocess + ONNX encoder + range coding
    rtt_ms: float = 0.0                    # client: last send -> answer
    decode_ms: float = 0.0                 # server
    inference_ms: float = 0.0              # server (the whole batch)
    queue_ms: float = 0.0                  # server
    batch_size: int = 0
    sends: int = 1                         # 1 + resends
    duplicate: bool = False                # the server answered from its idempotency memory
    error: str | None = None               # "CODE: message" when the server rejected the frame
    backoff_ms: float = 0.0                # client: time waited before resends (queue full)
    model: str | None = None               # the model the frame was encoded with
    wait_ms: float = 0.0                   # client: encoded -> first sent (waiting for the window)
    response_bytes: int = 0                # serialized size of the answer

    @property
    def latency_ms(self) -> float:
        """End to end on the device: encode + wait for the window + send -> answer."""
        return self.encode_ms + self.wait_ms + self.rtt_ms

    @property
    def bits(self) -> int:
        """Coded latent bits: the rate of the codec (a unary container's header comes on top)."""
        return 8 * (self.payload_bytes - self.header_bytes)

    @property
    def container_bits(self) -> int:
        return 8 * self.payload_bytes

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def correct(self) -> bool | None:
        if self.true_label is None or self.label is None:
            return None
        return self.label == self.true_label

    def record(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["bits"] = self.bits
        d["container_bits"] = self.container_bits
        d["correct"] = self.correct
        d["latency_ms"] = round(self.latency_ms, 4)
        d["top"] = [[n, round(p, 6)] for n, p in self.top]
        for k in ("encode_ms", "rtt_ms", "decode_ms", "inference_ms", "queue_ms", "wait_ms"):
            d[k] = round(d[k], 4)
        return d


def _pct(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


@dataclass
class Report:
    """Everything a stream produced: per-frame results and the stream's counters."""
    model: str
    results: list[Result]
    sent: int = 0                # frames sent at least once
    resent: int = 0              # extra sends after reconnects or transient refusals
    reconnects: int = 0
    dropped_duplicates: int = 0  # answers to seqs already answered, dropped by the client
    lost: int = 0                # frames never answered (the stream gave up)
    wall_s: float = 0.0
    error: str | None = None

    def summary(self) -> dict[str, Any]:
        ok = [r for r in self.results if r.ok]
        timed = [r for r in ok if r.batch_size]    # answers that carried the server's timings
        labelled = [r for r in ok if r.correct is not None]
        rtt = [r.rtt_ms for r in ok]
        return {
            "model": self.model,
            "frames_sent": self.sent,
            "acknowledged": len(self.results),
            "succeeded": len(ok),
            "failed": len(self.results) - len(ok),
            "lost": self.lost,
            "resent": self.resent,
            "reconnects": self.reconnects,
            "dropped_duplicates": self.dropped_duplicates,
            "server_duplicates": sum(r.duplicate for r in self.results),
            "labelled": len(labelled),
            "accuracy": (sum(bool(r.correct) for r in labelled) / len(labelled)) if labelled else None,
            "bits_mean": _mean([r.bits for r in ok]),
            "container_bits_mean": _mean([r.container_bits for r in ok]),
            "encode_ms_mean": _mean([r.encode_ms for r in self.results]),
            "server_decode_ms_mean": _mean([r.decode_ms for r in timed]),
            "server_inference_ms_mean": _mean([r.inference_ms for r in timed]),
            "server_queue_ms_mean": _mean([r.queue_ms for r in timed]),
            "batch_size_mean": _mean([r.batch_size for r in timed]),
            "rtt_ms_mean": _mean(rtt),
            "rtt_ms_p50": _pct(rtt, 50),
            "rtt_ms_p95": _pct(rtt, 95),
            "latency_ms_p50": _pct([r.latency_ms for r in ok], 50),
            "latency_ms_p95": _pct([r.latency_ms for r in ok], 95),
            "models": dict(collections.Counter(r.model for r in self.results if r.model)),
            "wall_s": self.wall_s,
            "clouds_per_s": (len(self.results) / self.wall_s) if self.wall_s > 0 else None,
            "error": self.error,
        }

    def to_json(self) -> dict[str, Any]:
        return {"frames": [r.record() for r in self.results], "summary": self.summary()}


def _as_cloud(item, index: int) -> Cloud:
    if isinstance(item, Cloud):
        return item
    if isinstance(item, tuple):
        name, pts = item[0], item[1]
        label = item[2] if len(item) > 2 else None
        return Cloud(str(name), pts, None if label is None else int(label))
    return Cloud(f"cloud {index}", item)


def _header_size(payload: bytes) -> int:
    """The container header's size (0 for a payload that is not a valid container)."""
    try:
        return Container.unpack(payload).header_size
    except BitstreamError:
        return 0


def _from_response(frame: "_Frame", resp, rtt_ms: float, classes: Sequence[str], header_bytes: int = 0) -> Result:
    """A Result from a v2 StreamResponse or ClassifyResponse."""
    r = Result(seq=frame.seq, name=frame.name, true_label=frame.label, payload_bytes=len(frame.payload),
               header_bytes=header_bytes, encode_ms=frame.encode_ms, rtt_ms=rtt_ms, sends=frame.sends,
               duplicate=getattr(resp, "duplicate", False), model=frame.model, wait_ms=frame.wait_ms,
               response_bytes=resp.ByteSize(), backoff_ms=frame.backoff_ms)
    err = getattr(resp, "error", None)
    if err is not None and resp.HasField("error") and err.code != 0:
        r.error = f"{_CODE_NAMES.get(err.code, err.code)}: {err.message}"
        return r
    r.label, r.probability = resp.label, resp.probability
    r.class_name = classes[resp.label] if resp.label < len(classes) else (resp.class_name or None)
    r.top = [(classes[i] if i < len(classes) else str(i), p)
             for i, p in zip(resp.top_index, resp.top_probability)]
    if resp.HasField("timings"):
        tm = resp.timings
        r.decode_ms, r.inference_ms, r.queue_ms, r.batch_size = tm.decode_ms, tm.inference_ms, tm.queue_ms, tm.batch_size
    return r


def _failed(frame: "_Frame", error: str) -> Result:
    return Result(seq=frame.seq, name=frame.name, true_label=frame.label, payload_bytes=len(frame.payload),
                  encode_ms=frame.encode_ms, sends=frame.sends, model=frame.model, wait_ms=frame.wait_ms,
                  error=error)


@dataclass
class _Frame:
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


class _Attempt:
    """One ClassifyStream call; ``dead`` stops its request generator."""
    def __init__(self):
        self.dead = False


FATAL_STREAM = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.RESOURCE_EXHAUSTED,
                grpc.StatusCode.UNIMPLEMENTED}


class _StreamSession:
    """The ledger and the connection loop of one logical stream (``stream_id`` + session)."""

    def __init__(self, client: "EdgeClient", model: str, stream_id: str, window: int, controller=None):
        self.client = client
        self.model = model
        self.controller = controller      # an adaptive.RateController, told of every send and answer
        self.stream_id = stream_id
        self.session = os.urandom(8)      # a fresh ledger on the server for every run
        self.window = max(1, window)
        self.cond = threading.Condition()
        self.pending: dict[int, _Frame] = {}        # queued or sent, not answered
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
    def put(self, frame: _Frame) -> None:
        with self.cond:
            if self.fatal is not None:
                self.results.append(_failed(frame, self.fatal))
                return
            if len(frame.payload) > self.client.max_message_bytes:
                self.results.append(_failed(frame, f"RESOURCE_EXHAUSTED: frame of {len(frame.payload)} bytes "
                                                   f"is over the limit of {self.client.max_message_bytes} bytes"))
                return
            while len(self.pending) >= self.window and not self.finished:
                self.cond.wait(0.5)
            if self.finished:
                if self.fatal is not None:
                    self.results.append(_failed(frame, self.fatal))
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

    def _next(self, attempt: _Attempt) -> _Frame | None:
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

    def _requests(self, attempt: _Attempt) -> Iterator:
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
                from .adaptive import request_wire_bytes
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
            self.results.append(_from_response(frame, resp, (now - frame.t_send) * 1e3,
                                               self.client.classes(model)))
            self.cond.notify_all()
        if self.controller is not None:
            from .adaptive import response_wire_bytes
            tm = resp.timings
            self.controller.on_ack(resp.seq, now, tm.decode_ms + tm.queue_ms + tm.inference_ms,
                                   response_wire_bytes(resp.ByteSize()))
        return True

    def _fail_all(self, why: str) -> None:
        """The stream was refused as a whole: every frame, pending or to come, fails with ``why``."""
        with self.cond:
            self.fatal = why
            for seq in sorted(self.pending):
                self.results.append(_failed(self.pending[seq], why))
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
                attempt = _Attempt()
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


class EdgeClient:
    """A connection to a splitinfer cloud server plus the local edge encoder of ``model``.

    server: "host:port". model: default model name for encode/classify/stream.
    models_dir: the local model repository (default: models/ or $SPLITINFER_MODELS).
    token: sent as ``authorization: Bearer <token>``. tls_ca: PEM root certificate (enables TLS);
    tls_server_name: the name the certificate must carry when it differs from the host.
    lb: client-side load balancing over the addresses of ``server`` ("round_robin" or
    "pick_first"; ``edge_client.balancing``), e.g. a ``dns:///`` name or "ip:port,ip:port".
    """

    def __init__(self, server: str, model: str | None = None, *, models_dir: str | Path | None = None,
                 token: str | None = None, tls: bool = False, tls_ca: str | Path | None = None,
                 tls_server_name: str | None = None, window: int = 32, timeout_s: float | None = 30.0,
                 reconnect_timeout_s: float = 30.0, backoff_initial_s: float = 0.05,
                 backoff_max_s: float = 2.0, frame_retries: int = 20, seed: int = 0,
                 max_message_bytes: int = 1 << 20, slowdown: float = 1.0, top_k: int = 0,
                 timings: bool = False, lb: str | None = None):
        self.server = server
        self.model_name = model
        self.models_dir = models_dir
        self.window = window
        self.timeout_s = timeout_s
        self.reconnect_timeout_s = reconnect_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.frame_retries = frame_retries
        self.seed = seed
        self.slowdown = max(1.0, float(slowdown))  # emulate a device this many times slower
        self.max_message_bytes = max_message_bytes   # larger frames fail here, unsent
        self.top_k = top_k                            # classes in each answer's top list
        self.timings = timings                        # answers carry the server's timings
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        options = [
            ("grpc.max_send_message_length", max_message_bytes + 4096),
            ("grpc.max_receive_message_length", 4 * 1024 * 1024),
            ("grpc.http2.bdp_probe", 0),   # no BDP PINGs on a thin link (docs/protocol.md)
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.keepalive_time_ms", 20000),
            ("grpc.keepalive_timeout_ms", 10000),
            ("grpc.enable_retries", 0),
        ]
        if tls_server_name:
            options.append(("grpc.ssl_target_name_override", tls_server_name))
        options += balancing.channel_options(lb)
        address = balancing.target(server)
        if tls or tls_ca:
            root = Path(tls_ca).read_bytes() if tls_ca else None
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(root), options)
        else:
            self._channel = grpc.insecure_channel(address, options)
        self._stub = pb2_grpc.InferenceStub(self._channel)
        self._repo = None
        self._models: dict[str, Any] = {}

    # -- local edge model -------------------------------------------------------------------------------
    def edge_model(self, model: str | None = None):
        """The local runtime (ONNX encoder + tables) of ``model``."""
        name = model or self.model_name
        if not name:
            raise ValueError("no model: pass model= to EdgeClient or to the call")
        if name not in self._models:
            from splitinfer.repository import EDGE_ROLES, ModelRepository
            if self._repo is None:
                self._repo = ModelRepository(self.models_dir)
            self._models[name] = self._repo.load(name, roles=EDGE_ROLES)  # the edge half is checked
        return self._models[name]

    def digest(self, model: str | None = None) -> bytes:
        """The 32-byte digest of the local ``model`` (a stream's header carries it)."""
        return bytes.fromhex(self.edge_model(model).config.digest)

    def classes(self, model: str | None = None) -> list[str]:
        """Class names from the local model's metadata."""
        return self.edge_model(model).classes

    def encode(self, points, model: str | None = None, name: str = "input",
               container: bool = False) -> tuple[bytes, float]:
        """(bytes, encode ms) of one raw cloud (N, 3): validate, preprocess, encode. The bytes are
        a stream frame's latent, or a self-describing container with ``container=True``."""
        m = self.edge_model(model)
        pts = validate(points, name)
        t0 = time.perf_counter()
        data = (m.encode if container else m.encode_latent)(pts, seed=self.seed, name=name)
        took = time.perf_counter() - t0
        if self.slowdown > 1:  # a slower device: the same work takes `slowdown` times as long
            time.sleep(took * (self.slowdown - 1))
            took *= self.slowdown
        return data, took * 1e3

    # -- unary ----------------------------------------------------------------------------------------
    def classify_payload(self, payload: bytes, model: str | None = None, timeout_s: float | None = None,
                         check_digest: bool = True):
        """Send one container (unary); returns the raw ``ClassifyResponse``. With ``check_digest``
        (and the model in the local repository) the server checks it is the same model."""
        name = model or self.model_name or ""
        req = pb2.ClassifyRequest(model=name, payload=payload, top_k=self.top_k)
        if check_digest and name:
            try:
                req.model_digest = self.digest(name)
            except Exception:  # noqa: BLE001 - not in the local repository: the container decides
                pass
        try:
            return self._stub.Classify(req, timeout=timeout_s if timeout_s is not None else self.timeout_s,
                                       metadata=self._metadata)
        except grpc.RpcError as e:
            raise ClassifyError(e.code(), e.details()) from None

    def classify(self, points, model: str | None = None, name: str = "input",
                 label: int | None = None, timeout_s: float | None = None) -> Result:
        """Encode one cloud (N, 3) here and classify it in the cloud (a unary call)."""
        model = model or self.model_name
        payload, enc = self.encode(points, model, name, container=True)
        frame = _Frame(0, payload, name, label, enc, sends=1, model=model)
        frame.t_send = time.perf_counter()
        resp = self.classify_payload(payload, model, timeout_s)
        return _from_response(frame, resp, (time.perf_counter() - frame.t_send) * 1e3, self.classes(model),
                              _header_size(payload))

    def list_models(self, timeout_s: float | None = None) -> list[dict[str, Any]]:
        try:
            r = self._stub.ListModels(pb2.ListModelsRequest(), metadata=self._metadata,
                                      timeout=timeout_s if timeout_s is not None else self.timeout_s)
        except grpc.RpcError as e:
            raise ClassifyError(e.code(), e.details()) from None
        return [{"name": m.name, "version": m.version, "task": m.task, "size": m.size,
                 "points": m.points, "channels": m.channels, "classes": list(m.classes),
                 "lmbda": m.lmbda, "test_accuracy": m.test_accuracy, "bits_mean": m.bits_mean,
                 "digest": m.digest}
                for m in r.models]

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        """Block until the channel is connected (raises ClassifyError on timeout)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise ClassifyError(grpc.StatusCode.UNAVAILABLE,
                                f"{self.server} not reachable within {timeout_s} s") from None

    # -- streaming --------------------------------------------------------------------------------------
    def stream(self, clouds: Iterable, model: str | None = None, *, window: int | None = None,
               stream_id: str | None = None, payloads: bool = False,
               stats: dict | None = None, controller=None) -> Iterator[Result]:
        """Encode and stream clouds over one ClassifyStream; yields one Result per cloud, in the
        order answers arrive (match them by ``seq``, the cloud's index).

        clouds: arrays (N, 3), ``Cloud``s, or (name, points[, label]) tuples; with
        ``payloads=True``, already encoded frames (the model's stream payload: ``encode_latent``
        bytes; a container for cloud-only models) as bytes or (name, bytes[, label]).
        An invalid cloud raises InvalidPointCloud (naming it) before it is sent. ``stats``, when
        given, receives the stream's counters when the generator ends.

        controller: an ``edge_client.adaptive.RateController``: each cloud is encoded with the
        model it chooses at that moment (``Result.model`` says which), and it is told of every
        send and answer (see ``warm_up`` to measure the candidates' encode times first).
        """
        if controller is not None:
            model = model or controller.candidates[0].name
        model = model or self.model_name
        if not model:
            raise ValueError("no model: pass model= to EdgeClient or to stream()")
        sess = _StreamSession(self, model, stream_id or uuid.uuid4().hex, window or self.window, controller)
        if controller is not None:
            controller.on_stream(sess.stream_id)
        sess.thread.start()
        try:
            for seq, item in enumerate(clouds):
                if payloads:
                    if isinstance(item, (bytes, bytearray)):
                        name, data, label = f"frame {seq}", bytes(item), None
                    else:
                        name, data = item[0], bytes(item[1])
                        label = item[2] if len(item) > 2 else None
                    frame = _Frame(seq, data, str(name), label, 0.0, model=model)
                elif sess.fatal is not None:   # refused as a whole: fail it without encoding
                    cloud = _as_cloud(item, seq)
                    frame = _Frame(seq, b"", cloud.name, cloud.label, 0.0, model=model)
                else:
                    cloud = _as_cloud(item, seq)
                    use = model
                    if controller is not None:
                        use = controller.choose(time.perf_counter()).model
                    data, enc = self.encode(cloud.points, use, cloud.name)
                    if controller is not None:
                        controller.on_encoded(use, enc)
                    frame = _Frame(seq, data, cloud.name, cloud.label, enc, model=use)
                frame.t_ready = time.perf_counter()
                sess.put(frame)
                yield from sess.take_results(block=False)
                if sess.finished and sess.fatal is None:
                    break
            sess.close_input()
            while True:
                got = sess.take_results(block=True)
                yield from got
                if not got and sess.finished:
                    break
            yield from sess.take_results(block=False)
            if sess.error is not None:
                raise sess.error
        finally:
            if not sess.finished:
                sess.abort()
            sess.thread.join(timeout=5)
            if stats is not None:
                stats.update(sent=sess.sent, resent=sess.resent, reconnects=sess.reconnects,
                             dropped_duplicates=sess.dropped_duplicates, lost=len(sess.pending),
                             stream_id=sess.stream_id)

    def warm_up(self, models: Sequence[str], points=None, repeats: int = 3) -> dict[str, float]:
        """Load every model's encoder, run it once, and time ``repeats`` encodes (median ms,
        including the device slowdown): the encode times an adaptive controller starts from."""
        if points is None:
            points = np.random.default_rng(0).normal(size=(2048, 3)).astype(np.float32)
        out = {}
        for name in models:
            self.encode(points, name)
            out[name] = float(np.median([self.encode(points, name)[1] for _ in range(max(1, repeats))]))
        return out

    def run(self, clouds: Iterable, model: str | None = None, *, window: int | None = None,
            stream_id: str | None = None, on_result=None, payloads: bool = False,
            controller=None) -> Report:
        """``stream`` collected into a Report (a stream that gives up is reported, not raised)."""
        if controller is not None:
            model = model or "adaptive"
        model = model or self.model_name
        results: list[Result] = []
        stats: dict = {}
        t0 = time.perf_counter()
        error = None
        try:
            for r in self.stream(clouds, None if controller is not None else model, window=window,
                                 stream_id=stream_id, stats=stats, payloads=payloads,
                                 controller=controller):
                results.append(r)
                if on_result is not None:
                    on_result(r)
        except StreamError as e:
            error = str(e)
        results.sort(key=lambda r: r.seq)
        return Report(model=model or "", results=results, sent=stats.get("sent", 0),
                      resent=stats.get("resent", 0), reconnects=stats.get("reconnects", 0),
                      dropped_duplicates=stats.get("dropped_duplicates", 0), lost=stats.get("lost", 0),
                      wall_s=time.perf_counter() - t0, error=error)

    # -- lifetime ---------------------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "EdgeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ClassifyError", "EdgeClient", "InvalidPointCloud", "Report", "Result", "StreamError"]
