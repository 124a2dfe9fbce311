"""The cloud inference service (``splitinfer.v1.Inference``) on grpc.aio.

Per frame: look the model up (NOT_FOUND), check the payload size (RESOURCE_EXHAUSTED), unpack the
container and range-decode y_hat with constriction on the event loop (a container made by other
model files than the served version's: FAILED_PRECONDITION; any other failure: INVALID_ARGUMENT), queue y_hat on the model's dynamic batcher (a full queue: UNAVAILABLE, retry
later), run the ONNX classifier on the batch, answer label, class name, top-5 and timings.
Cloud-only models (task ``pointcloud-input-classification``, a plain PointNet) take the same
path with the points themselves as input: raw float32 or Draco-coded (container kinds 4 and 5,
unpacked, and Draco-decoded, in ``decode``; ``splitinfer.pointcloud.input_model``).

Semantics:

- ``Classify`` answers with a gRPC status on error. ``ClassifyStream`` answers every frame: a bad
  frame's response carries ``error`` (code and message) and the stream goes on.
- Idempotency: frames with a ``stream_id`` are remembered by ``(stream_id, seq)`` for the server's
  lifetime (bounded: the most recent frames of the most recent streams). A frame seen before is
  answered again from that memory with ``duplicate = true`` and is not classified, nor counted in
  the request metrics, again; a frame still in flight is answered when its twin completes. A
  restarted server has forgotten everything: clients keep their own ledger and drop answers to
  seqs they already have (``edge_client`` does), so every frame is answered exactly once from
  the client's point of view.
- Deadlines: a frame whose deadline passes while queued is not run (DEADLINE_EXCEEDED).
- Shutdown (SIGTERM, SIGINT): health turns NOT_SERVING, new calls are refused, streams stop
  reading, answer the frames they had read and end with UNAVAILABLE (the client resends what was
  not answered), in-flight unary calls finish (within ``grace_s``), then the process exits 0.
- No torch: numpy, onnxruntime and constriction only.
"""
from __future__ import annotations

DEADLINE_SLACK_S = 0.05

import asyncio
import json
import logging
import os
import signal
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc
from splitinfer.codec import ModelMismatch
from splitinfer.repository import ModelError, ModelRepository

from .auth import TokenAuthInterceptor
from .batcher import DynamicBatcher, Expired, NonFiniteOutput, QueueFull, Stopped
from .metrics import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT, Metrics
from .validation import unknown_model

log = logging.getLogger("splitinfer.serve")

SERVICE_NAME = pb2.DESCRIPTOR.services_by_name["Inference"].full_name  # "splitinfer.v1.Inference"
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024   # a payload is a few bytes to a few hundred; 64 KiB is ample
_ENVELOPE_BYTES = 4096                  # request fields around the payload
_UNKNOWN = "<unknown>"
# split codecs (a latent: range-decoded y_hat) and cloud-only plain models (raw or Draco points)
SERVED_TASKS = ("pointcloud-classification", "pointcloud-input-classification")


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
    max_stream_inflight: int = 256      # frames of one stream in flight before it stops reading
    metrics_port: int | None = DEFAULT_METRICS_PORT  # None: no metrics endpoint; 0: a free port
    metrics_host: str | None = None     # default: loopback (DEFAULT_METRICS_HOST)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None    # require client certificates signed by this CA (mTLS)
    tokens: list[str] = field(default_factory=list)
    grace_s: float = 10.0
    threads: int = 1                    # onnxruntime intra-op threads per model
    ready_file: str | None = None       # JSON {"port", "metrics_port", "pid", "models"} once serving
    dedup_streams: int = 4096
    dedup_frames_per_stream: int = 4096
    reuse_port: bool = False            # SO_REUSEPORT: worker processes share the port (workers.py)


class ServeError(Exception):
    """The server cannot start (bad options, no models, port taken)."""


