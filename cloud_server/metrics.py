"""Prometheus metrics of the inference server, on their own registry (one per server)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

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
        self.inflight = Gauge("splitinfer_inflight_frames", "Frames being processed", registry=r)
        self.streams = Gauge("splitinfer_active_streams", "Open ClassifyStream calls", registry=r)
        self.models = Gauge("splitinfer_models_loaded", "Models served", registry=r)
        self._http = None

    def serve_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose /metrics over HTTP; returns the bound port (``port`` 0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._http = server
        return server.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
