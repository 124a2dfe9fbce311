"""The rate-control experiment: a sensor stream (a cloud every interval) while the link rate
follows a schedule, once with the bandwidth-adaptive client (a family of models, a latency
budget) and once with a fixed client at the family's most accurate model; per frame the latency
from capture to answer, the chosen model and its bits, correctness; per run the share of frames
within the budget, by phase of the schedule."""
from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import numpy as np

from .pipelines import accuracy_of, bits_of
from .sweep import pct

if TYPE_CHECKING:
    from .link import Link
    from .worker import WorkerProcess

TARGET_WITHIN_BUDGET = 0.95    # adaptive client: share of frames within the budget
DEFAULT_SCHEDULE = ((10.0, 15.0), (0.05, 15.0), (10.0, 15.0))   # (Mbit/s, seconds)


def parse_schedule(text: str):
    """"MBIT:SECONDS,..." -> ((Mbit/s, seconds), ...)."""
    out = []
    for part in text.split(","):
        rate, secs = part.split(":")
        out.append((float(rate), float(secs)))
    return tuple(out)


def run_adaptive(worker: WorkerProcess, link: Link, family: str, budget_ms: float, interval_ms: float,
                 schedule, window: int, fixed: str | None, slowdown: float, params: dict | None,
                 progress=True) -> dict:
    """Both runs under the schedule (the frame interval and budget from ``auto_stream_settings``
    unless given, calibrated by two short streams when the interval is not), their summaries and
    the bar: the adaptive client within the budget for most frames, the fixed one not, none lost."""
    from edge_client.rate_control import resolve_family
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(worker.models_dir)
    configs = resolve_family(repo, family)
    fixed = fixed or max(configs, key=lambda c: (accuracy_of(c) or 0, bits_of(c) or 0)).name
    auto = auto_stream_settings(configs, schedule)
    if interval_ms is None:   # calibrate: uplink bytes per frame of the extreme rate points, streaming
        from edge_client.rate_control import candidate_from_config
        by_size = sorted(configs, key=lambda c: candidate_from_config(c).payload_bytes)
        measured = {}
        for c in (by_size[0], by_size[-1]):
            link.set_rate(max(r for r, _ in schedule))   # an empty queue
            time.sleep(0.3)
            link.set_rate(min(r for r, _ in schedule))   # bytes per frame as the slow link sees them
            c0 = link.counters()
            worker.send({"cmd": "adaptive", "model": c.name, "interval_ms": auto["interval_ms"], "duration_s": 2.0,
                         "window": window, "slowdown": 1.0, "start": 0, "budget_ms": 1e9})
            ev = worker.read()
            if not ev.get("event"):
                raise RuntimeError(f"worker: {ev.get('error')}\n{ev.get('traceback', '')}")
            r = worker.result()
            measured[c.name] = (link.counters()["up"] - c0["up"]) / max(1, len(r["frames"]))
        link.set_rate(max(r for r, _ in schedule))
        auto = auto_stream_settings(configs, schedule, measured=measured)
        auto["calibration"] = {"uplink_bytes_per_frame": measured, "at_mbit": min(r for r, _ in schedule),
                               "note": "2 s streams of the lowest and highest rate point at the lowest rate of "
                                       "the schedule, a frame every estimated interval, before the experiment"}
    budget_ms = auto["budget_ms"] if budget_ms is None else budget_ms
    interval_ms = auto["interval_ms"] if interval_ms is None else interval_ms
    if progress:
        print(f"  adaptive experiment: family {', '.join(c.name for c in configs)}; fixed {fixed}; a frame every "
              f"{interval_ms:g} ms, budget {budget_ms:g} ms", file=sys.stderr, flush=True)
    duration = sum(s for _, s in schedule)
    runs = {}
    for name in ("adaptive", "fixed"):
        link.set_rate(schedule[0][0])
        time.sleep(0.5)
        msg = {"cmd": "adaptive", "budget_ms": budget_ms, "interval_ms": interval_ms, "duration_s": duration,
               "window": window, "slowdown": slowdown, "params": params or {}, "start": 0}
        if name == "adaptive":
            msg["family"] = ",".join(c.name for c in configs)
        else:
            msg["model"] = fixed
        t_wall = time.perf_counter()
        worker.send(msg)
        ev = worker.read()
        if not ev.get("event"):
            raise RuntimeError(f"worker: {ev.get('error')}\n{ev.get('traceback', '')}")
        t0 = time.perf_counter()
        changes = [{"t_s": 0.0, "mbit": schedule[0][0]}]
        bounds = np.cumsum([secs for _, secs in schedule])
        for (rate, _), t in zip(schedule[1:], bounds):
            delay = t0 + t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            link.set_rate(rate)
            changes.append({"t_s": round(time.perf_counter() - t0, 4), "mbit": rate})
        r = worker.result()
        r["rate_changes"] = changes
        r["wall_s"] = time.perf_counter() - t_wall
        runs[name] = r
        if progress:
            s = summarize_run(r, budget_ms, schedule)
            print(f"  adaptive experiment, {name:<8}: {s['frames']} frames, {100 * s['within_budget']:.1f}% within "
                  f"{budget_ms:g} ms, lost {s['lost']}, accuracy {s['accuracy']}", file=sys.stderr, flush=True)
    out = {"family": [c.name for c in configs], "fixed_model": fixed, "budget_ms": budget_ms, "auto": auto,
           "interval_ms": interval_ms, "schedule": [{"mbit": r, "seconds": s} for r, s in schedule],
           "window": window, "slowdown": slowdown, "runs": runs,
           "summary": {k: summarize_run(v, budget_ms, schedule) for k, v in runs.items()}}
    a, f = out["summary"]["adaptive"], out["summary"]["fixed"]
    out["bar"] = {"adaptive_within_budget": a["within_budget"], "fixed_within_budget": f["within_budget"],
                  "target": TARGET_WITHIN_BUDGET, "adaptive_lost": a["lost"] + a["failed"],
                  "met": (a["within_budget"] >= TARGET_WITHIN_BUDGET and f["within_budget"] < TARGET_WITHIN_BUDGET
                          and a["lost"] == 0 and a["failed"] == 0)}
    return out


