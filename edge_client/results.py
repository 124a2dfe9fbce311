"""What the edge client reports: a ``Result`` per frame (the answer and the client's and the
server's timings), a ``Report`` per stream (the results, the stream's counters, a summary)."""
from __future__ import annotations

import collections
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import grpc
import numpy as np

_CODE_NAMES = {c.value[0]: c.name for c in grpc.StatusCode}


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
    dropped_points: int = 0                # client: NaN/inf points dropped before encoding

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


def from_response(frame, resp, rtt_ms: float, classes: Sequence[str], header_bytes: int = 0) -> Result:
    """A Result for ``frame`` (a ``stream.Frame``) from a v2 StreamResponse or ClassifyResponse."""
    r = Result(seq=frame.seq, name=frame.name, true_label=frame.label, payload_bytes=len(frame.payload),
               header_bytes=header_bytes, encode_ms=frame.encode_ms, rtt_ms=rtt_ms, sends=frame.sends,
               duplicate=getattr(resp, "duplicate", False), model=frame.model, wait_ms=frame.wait_ms,
               response_bytes=resp.ByteSize(), backoff_ms=frame.backoff_ms,
               dropped_points=frame.dropped_points)
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


def failed_result(frame, error: str) -> Result:
    """A Result for a frame that failed before or without an answer (``error``: "CODE: message")."""
    return Result(seq=frame.seq, name=frame.name, true_label=frame.label, payload_bytes=len(frame.payload),
                  encode_ms=frame.encode_ms, sends=frame.sends, model=frame.model, wait_ms=frame.wait_ms,
                  error=error)
