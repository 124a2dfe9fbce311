"""The sweep: every networked pipeline at every bandwidth (cells), its statistics per device
slowdown K, the crossovers between pipelines and the bar (split against cloud-only Draco)."""
from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .link import Link
    from .worker import WorkerProcess

BANDWIDTHS = {"short": (0.01, 0.1, 1.0, 10.0, 100.0),
              "full": (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)}
MODES = {"short": {"cell_seconds": 4.0, "min_frames": 3, "max_frames": 40, "edge_frames": 60},
         "full": {"cell_seconds": 20.0, "min_frames": 5, "max_frames": 300, "edge_frames": 500}}
SLOWDOWNS = (1.0, 8.0)
TARGET_RATIO = 0.1             # split (full, low) p50 / cloud-only Draco (lowest setting) p50 at 0.1 Mbit/s


def pct(xs, q):
    """The q-th percentile (None for no values)."""
    return float(np.percentile(xs, q)) if len(xs) else None


def cell_stats(frames: list[dict], k: float, rtt_ms: float = 0.0) -> dict:
    """Latency (K x edge + network + the added round trip) and accuracy of one cell's frames."""
    lat = [k * f["edge_ms"] + f.get("net_ms", 0.0) + (rtt_ms if f.get("net_ms") else 0.0)
           for f in frames if f.get("label") is not None]
    ok = [f for f in frames if f.get("label") is not None]
    return {"frames": len(frames), "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95),
            "mean_ms": float(np.mean(lat)) if lat else None,
            "accuracy": (sum(f["label"] == f["truth"] for f in ok) / len(ok)) if ok else None,
            "errors": len(frames) - len(ok)}


def crossings(bws, a, b) -> list[float]:
    """Bandwidths where latency curve a crosses b (log-log interpolation between sweep points)."""
    out = []
    pts = [(bw, x, y) for bw, x, y in zip(bws, a, b) if x and y]
    for (b0, x0, y0), (b1, x1, y1) in zip(pts, pts[1:]):
        d0, d1 = math.log(x0 / y0), math.log(x1 / y1)
        if d0 == 0:
            out.append(b0)
        elif d0 * d1 < 0:
            f = d0 / (d0 - d1)
            out.append(float(math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0)))))
    return out


def crossover_table(result: dict) -> list[dict]:
    """For every K: each pipeline against the best edge-only and, for split, against each cloud-only."""
    bws = result["bandwidths"]
    pipes = {p["id"]: p for p in result["pipelines"]}
    rows = []
    for key in result["slowdowns"]:
        tab = result["p50"][key]
        edge = [p for p in pipes if pipes[p]["kind"] == "edge"]
        pairs = []
        for e in edge:
            pairs += [(x, e) for x in pipes if pipes[x]["kind"] != "edge"]
        for s in (x for x in pipes if pipes[x]["kind"] == "split"):
            pairs += [(s, c) for c in pipes if pipes[c]["kind"] == "cloud"]
        for x, y in pairs:
            a, b = [tab[x].get(str(bw)) for bw in bws], [tab[y].get(str(bw)) for bw in bws]
            cr = crossings(bws, a, b)
            below = next(((bw, u < v) for bw, u, v in zip(bws, a, b) if u and v), None)
            rows.append({"K": key, "a": x, "b": y, "crossovers_mbit": [round(c, 4) for c in cr],
                         "a_faster_at_lowest_bw": below[1] if below else None})
    return rows