class FrameFailure(Exception):
    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class DedupCache:
    """(stream_id, seq) -> answer, or the future of the answer while it is being computed."""

    def __init__(self, max_streams: int = 4096, per_stream: int = 4096):
        self.max_streams = max_streams
        self.per_stream = per_stream
        self._streams: OrderedDict[str, OrderedDict[int, Any]] = OrderedDict()

    def get(self, stream_id: str, seq: int):
        frames = self._streams.get(stream_id)
        if frames is None:
            return None
        self._streams.move_to_end(stream_id)
        return frames.get(seq)

    def put(self, stream_id: str, seq: int, value) -> None:
        frames = self._streams.get(stream_id)
        if frames is None:
            frames = self._streams[stream_id] = OrderedDict()
            while len(self._streams) > self.max_streams:
                self._streams.popitem(last=False)
        else:
            self._streams.move_to_end(stream_id)
        frames[seq] = value
        while len(frames) > self.per_stream:
            frames.popitem(last=False)

    def discard(self, stream_id: str, seq: int, value) -> None:
        frames = self._streams.get(stream_id)
        if frames is not None and frames.get(seq) is value:
            del frames[seq]


def _retrieve(fut: asyncio.Future) -> None:
    if not fut.cancelled():
        fut.exception()  # mark as retrieved: nobody else may be waiting


_EOF = object()
_DRAIN = object()


