"""The cloud inference service on grpc.aio: ``splitinfer.v2.Inference`` (docs/protocol.md) and,
deprecated, ``splitinfer.v1.Inference`` (served beside it for one more release).

Per frame: check its size (RESOURCE_EXHAUSTED), decode y_hat on the event loop (a v2 stream frame:
the range-coded latent alone, ``decode_latent``; a unary call or a v1 frame: a container; any
failure: INVALID_ARGUMENT), queue y_hat on the model's dynamic batcher (a full queue: UNAVAILABLE,
retry later; a container made by other model files than the served version's: FAILED_PRECONDITION),
run the ONNX classifier on the batch, answer. Older versions of a model are served as
``NAME@VERSION`` beside the newest (``NAME``). Cloud-only models (task
``pointcloud-input-classification``, a plain PointNet) take the same path with the points
themselves as input: raw float32 or Draco-coded containers (``splitinfer.pointcloud.input_model``).

Semantics:

- A v2 stream opens with a header naming the model and its digest; a digest that is not the
  served model's ends the stream at once with FAILED_PRECONDITION (both digests and the fix in
  the message): no frame is ever answered by another model. A bad frame gets a response with
  ``error`` (code and message) and the stream goes on; so does a frame over the size limit (up
  to the transport's limit, ``transport_limit``).
- Idempotency (``cloud_server.ledger``): frames are remembered by (stream id, session, seq) and
  their payload digest, bounded in bytes per stream and in total, until ``ledger_grace_s`` after
  the stream's last call closed. A frame seen before is answered again with ``duplicate`` and is
  not classified, nor counted in the request metrics, again; a frame still in flight is answered
  when its twin completes; a seq reused for a different payload gets ALREADY_EXISTS.
- Flow control: a stream reads at most ``max_stream_inflight`` frames ahead of the answers the
  client has taken; a client that does not read its answers stops being read.
- Metrics count a frame as answered once its answer was written to the client.
- Deadlines: a frame whose deadline passes while queued is not run (DEADLINE_EXCEEDED).
- Shutdown (SIGTERM, SIGINT): health turns NOT_SERVING, new calls are refused, streams stop
  reading, answer the frames they had read and end with UNAVAILABLE unless the client had closed
  its side and every frame was answered (the client resends what was not answered), in-flight
  unary calls finish (within ``grace_s``), then the process exits 0.
- No torch: numpy, onnxruntime and constriction only.
"""
from __future__ import annotations

DEADLINE_SLACK_S = 0.05

import asyncio
import hashlib
import json
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import Gauge

from splitinfer.proto import inference_pb2 as pb1
from splitinfer.proto import inference_pb2_grpc as pb1_grpc
from splitinfer.proto.v2 import inference_pb2 as pb2
from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc
from splitinfer.codec import ModelMismatch
from splitinfer.repository import ModelError, ModelRepository

from .auth import TokenAuthInterceptor
from .batcher import DynamicBatcher, Expired, NonFiniteOutput, QueueFull, Stopped
from .ledger import Conflict, Ledger
from .telemetry import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT, FrameMetrics, Metrics
from .validation import unknown_model

log = logging.getLogger("splitinfer.serve")

SERVICE_NAME = pb2.DESCRIPTOR.services_by_name["Inference"].full_name     # "splitinfer.v2.Inference"
SERVICE_NAME_V1 = pb1.DESCRIPTOR.services_by_name["Inference"].full_name  # deprecated
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024   # a payload is a few bytes to a few hundred; 64 KiB is ample
_ENVELOPE_BYTES = 4096                  # request fields around the payload
_UNKNOWN = "<unknown>"
MAX_TOP_K = 5                           # the batcher's top list
PULL_CHUNK_BYTES = 256 * 1024
# split codecs (a latent: range-decoded y_hat) and cloud-only plain models (raw or Draco points)
SERVED_TASKS = ("pointcloud-classification", "pointcloud-input-classification")
_OK = grpc.StatusCode.OK


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 50051                   # 0: a free port
    models_dir: str | None = None       # default: models/ or $SPLITINFER_MODELS
    models: list[str] = field(default_factory=list)  # names to serve (default: all)
    max_batch_size: int = 64            # 1: no batching
    max_queue_delay_ms: float = 0.0     # 0: greedy batching, no waiting
    batch_executor: str = "inline"      # "inline" or "thread" (see cloud_server.batcher)
    max_queue_size: int = 4096
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_stream_inflight: int = 256      # frames of one stream read and not yet answered
    metrics_port: int | None = DEFAULT_METRICS_PORT  # None: no metrics endpoint; 0: a free port
    metrics_host: str | None = None     # default: loopback (DEFAULT_METRICS_HOST)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None    # require client certificates signed by this CA (mTLS)
    tokens: list[str] = field(default_factory=list)
    grace_s: float = 10.0
    threads: int = 1                    # onnxruntime intra-op threads per model
    ready_file: str | None = None       # JSON {"port", "metrics_port", "pid", "models"} once serving
    ledger_bytes: int = 64 << 20        # idempotency ledger, all streams
    ledger_stream_bytes: int = 1 << 20  # idempotency ledger, one stream
    ledger_grace_s: float = 60.0        # a closed stream's entries are kept this long
    max_stream_id_bytes: int = 1024     # longer stream ids: INVALID_ARGUMENT
    reuse_port: bool = False            # SO_REUSEPORT: worker processes share the port (workers.py)