def auto_stream_settings(configs, schedule, ack_bytes: float = 66.0, measured: dict | None = None) -> dict:
    """Frame interval and budget that make the experiment informative for this family.

    At the schedule's lowest rate R, a frame of the family's lowest rate point costs W_low bytes
    of uplink (request plus the ACKs and HTTP/2 control frames it causes: ``measured`` by a short
    calibration stream, else estimated as request + one TCP ACK), the highest W_high. The
    interval is the time R needs for (W_low + W_high) / 2: the highest rate point then sends more
    than the link carries (its queue grows without bound) while the lowest fits with room to
    spare; the budget is 2.5 intervals (rounded up to 5 ms). Both are reported; --interval-ms
    and --latency-budget override them.
    """
    from edge_client.rate_control import candidate_from_config
    low = min(r for r, _ in schedule)
    sid = "a" + "0" * 8
    wires = sorted(candidate_from_config(c).request_bytes(sid) + ack_bytes for c in configs)
    if measured:
        wires = sorted(measured.values())
    interval = (wires[0] + wires[-1]) / 2 * 8 / (low * 1e6) * 1e3
    budget = 5.0 * math.ceil(2.5 * interval / 5.0)
    return {"interval_ms": round(interval, 2), "budget_ms": budget, "low_mbit": low,
            "uplink_bytes_per_frame": {"lowest_rate_point": wires[0], "highest_rate_point": wires[-1]},
            "utilisation_at_low_rate": {"lowest_rate_point": wires[0] * 8 / (low * 1e6) * 1e3 / interval,
                                        "highest_rate_point": wires[-1] * 8 / (low * 1e6) * 1e3 / interval}}


def _phase_of(t_ms: float, schedule) -> int:
    t = 0.0
    for i, (_, secs) in enumerate(schedule):
        t += secs * 1e3
        if t_ms < t:
            return i
    return len(schedule) - 1


def summarize_run(r: dict, budget_ms: float, schedule) -> dict:
    """One run: frames lost, failed, within the budget, latency percentiles, accuracy, by phase."""
    frames = r["frames"]
    ok = [f for f in frames if not f["error"]]
    lat = [f["latency_ms"] for f in ok]
    within = sum(x <= budget_ms for x in lat)
    labelled = [f for f in ok if f["correct"] is not None]
    phases = []
    for i, (rate, secs) in enumerate(schedule):
        fr = [f for f in ok if _phase_of(f["t_ms"], schedule) == i]
        ll = [f["latency_ms"] for f in fr]
        phases.append({"mbit": rate, "seconds": secs, "frames": len(fr), "p50_ms": pct(ll, 50), "p95_ms": pct(ll, 95),
                       "within_budget": (sum(x <= budget_ms for x in ll) / len(ll)) if ll else None,
                       "bits_mean": float(np.mean([f["bits_model"] or 0 for f in fr])) if fr else None,
                       "expected_accuracy": float(np.mean([f["expected_accuracy"] or 0 for f in fr])) if fr else None})
    models: dict[str, int] = {}
    for f in ok:
        models[f["model"]] = models.get(f["model"], 0) + 1
    return {"frames": len(frames), "scheduled": r["count"], "lost": r["summary"]["lost"] + (r["count"] - len(frames)),
            "failed": len(frames) - len(ok), "within_budget": within / r["count"] if r["count"] else 0.0,
            "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "max_ms": max(lat) if lat else None,
            "accuracy": (sum(bool(f["correct"]) for f in labelled) / len(labelled)) if labelled else None,
            "expected_accuracy": float(np.mean([f["expected_accuracy"] or 0 for f in ok])) if ok else None,
            "models": models, "phases": phases}
