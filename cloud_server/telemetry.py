"""Prometheus metrics of the inference server, on their own registry (one per server), and the
small HTTP endpoint that serves them (:class:`MetricsEndpoint`)."""
from __future__ import annotations

import selectors
import socket
from bisect import bisect_left
from collections import Counter as _Tally
import threading
import time

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest

from .defaults import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT

__all__ = ["DEFAULT_METRICS_HOST", "DEFAULT_METRICS_PORT", "FrameMetrics", "Metrics", "MetricsEndpoint",
           "observe_many"]

LATENCY_BUCKETS = (.0002, .0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5)
SMALL_TIME_BUCKETS = (.00002, .00005, .0001, .0002, .0005, .001, .002, .005, .01, .02, .05, .1)
BITS_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter("splitinfer_requests", "Frames received (a resent duplicate is not "
                                "counted again)", ["method", "model"], registry=r)
        self.responses = Counter("splitinfer_responses", "Frames and calls answered, by gRPC status "
                                 "code", ["method", "code"], registry=r)
        self.errors = Counter("splitinfer_errors", "Frames and calls that failed, by gRPC status code",
                              ["method", "code"], registry=r)
        self.latency = Histogram("splitinfer_request_latency_seconds", "Server time per frame, "
                                 "receipt to answer", ["method", "model"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.decode = Histogram("splitinfer_decode_seconds", "Container unpack and range decoding "
                                "per frame", ["model"], buckets=SMALL_TIME_BUCKETS, registry=r)
        self.queue = Histogram("splitinfer_queue_seconds", "Time a frame waited for its batch",
                               ["model"], buckets=SMALL_TIME_BUCKETS, registry=r)
        self.inference = Histogram("splitinfer_inference_seconds", "Classifier run per batch",
                                   ["model"], buckets=SMALL_TIME_BUCKETS, registry=r)
        self.batch_size = Histogram("splitinfer_batch_size", "Frames per classifier batch", ["model"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.bits = Counter("splitinfer_received_bits", "Payload bits received", ["model"], registry=r)
        self.payload_bits = Histogram("splitinfer_payload_bits", "Payload size per frame in bits",
                                      ["model"], buckets=BITS_BUCKETS, registry=r)
        self.duplicates = Counter("splitinfer_duplicate_frames", "Resent frames answered from the "
                                  "idempotency cache", ["model"], registry=r)
        # gauges: summed over live workers under `serve --workers N` (prometheus_client multiprocess)
        self.inflight = Gauge("splitinfer_inflight_frames", "Frames being processed", registry=r,
                              multiprocess_mode="livesum")
        self.streams = Gauge("splitinfer_active_streams", "Open ClassifyStream calls", registry=r,
                             multiprocess_mode="livesum")
        self.models = Gauge("splitinfer_models_loaded", "Models served", registry=r,
                            multiprocess_mode="livemax")
        self._http = None

    def serve_http(self, port: int, host: str = DEFAULT_METRICS_HOST) -> int:
        """Expose GET /metrics over HTTP; returns the bound port (``port`` 0 picks a free one)."""
        self._http = MetricsEndpoint(self.registry, host, port).start()
        return self._http.port

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None


def observe_many(histogram, values) -> None:
    """``histogram.observe(v)`` for every value, in one update per bucket touched (the same
    bucket counts, count and sum)."""
    if not values:
        return
    bounds, buckets = getattr(histogram, "_upper_bounds", None), getattr(histogram, "_buckets", None)
    if bounds is None or buckets is None or len(bounds) != len(buckets):   # another client version
        for v in values:
            histogram.observe(v)
        return
    histogram._sum.inc(sum(values))
    for i, k in _Tally(bisect_left(bounds, v) for v in values).items():   # first bound >= v
        if i < len(buckets):
            buckets[i].inc(k)


class FrameMetrics:
    """One model's per-frame metrics on the stream path, gathered per frame and written once per
    batch (``flush``, called when a batch has been answered): the counters and histograms read as
    with one update per frame; ``inflight`` goes up per frame and down per batch."""

    __slots__ = ("requests", "bits", "payload_bits", "decode", "queue", "latency", "inflight",
                 "n", "bits_total", "payload_values", "decode_values", "queue_values",
                 "latency_values", "answered")

    def __init__(self, requests, bits, payload_bits, decode, queue, latency, inflight):
        self.requests, self.bits, self.payload_bits = requests, bits, payload_bits
        self.decode, self.queue, self.latency, self.inflight = decode, queue, latency, inflight
        self.n = self.bits_total = self.answered = 0
        self.payload_values: list[int] = []
        self.decode_values: list[float] = []
        self.queue_values: list[float] = []
        self.latency_values: list[float] = []

    def admit(self, payload_bytes: int) -> None:
        """A frame received (before its decoding)."""
        self.n += 1
        self.bits_total += 8 * payload_bytes
        self.payload_values.append(8 * payload_bytes)
        self.inflight.inc()

    def flush(self) -> None:
        if self.n:
            self.requests.inc(self.n)
            self.bits.inc(self.bits_total)
            self.n = self.bits_total = 0
            values, self.payload_values = self.payload_values, []
            observe_many(self.payload_bits, values)
        for name, hist in (("decode_values", self.decode), ("queue_values", self.queue),
                           ("latency_values", self.latency)):
            values = getattr(self, name)
            if values:
                setattr(self, name, [])
                observe_many(hist, values)
        if self.answered:
            self.inflight.dec(self.answered)
            self.answered = 0


class MetricsEndpoint:
    """A bounded HTTP/1.x endpoint on one thread (a selector loop, no thread per connection).

    It answers ``GET /metrics`` (and ``HEAD``) with the Prometheus text format, 404 for any
    other path, 405 for other methods, 400 for what is not an HTTP request; every answer closes
    the connection. At most ``max_connections`` are open (more are closed at once, with a 503
    when the socket takes it); a connection that has not sent its request head within
    ``timeout_s`` is closed; a head over ``max_head`` bytes is 431.
    """

    def __init__(self, registry: CollectorRegistry, host: str = DEFAULT_METRICS_HOST,
                 port: int = DEFAULT_METRICS_PORT, max_connections: int = 32,
                 timeout_s: float = 5.0, max_head: int = 8192):
        self.registry = registry
        self.max_connections, self.timeout_s, self.max_head = max_connections, timeout_s, max_head
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError as e:
            self._sock.close()
            raise OSError(e.errno, f"metrics endpoint cannot listen on {host}:{port}: "
                                   f"{e.strerror} (--metrics-port, -1 turns it off)") from None
        self._sock.listen(64)
        self._sock.setblocking(False)
        self.host, self.port = host, self._sock.getsockname()[1]
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._sock, selectors.EVENT_READ, None)
        self._conns: dict[socket.socket, list] = {}   # socket -> [received head, accepted at, reply]
        self._wake_r, self._wake_w = socket.socketpair()
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stop = False
        self._thread = threading.Thread(target=self._loop, name="metrics-http", daemon=True)

    def start(self) -> "MetricsEndpoint":
        self._thread.start()
        return self

    @property
    def connections(self) -> int:
        return len(self._conns)

    def close(self) -> None:
        self._stop = True
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        if self._thread.is_alive():
            self._thread.join(5)
        for s in list(self._conns):
            self._drop(s)
        for s in (self._sock, self._wake_r, self._wake_w):
            s.close()
        self._sel.close()

    # -- the loop (one thread) ---------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop:
            for key, events in self._sel.select(timeout=min(1.0, self.timeout_s)):
                if key.data == "wake":
                    continue
                if key.fileobj is self._sock:
                    self._accept()
                elif events & selectors.EVENT_WRITE:
                    self._write(key.fileobj)
                else:
                    self._read(key.fileobj)
            now = time.monotonic()
            for s, state in list(self._conns.items()):
                if now - state[1] > self.timeout_s:
                    self._drop(s)

    def _accept(self) -> None:
        for _ in range(64):
            try:
                s, _addr = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if len(self._conns) >= self.max_connections:
                try:
                    s.setblocking(False)
                    s.send(_reply(503, b"too many connections\n", extra=b"Retry-After: 1\r\n"))
                except OSError:
                    pass
                s.close()
                continue
            s.setblocking(False)
            self._conns[s] = [b"", time.monotonic(), b""]
            self._sel.register(s, selectors.EVENT_READ, None)

    def _read(self, s: socket.socket) -> None:
        state = self._conns.get(s)
        if state is None:
            return
        try:
            chunk = s.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(s)
            return
        state[0] += chunk
        if b"\r\n\r\n" in state[0] or b"\n\n" in state[0]:
            self._respond(s, self._answer(state[0]))
        elif len(state[0]) > self.max_head:
            self._respond(s, _reply(431, b"request head too large\n"))

    def _answer(self, head: bytes) -> bytes:
        line = head.split(b"\n", 1)[0].strip()
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return _reply(400, b"bad request\n")
        method, target = parts[0], parts[1]
        path = target.split(b"?", 1)[0]
        if path != b"/metrics":
            return _reply(404, b"not found: this endpoint serves /metrics only\n")
        if method not in (b"GET", b"HEAD"):
            return _reply(405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
        body = generate_latest(self.registry)
        return _reply(200, body, CONTENT_TYPE_LATEST.encode(), head_only=method == b"HEAD")

    def _respond(self, s: socket.socket, reply: bytes) -> None:
        self._conns[s][2] = reply
        self._sel.modify(s, selectors.EVENT_WRITE, None)
        self._write(s)

    def _write(self, s: socket.socket) -> None:
        state = self._conns.get(s)
        if state is None:
            return
        try:
            n = s.send(state[2])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(s)
            return
        state[2] = state[2][n:]
        if not state[2]:
            self._drop(s)

    def _drop(self, s: socket.socket) -> None:
        self._conns.pop(s, None)
        try:
            self._sel.unregister(s)
        except (KeyError, ValueError):
            pass
        s.close()


_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


def _reply(status: int, body: bytes, ctype: bytes = b"text/plain; charset=utf-8",
           extra: bytes = b"", head_only: bool = False) -> bytes:
    head = (b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n"
            % (status, _REASONS[status], ctype, len(body))) + extra + b"\r\n"
    return head if head_only else head + body