class ServeError(Exception):
    """The server cannot start (bad options, no models, port taken)."""


class FrameFailure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def transport_limit(max_message_bytes: int) -> int:
    """The largest message the transport accepts: frames between ``max_message_bytes`` and this
    get a per-frame RESOURCE_EXHAUSTED; a message beyond it ends the call (gRPC's own limit)."""
    return max(1 << 20, 4 * max_message_bytes) + _ENVELOPE_BYTES


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # mark as retrieved: nobody else may be waiting


def _code(code: grpc.StatusCode) -> int:
    return code.value[0]


_EOF = object()
_DRAIN = object()


class Served:
    """One served model: its runtime, batcher, identity and per-model metric children."""

    def __init__(self, name: str, model, opts: ServerOptions, metrics: Metrics):
        self.name = name
        self.model = model
        self.classes = list(model.classes)
        self.config = model.config
        self.digest_hex = model.config.digest
        self.digest = bytes.fromhex(self.digest_hex)
        # a v2 stream frame carries the model's stream payload: the bare latent of a split codec,
        # a container for cloud-only models (its kind says raw or Draco)
        self.decode_frame = getattr(model, "decode_latent", model.decode)
        self.decode_container = model.decode
        self.bits = metrics.bits.labels(name)
        self.payload_bits = metrics.payload_bits.labels(name)
        self.decode_time = metrics.decode.labels(name)
        self.queue_time = metrics.queue.labels(name)
        self.duplicates = metrics.duplicates.labels(name)
        # the stream path's per-frame metrics, written once per batch
        self.frames = FrameMetrics(metrics.requests.labels("ClassifyStream", name), self.bits, self.payload_bits,
                                   self.decode_time, self.queue_time,
                                   metrics.latency.labels("ClassifyStream", name), metrics.inflight)
        _size, _time = metrics.batch_size.labels(name), metrics.inference.labels(name)

        def on_batch(n, secs):
            _size.observe(n)
            _time.observe(secs)
        self.batcher = DynamicBatcher(name, model.classify, opts.max_batch_size, opts.max_queue_delay_ms / 1e3,
                                      opts.max_queue_size, on_batch=on_batch, executor=opts.batch_executor).start()
        self.batcher.after_batch = self.frames.flush


