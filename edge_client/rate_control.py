"""Bandwidth-adaptive rate control: pick, frame by frame, the shipped model (rate point and size)
with the best expected accuracy whose predicted end-to-end latency fits a budget.

SPINN adapts its split point to the link; here the split is fixed and the *rate* adapts: a model
family (e.g. ``full-p1024-l{16000,4000,320,80,28,10}``, plus lite and micro sizes) offers rate
points of known payload size and measured accuracy (``metrics.accuracy`` in each config), and
the client switches between them as the link changes.

What the controller learns from the acknowledgements of its own frames (no probing traffic):

- **pace** (ms per byte on the wire, 1/goodput): per ack, a delivery sample. When the frame went
  out while earlier frames were still unanswered (the link was busy), the link delivered it in
  the time between the previous ack and this one: ``pace = (t_ack - max(t_send, t_prev_ack)) /
  bytes``. When it went out on an idle link: ``pace = (rtt - server_ms - base_ms) / bytes``.
  Samples are smoothed with an EWMA that reacts faster to a slower link (``alpha_up``) than to a
  faster one (``alpha``). Bytes are the frame's bytes on the wire, both directions (request and
  answer, with HTTP/2, gRPC and TCP/IP framing: ``wire_bytes``).
- **base** (ms, the round trip of an empty frame): the minimum over the last ``window`` acks of
  ``rtt - server_ms - bytes * pace``, at least 0.
- **rtt** (EWMA of ``rtt - server_ms``, reported), **server time** (EWMA per model of the
  server's decode + queue + classify), **encode time** (EWMA per model of the device's encode).
- **backlog**: the frames sent and not yet answered, replayed on a virtual link at the current
  pace from the last ack: when the link will be free again.

Prediction for candidate c at time t: ``encode_c + backlog_after(t + encode_c) + bytes_c * pace
+ base + server_c``. Decision: the most accurate candidate with prediction <= ``margin *
budget`` (to move to a candidate of more bytes than the current one, <= ``(margin -
hysteresis) * budget``); ties go to fewer bits; if none fits, the one of least predicted
latency. Before the first ack: the candidate of fewest bytes.

The controller is a pure function of the events it is given (sends, acks, encodes, with their
times): ``replay(trace, ...)`` re-runs a recorded trace and must reproduce its decisions, which is
how the tests check it. ``EdgeClient.stream(..., controller=...)`` feeds it live.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

# bytes on the wire around a payload (docs/protocol.md): per gRPC message, the HTTP/2 DATA frame
# header (9) and the gRPC length prefix (5); per TCP segment, Ethernet (14) + IPv4 (20) + TCP with
# timestamps (32) = 66; a v2 StreamRequest frame: the latent's tag and length (2)
GRPC_MESSAGE_OVERHEAD = 14
TCP_SEGMENT_OVERHEAD = 66
MSS = 1448
PROTO_FIELDS_OVERHEAD = 2


def segments(n: int) -> int:
    return max(1, -(-int(n) // MSS))


def request_wire_bytes(payload_bytes: int) -> int:
    """Bytes on the wire for one v2 stream frame on an open stream (latent, envelope, framing)."""
    msg = payload_bytes + PROTO_FIELDS_OVERHEAD
    return msg + GRPC_MESSAGE_OVERHEAD + segments(msg) * TCP_SEGMENT_OVERHEAD


def response_wire_bytes(message_bytes: int) -> int:
    """Bytes on the wire for one ClassifyResponse of ``message_bytes`` serialized bytes."""
    return message_bytes + GRPC_MESSAGE_OVERHEAD + segments(message_bytes) * TCP_SEGMENT_OVERHEAD


@dataclass(frozen=True)
class Candidate:
    """One model the client may switch to."""
    name: str
    accuracy: float            # expected accuracy (the model's measured test accuracy)
    payload_bytes: float       # expected frame bytes (the mean coded latent)
    encode_ms: float = 0.0     # expected encode time on this device (updated while streaming)
    bits: float = 0.0          # mean payload bits (ties, reports)
    size: str = ""

    def request_bytes(self, stream_id: str = "") -> float:
        return request_wire_bytes(int(round(self.payload_bytes)))


@dataclass
class Decision:
    """One choice, with what it was based on."""
    t: float
    model: str
    predicted_ms: dict[str, float]
    pace_ms_per_kb: float | None      # ms per 1000 bytes (8 / goodput in Mbit/s)
    goodput_mbit: float | None
    base_ms: float
    backlog_ms: float
    feasible: bool

    def record(self) -> dict[str, Any]:
        d = asdict(self)
        d["predicted_ms"] = {k: round(v, 3) for k, v in self.predicted_ms.items()}
        for k in ("pace_ms_per_kb", "goodput_mbit", "base_ms", "backlog_ms"):
            if d[k] is not None:
                d[k] = round(d[k], 4)
        return d


@dataclass
class _Sent:
    seq: int
    t: float
    model: str
    bytes: float                     # request wire bytes
    busy: bool                       # earlier frames were unanswered when it went out


@dataclass
class RateController:
    """See the module docstring. Times are seconds on one monotonic clock (the caller's)."""
    candidates: Sequence[Candidate]
    budget_ms: float
    margin: float = 0.8
    hysteresis: float = 0.1
    alpha: float = 0.2               # EWMA weight of a sample showing a faster link
    alpha_up: float = 0.5            # ... of a sample showing a slower link
    window: int = 32                 # acks over which the base round trip is a minimum
    stream_id: str = ""
    record: bool = True
    pace: float | None = None        # ms per byte
    trace: list[dict] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self):
        if not self.candidates:
            raise ValueError("no candidate models")
        self.by_name = {c.name: c for c in self.candidates}
        self.encode_ms = {c.name: float(c.encode_ms) for c in self.candidates}
        self.server_ms: dict[str, float] = {}
        self.server_all: float | None = None
        self.response_bytes: float | None = None
        self.rtt_ms: float | None = None
        self.outstanding: dict[int, _Sent] = {}
        self.last_ack_t: float | None = None
        self._base_samples: deque = deque(maxlen=self.window)
        self.current: str | None = None
        self._lock = threading.Lock()

    # -- events -------------------------------------------------------------------------------------
    def on_stream(self, stream_id: str) -> None:
        """The stream's id (its length counts in every request's bytes)."""
        with self._lock:
            self._log({"ev": "stream", "stream_id": stream_id})
            self.stream_id = stream_id

    def on_encoded(self, model: str, encode_ms: float) -> None:
        with self._lock:
            self._log({"ev": "encoded", "model": model, "encode_ms": encode_ms})
            old = self.encode_ms.get(model)
            self.encode_ms[model] = encode_ms if not old else 0.7 * old + 0.3 * encode_ms

    def on_send(self, seq: int, t: float, model: str, request_bytes: float) -> None:
        with self._lock:
            self._log({"ev": "send", "seq": seq, "t": t, "model": model, "bytes": request_bytes})
            self.outstanding[seq] = _Sent(seq, t, model, float(request_bytes), busy=bool(self.outstanding))

    def on_ack(self, seq: int, t: float, server_ms: float, response_bytes: float) -> None:
        with self._lock:
            self._log({"ev": "ack", "seq": seq, "t": t, "server_ms": server_ms, "bytes": response_bytes})
            s = self.outstanding.pop(seq, None)
            if s is None:
                return
            self.response_bytes = (response_bytes if self.response_bytes is None
                                   else 0.8 * self.response_bytes + 0.2 * response_bytes)
            old = self.server_ms.get(s.model)
            self.server_ms[s.model] = server_ms if old is None else 0.8 * old + 0.2 * server_ms
            self.server_all = server_ms if self.server_all is None else 0.8 * self.server_all + 0.2 * server_ms
            wire = s.bytes + response_bytes
            net = max(0.0, (t - s.t) * 1e3 - server_ms)
            self.rtt_ms = net if self.rtt_ms is None else 0.8 * self.rtt_ms + 0.2 * net
            if s.busy and self.last_ack_t is not None:
                interval = (t - max(s.t, self.last_ack_t)) * 1e3
            else:
                interval = net - self._base()
            sample = max(0.0, interval) / wire
            if self.pace is None:
                self.pace = sample
            else:
                a = self.alpha_up if sample > self.pace else self.alpha
                self.pace = (1 - a) * self.pace + a * sample
            self._base_samples.append((net, wire))
            self.last_ack_t = t if self.last_ack_t is None else max(self.last_ack_t, t)

    def choose(self, t: float) -> Decision:
        """The model for the next frame (to be encoded now, at time t)."""
        with self._lock:
            self._log({"ev": "choose", "t": t})
            base = self._base()
            preds = {c.name: self._predict(c, t, base) for c in self.candidates}
            if self.pace is None:   # nothing known yet: the smallest frames
                pick = min(self.candidates, key=lambda c: (c.payload_bytes, -c.accuracy)).name
                feasible = False
            else:
                cur = self.by_name.get(self.current) if self.current else None

                def fits(c: Candidate) -> bool:
                    limit = self.margin
                    if cur is not None and c.payload_bytes > cur.payload_bytes:
                        limit -= self.hysteresis
                    return preds[c.name] <= limit * self.budget_ms

                ok = [c for c in self.candidates if fits(c)]
                feasible = bool(ok)
                if ok:
                    pick = max(ok, key=lambda c: (c.accuracy, -c.payload_bytes)).name
                else:
                    pick = min(self.candidates, key=lambda c: (preds[c.name], -c.accuracy)).name
            self.current = pick
            d = Decision(t=t, model=pick, predicted_ms=preds,
                         pace_ms_per_kb=None if self.pace is None else self.pace * 1e3,
                         goodput_mbit=None if not self.pace else 8e-3 / self.pace,
                         base_ms=base, backlog_ms=self._link_free_ms(t), feasible=feasible)
            self.decisions.append(d)
            return d

    # -- estimates ----------------------------------------------------------------------------------
    def _log(self, ev: dict) -> None:
        if self.record:
            self.trace.append(ev)

    def _base(self) -> float:
        if not self._base_samples or self.pace is None:
            return 0.0
        return max(0.0, min(net - wire * self.pace for net, wire in self._base_samples))

    def _link_free_ms(self, t: float) -> float:
        """ms from t until the frames not yet answered have crossed the link (virtual replay)."""
        if not self.outstanding or self.pace is None:
            return 0.0
        free = self.last_ack_t if self.last_ack_t is not None else float("-inf")
        for s in sorted(self.outstanding.values(), key=lambda s: s.t):
            free = max(free, s.t) + (s.bytes + (self.response_bytes or 0.0)) * self.pace / 1e3
        return max(0.0, (free - t) * 1e3)

    def _predict(self, c: Candidate, t: float, base: float) -> float:
        enc = self.encode_ms.get(c.name, c.encode_ms)
        if self.pace is None:
            return enc
        server = self.server_ms.get(c.name, self.server_all or 0.0)
        wire = c.request_bytes(self.stream_id) + (self.response_bytes or 0.0)
        return enc + self._link_free_ms(t + enc / 1e3) + wire * self.pace + base + server


