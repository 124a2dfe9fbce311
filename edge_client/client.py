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
(``edge_client/rate_control.py``; ``splitinfer stream --family ... --latency-budget MS``); a model
switch resends the header (with the new model) in front of that frame.
``slowdown=K`` emulates a device K times slower (every encode takes K times as long).

Streaming semantics (windowing, reconnects and resends, exactly once, refusals):
``edge_client/stream.py``.

Threads: ``stream`` encodes in the caller's thread while gRPC threads send and receive. Python's
default 5 ms GIL switch interval can then hold answers behind an encode and inflate the
measured round trips; ``splitinfer stream`` sets ``sys.setswitchinterval(0.001)``, and so may an
application that cares about them.

No torch: numpy, onnxruntime, constriction and grpcio.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import grpc
import numpy as np

from splitinfer.codec import BitstreamError, Container
from splitinfer.codec import encode as encode_latent
from splitinfer.pointcloud.io import Cloud
from splitinfer.pointcloud.preprocess import MIN_POINTS, InvalidPointCloud, preprocess
from splitinfer.proto.v2 import inference_pb2 as pb2
from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc

from .channel import auth_metadata, open_channel
from .errors import ClassifyError, StreamError
from .results import Report, Result, from_response
from .stream import Frame, StreamSession


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
                 timings: bool = False, lb: str | None = None, min_points: int = MIN_POINTS):
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
        self.min_points = min_points  # fewer valid (finite) points: the frame is refused
        self.slowdown = max(1.0, float(slowdown))  # emulate a device this many times slower
        self.max_message_bytes = max_message_bytes   # larger frames fail here, unsent
        self.top_k = top_k                            # classes in each answer's top list
        self.timings = timings                        # answers carry the server's timings
        self._metadata = auth_metadata(token)
        self._channel = open_channel(server, tls=tls, tls_ca=tls_ca, tls_server_name=tls_server_name, lb=lb,
                                     max_message_bytes=max_message_bytes)
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
        """(bytes, encode ms) of one raw cloud (N, 3): preprocess, encode. The bytes are a stream
        frame's latent, or a self-describing container with ``container=True``."""
        return self.encode_frame(points, model, name, container)[:2]

    def encode_frame(self, points, model: str | None = None, name: str = "input",
                     container: bool = False) -> tuple[bytes, float, int]:
        """``encode`` of one raw sensor frame (N, 3), also returning how many NaN/inf points the
        model's preprocessing dropped; InvalidPointCloud when fewer than ``min_points`` are valid."""
        m = self.edge_model(model)
        t0 = time.perf_counter()
        r = preprocess(points, m.points, self.seed, name, m.preprocess_spec, self.min_points, True)
        y_hat = m.encode_symbols(r.points[None])[0]
        data = m.pack(y_hat) if container else encode_latent(np.asarray(y_hat, np.int32), m.tables)
        took = time.perf_counter() - t0
        if self.slowdown > 1:  # a slower device: the same work takes `slowdown` times as long
            time.sleep(took * (self.slowdown - 1))
            took *= self.slowdown
        return data, took * 1e3, r.dropped

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
        payload, enc, dropped = self.encode_frame(points, model, name, container=True)
        frame = Frame(0, payload, name, label, enc, sends=1, model=model, dropped_points=dropped)
        frame.t_send = time.perf_counter()
        resp = self.classify_payload(payload, model, timeout_s)
        return from_response(frame, resp, (time.perf_counter() - frame.t_send) * 1e3, self.classes(model),
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

        controller: an ``edge_client.rate_control.RateController``: each cloud is encoded with the
        model it chooses at that moment (``Result.model`` says which), and it is told of every
        send and answer (see ``warm_up`` to measure the candidates' encode times first).
        """
        if controller is not None:
            model = model or controller.candidates[0].name
        model = model or self.model_name
        if not model:
            raise ValueError("no model: pass model= to EdgeClient or to stream()")
        sess = StreamSession(self, model, stream_id or uuid.uuid4().hex, window or self.window, controller)
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
                    frame = Frame(seq, data, str(name), label, 0.0, model=model)
                elif sess.fatal is not None:   # refused as a whole: fail it without encoding
                    cloud = _as_cloud(item, seq)
                    frame = Frame(seq, b"", cloud.name, cloud.label, 0.0, model=model)
                else:
                    cloud = _as_cloud(item, seq)
                    use = model
                    if controller is not None:
                        use = controller.choose(time.perf_counter()).model
                    data, enc, dropped = self.encode_frame(cloud.points, use, cloud.name)
                    if controller is not None:
                        controller.on_encoded(use, enc)
                    frame = Frame(seq, data, cloud.name, cloud.label, enc, model=use,
                                  dropped_points=dropped)
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