class Core:
    """What both API versions share: models, batchers, metrics, the ledger, draining."""

    def __init__(self, models: dict, opts: ServerOptions, metrics: Metrics):
        self.models = models
        self.opts = opts
        self.metrics = metrics
        self.max_payload = opts.max_message_bytes
        self.served = {name: Served(name, m, opts, metrics) for name, m in models.items()}
        self.ledger = Ledger(opts.ledger_bytes, opts.ledger_stream_bytes, opts.ledger_grace_s)
        self.ledger_gauge = Gauge("splitinfer_ledger_bytes", "Idempotency ledger size (bytes charged)",
                                  registry=metrics.registry)
        self.ledger_gauge.set_function(lambda: self.ledger.bytes)
        self.ledger_streams = Gauge("splitinfer_ledger_streams", "Streams the idempotency ledger holds",
                                    registry=metrics.registry)
        self.ledger_streams.set_function(lambda: len(self.ledger))
        self._stream_queues: set[asyncio.Queue] = set()
        self._tasks: set[asyncio.Task] = set()
        self._children: dict = {}
        self.draining = False

    # -- metrics helpers --------------------------------------------------------------------------
    def child(self, metric, *labels):
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def count(self, method: str, code: grpc.StatusCode) -> None:
        self.child(self.metrics.responses, method, code.name).inc()
        if code is not _OK:
            self.child(self.metrics.errors, method, code.name).inc()

    def served_or_fail(self, name: str, method: str) -> Served:
        s = self.served.get(name)
        if s is None and "@" in name:  # NAME@VERSION of the newest version, served as NAME
            base, _, version = name.rpartition("@")
            s = self.served.get(base)
            if s is not None and str(s.config.version) != version:
                s = None
        if s is None:
            self.child(self.metrics.requests, method, _UNKNOWN).inc()
            raise FrameFailure(*unknown_model(name, self.served))
        return s

    def check_digest(self, s: Served, digest: bytes) -> None:
        if digest != s.digest:
            theirs = digest.hex() if digest else "none"
            raise FrameFailure(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"model {s.name!r}: the client's model digest {theirs} is not the served one "
                f"{s.digest_hex}; fetch the served version with `splitinfer models pull --server "
                f"ADDR {s.name}@{s.config.version}` (or update the edge's model folder)")

    # -- one frame --------------------------------------------------------------------------------
    def too_large(self, n: int) -> FrameFailure | None:
        if n > self.max_payload:
            return FrameFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"payload of {n} bytes is over the limit of {self.max_payload} bytes")
        return None

    @staticmethod
    def decode(s: Served, decode, payload: bytes) -> np.ndarray:
        """y_hat of one payload, ready for the batcher; raises FrameFailure."""
        try:
            y_hat = decode(payload)
        except (KeyboardInterrupt, SystemExit, asyncio.CancelledError, MemoryError):
            raise
        except ModelMismatch as e:  # made by other model files: the edge must pull this one
            raise FrameFailure(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        except BaseException as e:  # BitstreamError, and anything a random payload provokes
            code = getattr(e, "grpc_code", None) or grpc.StatusCode.INVALID_ARGUMENT
            raise FrameFailure(code, f"payload rejected: {type(e).__name__}: {e}") from None
        return np.asarray(y_hat, np.float32)

    @staticmethod
    def submit(s: Served, y_hat: np.ndarray, deadline: float | None, done=None):
        """Queue y_hat on the model's batcher (its future, or None with ``done``); raises FrameFailure."""
        try:
            return s.batcher.submit(y_hat, deadline, done)
        except QueueFull as e:
            raise FrameFailure(grpc.StatusCode.UNAVAILABLE, f"{e}; retry later") from None
        except Stopped as e:
            raise FrameFailure(grpc.StatusCode.UNAVAILABLE, str(e)) from None

    @staticmethod
    def failure(s: Served, e: BaseException) -> FrameFailure:
        """The FrameFailure of a batcher's exception for one frame."""
        if isinstance(e, Expired):
            return FrameFailure(grpc.StatusCode.DEADLINE_EXCEEDED, str(e))
        if isinstance(e, NonFiniteOutput):
            return FrameFailure(grpc.StatusCode.INVALID_ARGUMENT, str(e))
        log.error("model %s failed", s.name, exc_info=e)
        return FrameFailure(grpc.StatusCode.INTERNAL, f"inference failed: {e}")

    async def run(self, s: Served, payload: bytes, decode, method: str, deadline: float | None):
        """(BatchResult, decode seconds) of one payload; raises FrameFailure."""
        t0 = time.perf_counter()
        self.child(self.metrics.requests, method, s.name).inc()
        n = len(payload)
        e = self.too_large(n)
        if e is not None:
            raise e
        s.bits.inc(8 * n)
        s.payload_bits.observe(8 * n)
        self.metrics.inflight.inc()
        try:
            y_hat = self.decode(s, decode, payload)
            t1 = time.perf_counter()
            s.decode_time.observe(t1 - t0)
            fut = self.submit(s, y_hat, deadline)
            try:
                r = await fut
            except asyncio.CancelledError:
                raise
            except Exception as e:
                raise self.failure(s, e) from None
        finally:
            self.metrics.inflight.dec()
        s.queue_time.observe(r.queue_s)
        self.child(self.metrics.latency, method, s.name).observe(time.perf_counter() - t0)
        return r, t1 - t0

    async def remembered(self, stream, seq: int, digest: int, s: Served, compute, parse):
        """The answer of (stream, seq) from the ledger, or ``compute()``'s, recorded there
        (serialized: ``parse`` reads it back). Returns (answer, duplicate)."""
        ledger = self.ledger
        try:
            hit = ledger.get(stream, seq, digest)
        except Conflict as e:
            raise FrameFailure(grpc.StatusCode.ALREADY_EXISTS,
                               f"{e}: a seq is one frame; resend the same frame, or open a new "
                               f"session (a fresh session id) for new frames") from None
        if hit is not None:
            if isinstance(hit, asyncio.Future):
                try:
                    hit = await asyncio.shield(hit)
                except (FrameFailure, asyncio.CancelledError):
                    hit = None  # the first attempt failed or was abandoned: compute it afresh
            if hit is not None:
                s.duplicates.inc()
                return (parse(hit) if isinstance(hit, bytes) else hit), True
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(_retrieve)
        ledger.put(stream, seq, digest, fut)
        try:
            resp = await compute()
        except BaseException as e:
            ledger.discard(stream, seq, fut)
            if not fut.done():
                if isinstance(e, FrameFailure):
                    fut.set_exception(e)
                else:
                    fut.cancel()
            raise
        ledger.put(stream, seq, digest, resp.SerializeToString())
        if not fut.done():
            fut.set_result(resp)
        return resp, False

    def spawn(self, coro) -> asyncio.Task:
        t = asyncio.ensure_future(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def drain(self) -> None:
        """Streams stop reading, answer what they have and end with UNAVAILABLE."""
        self.draining = True
        for q in list(self._stream_queues):
            q.put_nowait(_DRAIN)

    def stop_batchers(self) -> None:
        for s in self.served.values():
            s.batcher.stop()


def deadline_of(context) -> float | None:
    left = context.time_remaining()
    return None if left is None else time.monotonic() + left


async def _unary(core: Core, method: str, context, answer):
    """Run a unary call's ``answer()`` with the status accounting both versions share."""
    try:
        resp = await answer()
    except FrameFailure as e:
        core.count(method, e.code)
        await context.abort(e.code, e.message)
    except asyncio.CancelledError:  # the client went away or its deadline passed
        left = context.time_remaining()
        # the client's and server's clocks for the deadline differ by the cancel's travel time
        expired = left is not None and left <= DEADLINE_SLACK_S
        core.count(method, grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED)
        raise
    except Exception as e:  # noqa: BLE001 - a bug answers INTERNAL, the server goes on
        log.exception("%s failed", method)
        core.count(method, grpc.StatusCode.INTERNAL)
        await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
    core.count(method, _OK)
    return resp


async def _pump(core: Core, method: str, context, reader, out: asyncio.Queue, limit: asyncio.Semaphore,
                state: dict):
    """The answering half of a stream: yields answers as they complete, releasing one read slot per
    answer written; ends the call with UNAVAILABLE when draining left frames unanswered."""
    read_task = asyncio.ensure_future(reader())
    answered, eof, draining = 0, False, core.draining
    ok, ok_n = core.child(core.metrics.responses, method, _OK.name), 0   # counted when the queue empties
    core._stream_queues.add(out)
    core.metrics.streams.inc()
    if draining:
        out.put_nowait(_DRAIN)
    try:
        while True:
            item = await out.get()
            if type(item) is tuple:
                resp, code = item
                yield resp            # returns once the answer is written to the client
                limit.release()
                answered += 1
                if code is _OK:
                    ok_n += 1
                    if out.empty():
                        ok.inc(ok_n)
                        ok_n = 0
                else:
                    core.count(method, code)
            elif item is _EOF:
                eof = not draining    # an end of input seen while draining may be the shutdown's
            elif item is _DRAIN:
                draining = True
                read_task.cancel()
            elif isinstance(item, FrameFailure):
                core.count(method, item.code)
                await context.abort(item.code, item.message)
            elif isinstance(item, Exception):
                raise item
            if (eof or draining) and answered >= state["submitted"]:
                break
        if draining and not eof:
            core.count(method, grpc.StatusCode.UNAVAILABLE)
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"server shutting down ({answered} frames answered on this call); "
                                "resend the frames not answered")
    finally:
        if ok_n:
            ok.inc(ok_n)
        read_task.cancel()
        core._stream_queues.discard(out)
        core.metrics.streams.dec()


class InferenceServicer(pb2_grpc.InferenceServicer):
    """``splitinfer.v2.Inference``."""

    def __init__(self, core: Core):
        self.core = core
        self._files: dict = {}

    async def Classify(self, request, context):
        core = self.core

        async def answer():
            s = core.served_or_fail(request.model, "Classify")
            if request.model_digest:
                core.check_digest(s, bytes(request.model_digest))
            payload = bytes(request.payload)
            r, decode_s = await core.run(s, payload, s.decode_container, "Classify", deadline_of(context))
            k = min(request.top_k, MAX_TOP_K)
            resp = pb2.ClassifyResponse(label=r.label, probability=float(r.top_prob[0]), model=s.name,
                                        payload_bytes=len(payload))
            resp.timings.decode_ms = decode_s * 1e3
            resp.timings.queue_ms = r.queue_s * 1e3
            resp.timings.inference_ms = r.inference_s * 1e3
            resp.timings.batch_size = r.batch_size
            if k:
                resp.top_index.extend(r.top_index[:k].tolist())
                resp.top_probability.extend(r.top_prob[:k].tolist())
            if request.names:
                resp.class_name = s.classes[r.label]
                if k:
                    resp.top_name.extend(s.classes[i] for i in r.top_index[:k].tolist())
            return resp
        return await _unary(core, "Classify", context, answer)

    def _bind(self, h) -> Served:
        """The served model a stream header names (checked: model, digest, stream id)."""
        core = self.core
        s = core.served_or_fail(h.model, "ClassifyStream")
        core.check_digest(s, bytes(h.model_digest))
        if len(h.stream_id.encode()) > core.opts.max_stream_id_bytes:
            raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT,
                               f"stream id of {len(h.stream_id.encode())} bytes is over the limit of "
                               f"{core.opts.max_stream_id_bytes} bytes")
        if len(h.session) > 64:
            raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT, "session id over 64 bytes")
        return s

    async def ClassifyStream(self, request_iterator, context):
        method = "ClassifyStream"
        core = self.core
        it = request_iterator.__aiter__()
        try:
            first = await it.__anext__()
        except StopAsyncIteration:
            return
        try:
            if not first.HasField("header"):
                raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                   "the first message of a stream must carry the header")
            header = first.header
            served = self._bind(header)
        except FrameFailure as e:
            core.count(method, e.code)
            await context.abort(e.code, e.message)
        deadline = deadline_of(context)
        stream = core.ledger.open(header.stream_id, bytes(header.session)) if header.stream_id else None
        opts = {"k": min(header.top_k, MAX_TOP_K), "names": header.names, "timings": header.timings}
        out: asyncio.Queue = asyncio.Queue()
        limit = asyncio.Semaphore(core.opts.max_stream_inflight)
        state = {"submitted": 0}
        ledger = core.ledger
        loop = asyncio.get_running_loop()

        def error_item(seq: int, e: Exception) -> tuple:
            if not isinstance(e, FrameFailure):
                log.error("frame %s of a stream failed", seq, exc_info=e)
                e = FrameFailure(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
            return (pb2.StreamResponse(seq=seq, error=pb2.FrameError(code=_code(e.code), message=e.message)),
                    e.code)

        def frame(s: Served, seq: int, latent: bytes, o: dict) -> None:
            """One frame without a task of its own: decoded here, queued on the batcher with a
            callback that answers it; metrics written per batch. A frame the ledger has seen
            (a resend), a seq reused or an oversized frame goes to ``one``."""
            if len(latent) > core.max_payload:
                core.spawn(one(s, seq, latent, o))
                return
            fut = None
            if stream is not None:
                digest = hash((s.name, latent))
                try:
                    hit = ledger.get(stream, seq, digest)
                except Conflict:
                    hit = True
                if hit is not None:
                    core.spawn(one(s, seq, latent, o))
                    return
                # a twin of this frame (a resend while it is in flight) awaits this future: the
                # answer, or None (failed: compute it afresh)
                fut = loop.create_future()
                ledger.put(stream, seq, digest, fut)
            t0 = time.perf_counter()
            fm = s.frames
            fm.admit(len(latent))
            try:
                y_hat = core.decode(s, s.decode_frame, latent)
                t1 = time.perf_counter()
                fm.decode_values.append(t1 - t0)

                def done(r):
                    fm.answered += 1
                    try:
                        if isinstance(r, BaseException):
                            raise core.failure(s, r)
                        fm.queue_values.append(r.queue_s)
                        fm.latency_values.append(time.perf_counter() - t0)
                        resp = self._response(s, seq, r, t1 - t0, o)
                        if fut is not None:
                            ledger.put(stream, seq, digest, resp.SerializeToString())
                            fut.set_result(resp)
                        item = (resp, _OK)
                    except Exception as e:  # noqa: BLE001 - a bad frame never ends the stream
                        if fut is not None:
                            ledger.discard(stream, seq, fut)
                            if not fut.done():
                                fut.set_result(None)
                        item = error_item(seq, e)
                    out.put_nowait(item)
                core.submit(s, y_hat, deadline, done)
            except Exception as e:  # noqa: BLE001 - refused before the batcher: answered now
                fm.answered += 1
                fm.flush()
                if fut is not None:
                    ledger.discard(stream, seq, fut)
                    fut.set_result(None)
                out.put_nowait(error_item(seq, e))

        async def one(s: Served, seq: int, latent: bytes, o: dict):
            try:
                if len(latent) > core.max_payload:   # answered here: never decoded nor remembered
                    core.child(core.metrics.requests, method, s.name).inc()
                    raise FrameFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       f"frame of {len(latent)} bytes is over the limit of "
                                       f"{core.max_payload} bytes")
                if stream is None:
                    resp, dup = await self._compute(s, seq, latent, o, deadline), False
                else:
                    resp, dup = await core.remembered(stream, seq, hash((s.name, latent)), s,
                                                      lambda: self._compute(s, seq, latent, o, deadline),
                                                      pb2.StreamResponse.FromString)
                if dup:
                    r = pb2.StreamResponse()
                    r.CopyFrom(resp)
                    r.duplicate = True
                    resp = r
                item = (resp, _OK)
            except Exception as e:  # noqa: BLE001 - a bad frame never ends the stream
                item = error_item(seq, e)
            out.put_nowait(item)

        async def reader():
            s, o, nxt, msg = served, opts, 0, first
            try:
                while True:
                    if msg is not first and msg.HasField("header"):   # the model changes here
                        try:
                            s = self._bind(msg.header)
                        except FrameFailure as e:
                            out.put_nowait(e)
                            return
                    # every message is one frame (an empty latent is a valid one: the range coder
                    # trims what the decoder implies, and a most probable y_hat may need no byte)
                    seq = msg.seq if msg.HasField("seq") else nxt
                    nxt = seq + 1
                    await limit.acquire()           # at most max_stream_inflight unanswered
                    if core.draining:
                        limit.release()
                        break
                    state["submitted"] += 1
                    frame(s, seq, msg.latent, o)
                    try:
                        msg = await it.__anext__()
                    except StopAsyncIteration:
                        break
                out.put_nowait(_EOF)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the transport failed or the client went away
                out.put_nowait(e)

        try:
            async for resp in _pump(core, method, context, reader, out, limit, state):
                yield resp
        finally:
            if stream is not None:
                core.ledger.close(stream)

    async def _compute(self, s: Served, seq: int, latent: bytes, o: dict, deadline) -> pb2.StreamResponse:
        r, decode_s = await self.core.run(s, latent, s.decode_frame, "ClassifyStream", deadline)
        return self._response(s, seq, r, decode_s, o)

    @staticmethod
    def _response(s: Served, seq: int, r, decode_s: float, o: dict) -> pb2.StreamResponse:
        resp = pb2.StreamResponse(seq=seq, label=r.label, probability=float(r.top_prob[0]))
        k = o["k"]
        if k:
            resp.top_index.extend(r.top_index[:k].tolist())
            resp.top_probability.extend(r.top_prob[:k].tolist())
        if o["names"]:
            resp.class_name = s.classes[r.label]
            if k:
                resp.top_name.extend(s.classes[i] for i in r.top_index[:k].tolist())
        if o["timings"]:
            t = resp.timings
            t.decode_ms, t.queue_ms, t.inference_ms, t.batch_size = (
                decode_s * 1e3, r.queue_s * 1e3, r.inference_s * 1e3, r.batch_size)
        return resp

    async def ListModels(self, request, context):
        core = self.core
        resp = pb2.ListModelsResponse(max_message_bytes=core.opts.max_message_bytes,
                                      max_batch_size=core.opts.max_batch_size,
                                      max_stream_id_bytes=core.opts.max_stream_id_bytes)
        for name, s in sorted(core.served.items()):
            resp.models.add(digest=s.digest_hex, **_model_info(s))
        core.count("ListModels", _OK)
        return resp

    def _edge_files(self, s: Served) -> list[tuple[str, bytes, str]]:
        """(file name, bytes, sha256 hex) of the edge half: config, encoder ONNX, CDF tables."""
        key = s.name
        if key not in self._files:
            cfg = s.config
            names = ["config.json"] + [cfg.raw["files"][r] for r in ("encoder", "tables") if r in cfg.raw.get("files", {})]
            files = []
            for n in names:
                data = (cfg.path / n).read_bytes()
                files.append((n, data, hashlib.sha256(data).hexdigest()))
            self._files[key] = files
        return self._files[key]

    async def PullModel(self, request, context):
        core = self.core
        try:
            ref = f"{request.model}@{request.version}" if request.version else request.model
            s = core.served_or_fail(ref, "PullModel")
            if request.version and request.version != int(s.config.version):
                raise FrameFailure(grpc.StatusCode.NOT_FOUND,
                                   f"model {s.name!r} version {request.version} is not served "
                                   f"(served: version {s.config.version})")
            files = self._edge_files(s)
        except FrameFailure as e:
            core.count("PullModel", e.code)
            await context.abort(e.code, e.message)
        except OSError as e:
            core.count("PullModel", grpc.StatusCode.INTERNAL)
            await context.abort(grpc.StatusCode.INTERNAL, f"cannot read model {s.name!r}: {e}")
        first = True
        for name, data, digest in files:
            for off in range(0, max(1, len(data)), PULL_CHUNK_BYTES):
                c = pb2.ModelChunk(offset=off, data=data[off:off + PULL_CHUNK_BYTES])
                if off == 0:
                    c.file, c.size, c.sha256 = name, len(data), digest
                if first:
                    c.model, c.version, c.digest = s.name, int(s.config.version), s.digest_hex
                    first = False
                yield c
        core.count("PullModel", _OK)