def run_sweep(worker: WorkerProcess, link: Link, pipelines: list[dict], bandwidths, mode: dict,
              progress=True, drain: bool = True) -> list[dict]:
    """Edge-only pipelines once, then every networked pipeline at every bandwidth (alternating
    the order); per cell the frames and the wire bytes per frame from the link's counters."""
    cells = []
    nxt = {p["id"]: 0 for p in pipelines}
    edge = [p for p in pipelines if p["kind"] == "edge"]
    net = [p for p in pipelines if p["kind"] != "edge"]
    for p in edge:   # link-independent: measured once
        r = worker.call({"cmd": "run", "pipeline": p, "start": 0, "seconds": 0, "min_frames": mode["edge_frames"],
                         "max_frames": mode["edge_frames"]})
        nxt[p["id"]] = r["next"]
        cells.append({"pipeline": p["id"], "bandwidth_mbit": None, "frames": r["frames"], "wall_s": r["wall_s"]})
        if progress:
            print(f"  {p['id']:<22} (no link) {len(r['frames']):>4} frames "
                  f"edge p50 {pct([f['edge_ms'] for f in r['frames']], 50):8.2f} ms", file=sys.stderr, flush=True)
    for n_bw, bw in enumerate(bandwidths):
        link.set_rate(bw)
        order = net if n_bw % 2 == 0 else net[::-1]
        for p in order:
            msg = {"cmd": "run", "pipeline": p, "start": nxt[p["id"]], "seconds": mode["cell_seconds"],
                   "min_frames": mode["min_frames"], "max_frames": mode["max_frames"]}
            dr = link.drain(bw) if drain else None
            if dr:
                msg["drain"] = dr
            c0 = link.counters()
            r = worker.call(msg)
            c1 = link.counters()
            nxt[p["id"]] = r["next"]
            nf = len(r["frames"]) + 1   # + the unmeasured warm-up frame
            filler = dr["burst"] if dr else 0
            wire = {d: ((c1[d] - c0[d]) / nf - (filler if d == "up" else 0)
                        if c1[d] is not None and c0[d] is not None else None)
                    for d in ("up", "down")}
            cells.append({"pipeline": p["id"], "bandwidth_mbit": bw, "frames": r["frames"], "wall_s": r["wall_s"],
                          "wire_bytes_per_frame": wire, "drops": c1["drops"] - c0["drops"]})
            if progress:
                lat = [f["edge_ms"] + f["net_ms"] for f in r["frames"]]
                print(f"  {p['id']:<22} {bw:>7g} Mbit/s {len(r['frames']):>4} frames  p50 {pct(lat, 50):10.2f} ms  "
                      f"uplink {wire['up'] or 0:8.0f} B/frame  ({r['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    return cells


def summarize_sweep(result: dict, cells: list[dict], slowdowns, rtt_ms: float) -> None:
    """Per-cell rows, p50 / p95 tables by K, pipeline and bandwidth, and accuracy over distinct clouds."""
    bws = result["bandwidths"]
    result["cells"] = []
    result["p50"], result["p95"], result["accuracy"] = {}, {}, {}
    for k in slowdowns:
        key = f"K={k:g}"
        result["p50"][key] = {p["id"]: {} for p in result["pipelines"]}
        result["p95"][key] = {p["id"]: {} for p in result["pipelines"]}
    by_pipe: dict[str, list] = {}
    for c in cells:
        pid = c["pipeline"]
        by_pipe.setdefault(pid, []).extend(c["frames"])
        stats = {f"K={k:g}": cell_stats(c["frames"], k, rtt_ms) for k in slowdowns}
        edge_ms = [f["edge_ms"] for f in c["frames"]]
        net_ms = [f.get("net_ms", 0.0) for f in c["frames"]]
        row = {"pipeline": pid, "bandwidth_mbit": c["bandwidth_mbit"], "frames": len(c["frames"]),
               "wall_s": round(c["wall_s"], 3), "edge_ms_p50": pct(edge_ms, 50), "network_ms_p50": pct(net_ms, 50),
               "payload_bytes_mean": float(np.mean([f.get("bytes", 0) for f in c["frames"]])) if c["frames"] else None,
               "wire_bytes_per_frame": c.get("wire_bytes_per_frame"), "drops": c.get("drops"), "stats": stats}
        result["cells"].append(row)
        targets = bws if c["bandwidth_mbit"] is None else [c["bandwidth_mbit"]]
        for k in slowdowns:
            key = f"K={k:g}"
            for bw in targets:
                result["p50"][key][pid][str(bw)] = stats[key]["p50_ms"]
                result["p95"][key][pid][str(bw)] = stats[key]["p95_ms"]
    for pid, frames in by_pipe.items():
        ok = [f for f in frames if f.get("label") is not None]
        distinct = {f["i"]: f["label"] == f["truth"] for f in ok}
        result["accuracy"][pid] = {"frames": len(ok), "distinct_clouds": len(distinct),
                                   "accuracy": (sum(distinct.values()) / len(distinct)) if distinct else None}


def bar_split_vs_draco(result: dict) -> dict | None:
    """split (full, low rate) p50 / cloud-only Draco at its lowest setting, at 0.1 Mbit/s."""
    pipes = {p["id"]: p for p in result["pipelines"]}
    split = next((f"split-{s}-low" for s in ("full", "lite", "micro") if f"split-{s}-low" in pipes), None)
    dracos = sorted((p for p in pipes.values() if p.get("input") == "draco"), key=lambda p: p["qbits"])
    if not split or not dracos or "0.1" not in {str(b) for b in result["bandwidths"]}:
        return None
    out = {"bandwidth_mbit": 0.1, "split": split, "split_model": pipes[split]["model"],
           "target_ratio": TARGET_RATIO, "by_K": {}, "vs_each_draco": {}}
    for key in result["slowdowns"]:
        s = result["p50"][key][split].get("0.1")
        per = {}
        for d in dracos:
            v = result["p50"][key][d["id"]].get("0.1")
            per[d["id"]] = (s / v) if (s and v) else None
        lowest = dracos[0]["id"]
        out["by_K"][key] = {"split_p50_ms": s, "draco": lowest, "draco_p50_ms": result["p50"][key][lowest].get("0.1"),
                            "ratio": per[lowest], "met": per[lowest] is not None and per[lowest] <= TARGET_RATIO}
        out["vs_each_draco"][key] = per
    return out