class InferenceServicer(pb2_grpc.InferenceServicer):
    def __init__(self, models: dict, opts: ServerOptions, metrics: Metrics):
        self.models = models
        self.opts = opts
        self.metrics = metrics
        self.max_payload = opts.max_message_bytes
        self.dedup = DedupCache(opts.dedup_streams, opts.dedup_frames_per_stream)
        self.batchers: dict[str, DynamicBatcher] = {}
        self._stream_queues: set[asyncio.Queue] = set()
        self._tasks: set[asyncio.Task] = set()
        self.draining = False
        for name, model in models.items():
            def on_batch(n, secs, _size=metrics.batch_size.labels(name), _time=metrics.inference.labels(name)):
                _size.observe(n)
                _time.observe(secs)
            self.batchers[name] = DynamicBatcher(
                name, model.classify, opts.max_batch_size, opts.max_queue_delay_ms / 1e3,
                opts.max_queue_size, on_batch=on_batch, executor=opts.batch_executor).start()
        self._children = {}

    # -- metrics helpers --------------------------------------------------------------------------
    def _child(self, metric, *labels):
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = metric.labels(*labels)
        return c

    def _count(self, method: str, code: grpc.StatusCode) -> None:
        self._child(self.metrics.responses, method, code.name).inc()
        if code is not grpc.StatusCode.OK:
            self._child(self.metrics.errors, method, code.name).inc()

    # -- one frame --------------------------------------------------------------------------------
    async def _frame(self, req, method: str, deadline: float | None) -> pb2.ClassifyResponse:
        """Answer one frame (deduplicated by (stream_id, seq)); raises FrameFailure."""
        sid = req.stream_id
        if sid:
            hit = self.dedup.get(sid, req.seq)
            if hit is not None:
                if isinstance(hit, asyncio.Future):
                    try:
                        hit = await asyncio.shield(hit)
                    except (FrameFailure, asyncio.CancelledError):
                        hit = None  # the first attempt failed or was abandoned: compute it afresh
                if hit is not None:
                    self._child(self.metrics.duplicates,
                                req.model if req.model in self.models else _UNKNOWN).inc()
                    resp = pb2.ClassifyResponse()
                    resp.CopyFrom(hit)
                    resp.duplicate = True
                    return resp
            fut = asyncio.get_running_loop().create_future()
            fut.add_done_callback(_retrieve)
            self.dedup.put(sid, req.seq, fut)
            try:
                resp = await self._compute(req, method, deadline)
            except BaseException as e:
                self.dedup.discard(sid, req.seq, fut)
                if not fut.done():
                    if isinstance(e, FrameFailure):
                        fut.set_exception(e)
                    else:
                        fut.cancel()
                raise
            self.dedup.put(sid, req.seq, resp)
            if not fut.done():
                fut.set_result(resp)
            return resp
        return await self._compute(req, method, deadline)

    async def _compute(self, req, method: str, deadline: float | None) -> pb2.ClassifyResponse:
        t0 = time.perf_counter()
        name = req.model
        model = self.models.get(name)
        if model is None and "@" in name:  # NAME@VERSION of the newest version, served as NAME
            base, _, version = name.rpartition("@")
            model = self.models.get(base)
            if model is not None and str(model.config.version) == version:
                name = base
            else:
                model = None
        if model is None:
            self._child(self.metrics.requests, method, _UNKNOWN).inc()
            raise FrameFailure(*unknown_model(name, self.models))
        self._child(self.metrics.requests, method, name).inc()
        n = len(req.payload)
        if n > self.max_payload:
            raise FrameFailure(grpc.StatusCode.RESOURCE_EXHAUSTED,
                               f"payload of {n} bytes is over the limit of {self.max_payload} bytes")
        if n == 0:
            raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT, "empty payload")
        self._child(self.metrics.bits, name).inc(8 * n)
        self._child(self.metrics.payload_bits, name).observe(8 * n)
        self.metrics.inflight.inc()
        try:
            try:
                y_hat = model.decode(bytes(req.payload))
            except (KeyboardInterrupt, SystemExit, asyncio.CancelledError, MemoryError):
                raise
            except ModelMismatch as e:  # made by other model files: the edge must pull this one
                raise FrameFailure(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
            except BaseException as e:  # BitstreamError, and anything a random payload provokes
                raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT,
                                   f"payload rejected: {type(e).__name__}: {e}") from None
            t1 = time.perf_counter()
            self._child(self.metrics.decode, name).observe(t1 - t0)
            try:
                fut = self.batchers[name].submit(np.asarray(y_hat, np.float32), deadline)
            except QueueFull as e:
                raise FrameFailure(grpc.StatusCode.UNAVAILABLE, f"{e}; retry later") from None
            except Stopped as e:
                raise FrameFailure(grpc.StatusCode.UNAVAILABLE, str(e)) from None
            try:
                r = await fut
            except Expired as e:
                raise FrameFailure(grpc.StatusCode.DEADLINE_EXCEEDED, str(e)) from None
            except NonFiniteOutput as e:
                raise FrameFailure(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("model %s failed", name)
                raise FrameFailure(grpc.StatusCode.INTERNAL, f"inference failed: {e}") from None
        finally:
            self.metrics.inflight.dec()
        self._child(self.metrics.queue, name).observe(r.queue_s)
        classes = model.classes
        resp = pb2.ClassifyResponse(
            seq=req.seq, label=r.label, class_name=classes[r.label], model=name,
            stream_id=req.stream_id, decode_ms=(t1 - t0) * 1e3, inference_ms=r.inference_s * 1e3,
            queue_ms=r.queue_s * 1e3, batch_size=r.batch_size, payload_bytes=n)
        resp.top5.extend(pb2.ClassProbability(index=int(i), name=classes[int(i)], probability=float(p))
                         for i, p in zip(r.top_index, r.top_prob))
        self._child(self.metrics.latency, method, name).observe(time.perf_counter() - t0)
        return resp

    @staticmethod
    def _deadline(context) -> float | None:
        left = context.time_remaining()
        return None if left is None else time.monotonic() + left

    # -- RPCs -------------------------------------------------------------------------------------
    async def Classify(self, request, context):
        try:
            resp = await self._frame(request, "Classify", self._deadline(context))
        except FrameFailure as e:
            self._count("Classify", e.code)
            await context.abort(e.code, e.message)
        except asyncio.CancelledError:  # the client went away or its deadline passed
            left = context.time_remaining()
            # the client's and server's clocks for the deadline differ by the cancel's travel time
            expired = left is not None and left <= DEADLINE_SLACK_S
            self._count("Classify", grpc.StatusCode.DEADLINE_EXCEEDED if expired else grpc.StatusCode.CANCELLED)
            raise
        except Exception as e:  # noqa: BLE001 - a bug answers INTERNAL, the server goes on
            log.exception("Classify failed")
            self._count("Classify", grpc.StatusCode.INTERNAL)
            await context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
        self._count("Classify", grpc.StatusCode.OK)
        return resp

    async def ClassifyStream(self, request_iterator, context):
        method = "ClassifyStream"
        deadline = self._deadline(context)
        out: asyncio.Queue = asyncio.Queue()
        limit = asyncio.Semaphore(self.opts.max_stream_inflight)
        state = {"submitted": 0}
        self._stream_queues.add(out)
        self.metrics.streams.inc()

        async def one(req):
            try:
                resp = await self._frame(req, method, deadline)
                self._count(method, grpc.StatusCode.OK)
            except Exception as e:  # noqa: BLE001 - a bad frame never ends the stream
                if not isinstance(e, FrameFailure):
                    log.exception("frame %s of stream %r failed", req.seq, req.stream_id)
                    e = FrameFailure(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")
                self._count(method, e.code)
                resp = pb2.ClassifyResponse(seq=req.seq, model=req.model, stream_id=req.stream_id,
                                            error=pb2.FrameError(code=e.code.value[0], message=e.message))
            finally:
                limit.release()
            out.put_nowait(resp)

        async def reader():
            try:
                async for req in request_iterator:
                    await limit.acquire()
                    if self.draining:
                        limit.release()
                        break
                    state["submitted"] += 1
                    t = asyncio.ensure_future(one(req))
                    self._tasks.add(t)
                    t.add_done_callback(self._tasks.discard)
                out.put_nowait(_EOF)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the transport failed or the client went away
                out.put_nowait(e)

        read_task = asyncio.ensure_future(reader())
        answered, eof, draining = 0, False, self.draining
        if draining:
            out.put_nowait(_DRAIN)
        try:
            while True:
                item = await out.get()
                if item is _EOF:
                    eof = True
                elif item is _DRAIN:
                    draining = True
                    read_task.cancel()
                elif isinstance(item, Exception):
                    raise item
                else:
                    answered += 1
                    yield item
                if (eof or draining) and answered >= state["submitted"]:
                    break
            if draining and not eof:
                self._count(method, grpc.StatusCode.UNAVAILABLE)
                await context.abort(grpc.StatusCode.UNAVAILABLE,
                                    "server shutting down; resend the frames not answered")
        finally:
            read_task.cancel()
            self._stream_queues.discard(out)
            self.metrics.streams.dec()

    async def ListModels(self, request, context):
        resp = pb2.ListModelsResponse(max_message_bytes=self.opts.max_message_bytes,
                                      max_batch_size=self.opts.max_batch_size)
        for name, model in sorted(self.models.items()):
            raw = model.config.raw
            m = raw.get("metrics", {}) or {}
            resp.models.add(name=name, version=int(model.config.version), task=model.config.task,
                            size=str(raw.get("size", "")), points=int(model.points),
                            channels=int(model.channels), classes=list(model.classes),
                            lmbda=float(raw.get("lmbda") or 0), test_accuracy=float(m.get("test_accuracy") or 0),
                            bits_mean=float(m.get("bits_mean") or 0))
        self._count("ListModels", grpc.StatusCode.OK)
        return resp

    # -- shutdown ---------------------------------------------------------------------------------
    def drain(self) -> None:
        """Streams stop reading, answer what they have and end with UNAVAILABLE."""
        self.draining = True
        for q in list(self._stream_queues):
            q.put_nowait(_DRAIN)

    def stop_batchers(self) -> None:
        for b in self.batchers.values():
            b.stop()


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
        # the transport refuses messages well over the payload limit (RESOURCE_EXHAUSTED)
        ("grpc.max_receive_message_length", max_message_bytes + _ENVELOPE_BYTES),
        ("grpc.max_send_message_length", 4 * 1024 * 1024),
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
        self.servicer = InferenceServicer(self.models, opts, self.metrics)
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
                o.tokens, on_denied=lambda method, why: self.servicer._count(
                    method.rsplit("/", 1)[-1], grpc.StatusCode.UNAUTHENTICATED)))
        self.server = grpc.aio.server(options=grpc_options(o.max_message_bytes, o.reuse_port),
                                      interceptors=interceptors)
        pb2_grpc.add_InferenceServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
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
        for svc in ("", SERVICE_NAME):
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