def _model_info(s: Served) -> dict:
    raw = s.config.raw
    m = raw.get("metrics", {}) or {}
    return dict(name=s.name, version=int(s.config.version), task=s.config.task, size=str(raw.get("size", "")),
                points=int(s.model.points), channels=int(getattr(s.model, "channels", 0) or 0),
                classes=list(s.classes), lmbda=float(raw.get("lmbda") or 0),
                test_accuracy=float(m.get("test_accuracy") or 0), bits_mean=float(m.get("bits_mean") or 0))


class InferenceServicerV1(pb1_grpc.InferenceServicer):
    """``splitinfer.v1.Inference``: deprecated, served beside v2 for one more release. Every frame
    carries the model name and a container; the ledger keys frames by stream id and seq (no
    session) with the payload digest, so a reused seq with another payload is ALREADY_EXISTS."""

    def __init__(self, core: Core):
        self.core = core

    async def _frame(self, req, method: str, deadline, stream=None) -> pb1.ClassifyResponse:
        core = self.core
        s = core.served_or_fail(req.model, method)
        payload = bytes(req.payload)

        async def compute():
            r, decode_s = await core.run(s, payload, s.decode_container, method, deadline)
            resp = pb1.ClassifyResponse(
                seq=req.seq, label=r.label, class_name=s.classes[r.label], model=s.name,
                stream_id=req.stream_id, decode_ms=decode_s * 1e3, inference_ms=r.inference_s * 1e3,
                queue_ms=r.queue_s * 1e3, batch_size=r.batch_size, payload_bytes=len(payload))
            resp.top5.extend(pb1.ClassProbability(index=int(i), name=s.classes[int(i)], probability=float(p))
                             for i, p in zip(r.top_index, r.top_prob))
            return resp
        if not req.stream_id:
            return await compute()
        if len(req.stream_id.encode()) > core.opts.max_stream_id_bytes:
            raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT,
                               f"stream id of {len(req.stream_id.encode())} bytes is over the limit of "
                               f"{core.opts.max_stream_id_bytes} bytes")
        own = stream is None
        if own:
            stream = core.ledger.open(req.stream_id)
        try:
            resp, dup = await core.remembered(stream, req.seq, hash((s.name, payload)), s, compute,
                                              pb1.ClassifyResponse.FromString)
        finally:
            if own:
                core.ledger.close(stream)
        if dup:
            r = pb1.ClassifyResponse()
            r.CopyFrom(resp)
            r.duplicate = True
            return r
        return resp

    async def Classify(self, request, context):
        return await _unary(self.core, "Classify",  context,
                            lambda: self._frame(request, "Classify", deadline_of(context)))

    async def ClassifyStream(self, request_iterator, context):
        method = "ClassifyStream"
        core = self.core
        deadline = deadline_of(context)
        out: asyncio.Queue = asyncio.Queue()
        limit = asyncio.Semaphore(core.opts.max_stream_inflight)
        state = {"submitted": 0}
        streams: dict[str, Any] = {}

        async def one(req):
            try:
                if len(req.payload) > core.max_payload:
                    raise FrameFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                       f"payload of {len(req.payload)} bytes is over the limit of "
                                       f"{core.max_payload} bytes")
                st = streams.get(req.stream_id)
                if st is None and req.stream_id and len(req.stream_id.encode()) <= core.opts.max_stream_id_bytes:
                    st = streams[req.stream_id] = core.ledger.open(req.stream_id)
                item = (await self._frame(req, method, deadline, st), _OK)
            except Exception as e:  # noqa: BLE001 - a bad frame never ends the stream
                if not isinstance(e, FrameFailure):
                    log.exception("frame %s of stream %r failed", req.seq, req.stream_id[:64])
                    e = FrameFailure(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
                item = (pb1.ClassifyResponse(seq=req.seq, model=req.model[:128], stream_id=req.stream_id,
                                             error=pb1.FrameError(code=_code(e.code), message=e.message)), e.code)
            out.put_nowait(item)

        async def reader():
            try:
                async for req in request_iterator:
                    await limit.acquire()
                    if core.draining:
                        limit.release()
                        break
                    state["submitted"] += 1
                    core.spawn(one(req))
                out.put_nowait(_EOF)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the transport failed or the client went away
                out.put_nowait(e)

        try:
            async for resp in _pump(core, method, context, reader, out, limit, state):
                yield resp
        finally:
            for st in streams.values():
                core.ledger.close(st)

    async def ListModels(self, request, context):
        core = self.core
        resp = pb1.ListModelsResponse(max_message_bytes=core.opts.max_message_bytes,
                                      max_batch_size=core.opts.max_batch_size)
        for name, s in sorted(core.served.items()):
            resp.models.add(**_model_info(s))
        core.count("ListModels", _OK)
        return resp


def load_models(opts: ServerOptions, broken: list | None = None) -> dict:
    """The served models, keyed ``NAME`` (newest version) and ``NAME@VERSION`` (older ones).
    Every model of the repository by default: a broken one is logged (one ``error:`` line) and
    skipped, the others serve. A model named in ``opts.models`` that is broken stops the start
    (ServeError naming the file and the fix). ``broken`` receives (path, message) of each
    model skipped."""
    repo = ModelRepository(opts.models_dir)
    try:
        configs = repo.select(opts.models, SERVED_TASKS)
    except ModelError as e:
        raise ServeError(str(e)) from None
    if not configs:
        broken = f" ({len(repo.errors)} broken)" if repo.errors else ""
        raise ServeError(f"no point-cloud models in {repo.root}{broken}")
    loaded = []
    for cfg in configs:
        try:
            model = repo.load(cfg.name, cfg.version)
            model.threads = opts.threads
            # warm up: create the classifier session and run the batch shapes once (a cloud-only
            # model, whose input is a whole cloud, once with one cloud)
            warm = getattr(model, "warmup_input", None)
            for b in ({1} if warm else {1, min(opts.max_batch_size, 64)}):
                model.classify(warm(b) if warm else np.zeros((b, model.channels), np.float32))
        except ModelError as e:
            if opts.models:
                raise ServeError(str(e)) from None
            if (e.path, e.reason) not in repo.errors:
                repo.errors.append((e.path, e.reason))
            continue
        loaded.append((cfg, model))
    newest = {}
    for cfg, _ in loaded:
        newest[cfg.name] = max(newest.get(cfg.name, 0), cfg.version)
    models = {cfg.name if cfg.version == newest[cfg.name] else cfg.ref: model for cfg, model in loaded}
    for path, message in repo.errors:
        log.error("error: %s: %s (model skipped)", path, message)
    if broken is not None:
        broken.extend(repo.errors)
    if not models:
        raise ServeError(f"no model of {repo.root} could be loaded ({len(repo.errors)} broken)")
    return models


def grpc_options(max_message_bytes: int, reuse_port: bool = False) -> list[tuple[str, Any]]:
    return [
        # frames over max_message_bytes get a per-frame error; messages over this end the call
        ("grpc.max_receive_message_length", transport_limit(max_message_bytes)),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
        # no BDP probing: its PINGs (and the client's PING ACKs, on the thin uplink) carry nothing
        # a few-byte frame needs; the stream windows stay at their defaults (docs/protocol.md)
        ("grpc.http2.bdp_probe", 0),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 0),
        # off: a second server on a taken port fails; on for the workers of one server (--workers)
        ("grpc.so_reuseport", int(reuse_port)),
    ]


