"""Prometheus metrics of the image sidecar, on a registry of its own (one per app), served at
``GET /metrics``."""
from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import generate_latest

LATENCY_BUCKETS = (.001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10, 30)
BPP_BUCKETS = (.01, .02, .05, .1, .2, .3, .5, .75, 1, 1.5, 2, 3, 4, 8)
PIXEL_BUCKETS = (1e3, 1e4, 5e4, 1e5, 2.5e5, 5e5, 1e6, 2e6, 4e6, 8e6, 16e6)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        r = self.registry = registry or CollectorRegistry()
        self.requests = Counter("splitinfer_sidecar_requests", "HTTP requests answered, by route "
                                "template and status code", ["route", "method", "status"], registry=r)
        self.errors = Counter("splitinfer_sidecar_errors", "Error responses, by route and error code",
                              ["route", "code"], registry=r)
        self.latency = Histogram("splitinfer_sidecar_request_seconds", "Time per request, receipt to "
                                 "the end of the answer", ["route"], buckets=LATENCY_BUCKETS,
                                 registry=r)
        self.images = Counter("splitinfer_sidecar_images", "Images coded", ["op", "model", "adaptive"],
                              registry=r)
        self.pixels = Counter("splitinfer_sidecar_pixels", "Pixels coded", ["op", "model"], registry=r)
        self.bitstream_bytes = Counter("splitinfer_sidecar_bitstream_bytes", "Container bytes produced "
                                       "(compress) or consumed (decompress)", ["op", "model"],
                                       registry=r)
        self.bpp = Histogram("splitinfer_sidecar_bpp", "Bits per pixel of compressed images",
                             ["model", "adaptive"], buckets=BPP_BUCKETS, registry=r)
        self.image_pixels = Histogram("splitinfer_sidecar_image_pixels", "Pixels per image",
                                      ["op"], buckets=PIXEL_BUCKETS, registry=r)
        self.codec_seconds = Histogram("splitinfer_sidecar_codec_seconds", "Codec work per image "
                                       "(in the worker threads)", ["op", "model"],
                                       buckets=LATENCY_BUCKETS, registry=r)
        self.inflight = Gauge("splitinfer_sidecar_inflight_requests", "Requests being answered",
                              registry=r)
        self.models = Gauge("splitinfer_sidecar_models_loaded", "Image models loaded", registry=r)
        self.ready = Gauge("splitinfer_sidecar_ready", "1 when the models are loaded", registry=r)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