def replay(trace: Iterable[dict], candidates: Sequence[Candidate], budget_ms: float,
           **params) -> list[Decision]:
    """Feed a recorded trace to a fresh controller; its decisions, one per "choose" event."""
    c = RateController(candidates, budget_ms, record=False, **params)
    for ev in trace:
        kind = ev["ev"]
        if kind == "choose":
            c.choose(ev["t"])
        elif kind == "send":
            c.on_send(ev["seq"], ev["t"], ev["model"], ev["bytes"])
        elif kind == "ack":
            c.on_ack(ev["seq"], ev["t"], ev["server_ms"], ev["bytes"])
        elif kind == "encoded":
            c.on_encoded(ev["model"], ev["encode_ms"])
        elif kind == "stream":
            c.on_stream(ev["stream_id"])
    return c.decisions


def candidate_from_config(cfg, encode_ms: float = 0.0) -> Candidate:
    """A Candidate from a repository config: accuracy and mean bits from its metrics."""
    raw = cfg.raw
    m = raw.get("metrics") or {}
    acc = m.get("accuracy", m.get("test_accuracy"))
    if acc is None:
        raise ValueError(f"model {cfg.name!r} has no measured accuracy in its config")
    bits = float(m.get("bits_mean") or 0.0)
    return Candidate(name=cfg.name, accuracy=float(acc), payload_bytes=max(1.0, bits / 8),
                     encode_ms=encode_ms, bits=bits, size=str(raw.get("size", "")))


def resolve_family(repo, family: Sequence[str] | str, points: int | None = 1024) -> list:
    """Configs of a family: model names, sizes ("full", "lite", "micro") or "all"
    (every point-cloud codec of the repository at ``points`` with measured metrics)."""
    if isinstance(family, str):
        family = [f for f in family.split(",") if f]
    configs = repo.list("pointcloud-classification")
    out: dict[str, Any] = {}
    def measured(c) -> bool:   # a model still being exported has no metrics yet
        m = c.raw.get("metrics") or {}
        return m.get("bits_mean") is not None and m.get("accuracy", m.get("test_accuracy")) is not None

    for f in family:
        if f == "all" or f in ("full", "lite", "micro"):
            for c in configs:
                if ((f == "all" or c.raw.get("size") == f) and measured(c)
                        and (points is None or int(c.raw.get("points", 0)) == points)):
                    out[c.name] = c
        else:
            out[f] = repo.config(f)
    if not out:
        raise ValueError(f"no models in family {','.join(family)!r} in {repo.root}")
    return list(out.values())


__all__ = ["Candidate", "Decision", "RateController", "candidate_from_config", "replay",
           "request_wire_bytes", "resolve_family", "response_wire_bytes"]