class Server:
    """A running inference server: start(), then wait() until stopped (or stop())."""

    def __init__(self, opts: ServerOptions, models: dict | None = None):
        self.opts = opts
        self.metrics = Metrics()
        self.broken: list[tuple[str, str]] = []   # models skipped at load: (path, message)
        self.models = models if models is not None else load_models(opts, self.broken)
        self.metrics.models.set(len(self.models))
        self.core = self.servicer = Core(self.models, opts, self.metrics)
        self.health = health_aio.HealthServicer()
        self.port: int | None = None
        self.metrics_port: int | None = None
        self._stopped = asyncio.Event()
        self._stopping = False
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        o = self.opts
        interceptors = []
        if o.tokens:
            interceptors.append(TokenAuthInterceptor(
                o.tokens, on_denied=lambda method, why: self.servicer.count(
                    method.rsplit("/", 1)[-1], grpc.StatusCode.UNAUTHENTICATED)))
        self.server = grpc.aio.server(options=grpc_options(o.max_message_bytes, o.reuse_port),
                                      interceptors=interceptors)
        pb2_grpc.add_InferenceServicer_to_server(InferenceServicer(self.servicer), self.server)
        pb1_grpc.add_InferenceServicer_to_server(InferenceServicerV1(self.servicer), self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, SERVICE_NAME_V1, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME), self.server)
        address = f"{o.host}:{o.port}" if ":" not in o.host else f"[{o.host}]:{o.port}"
        try:
            self.port = self._listen(address)
        except RuntimeError as e:  # grpc refuses to bind
            raise ServeError(f"cannot listen on {address}: {e}") from None
        if not self.port:
            raise ServeError(f"cannot listen on {address}")
        await self.server.start()
        await self._after_start()

    def _listen(self, address: str) -> int:
        o = self.opts
        if o.tls_cert or o.tls_key:
            if not (o.tls_cert and o.tls_key):
                raise ServeError("TLS needs both --tls-cert and --tls-key")
            client_ca = Path(o.tls_client_ca).read_bytes() if o.tls_client_ca else None
            creds = grpc.ssl_server_credentials(
                [(Path(o.tls_key).read_bytes(), Path(o.tls_cert).read_bytes())],
                root_certificates=client_ca, require_client_auth=client_ca is not None)
            return self.server.add_secure_port(address, creds)
        return self.server.add_insecure_port(address)

    async def _after_start(self) -> None:
        o = self.opts
        for svc in ("", SERVICE_NAME, SERVICE_NAME_V1):
            await self.health.set(svc, health_pb2.HealthCheckResponse.SERVING)
        if o.metrics_port is not None:
            self.metrics_port = self.metrics.serve_http(o.metrics_port, o.metrics_host or DEFAULT_METRICS_HOST)
        info = {"port": self.port, "metrics_port": self.metrics_port, "pid": os.getpid(),
                "models": sorted(self.models), "tls": bool(o.tls_cert), "auth": bool(o.tokens),
                "broken": [{"path": p, "error": m} for p, m in self.broken]}
        log.info("serving %s on %s (port %s, metrics %s, max batch %d, tls %s, auth %s)",
                 ", ".join(sorted(self.models)), o.host, self.port, self.metrics_port,
                 o.max_batch_size, info["tls"], info["auth"])
        if o.ready_file:
            tmp = Path(str(o.ready_file) + ".tmp")
            tmp.write_text(json.dumps(info))
            os.replace(tmp, o.ready_file)

    async def stop(self) -> None:
        """Graceful: NOT_SERVING, no new calls, streams drained, in-flight calls finish."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        log.info("shutting down: health NOT_SERVING, draining")
        await self.health.enter_graceful_shutdown()
        self.servicer.drain()
        if self.server is not None:
            await self.server.stop(self.opts.grace_s)
        self.servicer.stop_batchers()
        self.metrics.close()
        if self.opts.ready_file:
            try:
                os.unlink(self.opts.ready_file)
            except OSError:
                pass
        log.info("stopped")
        self._stopped.set()

    async def wait(self) -> None:
        await self._stopped.wait()


async def _serve(opts: ServerOptions) -> None:
    server = Server(opts)
    try:
        await server.start()
    except BaseException:
        server.servicer.stop_batchers()
        server.metrics.close()
        raise
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - not the main thread
            pass
    await stop.wait()
    await server.stop()


def serve(opts: ServerOptions) -> int:
    """Run the server until SIGTERM or SIGINT; returns the exit status."""
    asyncio.run(_serve(opts))
    return 0
