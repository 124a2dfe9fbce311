"""What the benchmark shows: the text tables (latency by K, pipeline and bandwidth; bytes per
frame on the wire; crossovers; the bars; the rate-control experiment) and the two plots
(latency against bandwidth; the adaptive and the fixed client under the changing link)."""
from __future__ import annotations

import math

import numpy as np

from .rate_experiment import TARGET_WITHIN_BUDGET
from .sweep import TARGET_RATIO

KIND_ORDER = {"edge": 0, "cloud": 1, "split": 2}
_COLORS = {"edge": "#555555", "cloud-raw": "#b2182b", "cloud-draco": ["#ef8a62", "#d6604d", "#f4a582"],
           "full": "#2166ac", "lite": "#1b7837", "micro": "#762a83"}


def _style(p: dict, i_draco: int):
    if p["kind"] == "edge":
        return dict(color=_COLORS[p["size"]], ls="--", marker=None, lw=1.4)
    if p["kind"] == "cloud":
        if p["input"] == "raw":
            return dict(color=_COLORS["cloud-raw"], ls="-", marker="s", lw=1.6)
        return dict(color=_COLORS["cloud-draco"][i_draco % 3], ls="-", marker="^", lw=1.4)
    return dict(color=_COLORS[p["size"]], ls="-" if p["id"].endswith("low") else ":", marker="o", lw=1.6)


def plot_sweep(result: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = list(result["slowdowns"])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.8), sharey=True)
    axes = np.atleast_1d(axes)
    bws = result["bandwidths"]
    for ax, key in zip(axes, keys):
        nd = 0
        for p in sorted(result["pipelines"], key=lambda p: KIND_ORDER[p["kind"]]):
            st = _style(p, nd)
            if p.get("input") == "draco":
                nd += 1
            y = [result["p50"][key][p["id"]].get(str(b)) for b in bws]
            y95 = [result["p95"][key][p["id"]].get(str(b)) for b in bws]
            xs = [b for b, v in zip(bws, y) if v]
            ax.plot(xs, [v for v in y if v], ls=st["ls"], marker=st["marker"], color=st["color"], lw=st["lw"],
                    ms=4, label=p["label"])
            if p["kind"] != "edge":
                ax.fill_between(xs, [v for v in y if v], [v for v, u in zip(y95, y) if u], color=st["color"],
                                alpha=0.08, lw=0)
        for row in result.get("crossovers", []):   # mark the headline crossovers
            if row["K"] != key or not row["crossovers_mbit"]:
                continue
            if not (row["a"].endswith("-low") and row["a"].startswith("split-full")
                    or (row["a"] == "cloud-raw" and row["b"].startswith("edge"))):
                continue
            for c in row["crossovers_mbit"]:
                y = result["p50"][key][row["b"]]
                yy = np.interp(math.log(c), [math.log(b) for b in bws], [math.log(y.get(str(b)) or 1) for b in bws])
                ax.plot([c], [math.exp(yy)], marker="x", color="k", ms=7, mew=1.5, zorder=5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("uplink bandwidth (Mbit/s)" if result["link"]["shape"] == "uplink" else "link bandwidth (Mbit/s)")
        ax.set_title(f"device slowdown {key}", fontsize=10)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0].set_ylabel("end-to-end latency per frame, p50 (ms; band: to p95)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7.5, frameon=False)
    fig.suptitle(f"Latency vs bandwidth ({result['link']['label']}; x: crossovers of split full low "
                 f"and of cloud raw vs edge-only)", fontsize=9)
    fig.tight_layout(rect=(0, 0.16, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_adaptive(ad: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True,
                                        gridspec_kw={"height_ratios": [2.2, 1.2, 1.2]})
    budget = ad["budget_ms"]
    colors = {"adaptive": "#2166ac", "fixed": "#b2182b"}
    for name, r in ad["runs"].items():
        fr = [f for f in r["frames"] if not f["error"]]
        t = [f["t_ms"] / 1e3 for f in fr]
        s = ad["summary"][name]
        lab = (f"{name} ({'family, budget' if name == 'adaptive' else ad['fixed_model']}): "
               f"{100 * s['within_budget']:.1f}% within budget")
        ax1.plot(t, [f["latency_ms"] for f in fr], ".", ms=2.5, color=colors[name], label=lab, alpha=0.8)
        ax2.step(t, [f["bits_model"] for f in fr], where="post", color=colors[name], lw=1.2, label=name)
        ax3.step(t, [100 * (f["expected_accuracy"] or 0) for f in fr], where="post", color=colors[name], lw=1.2,
                 label=f"{name}: expected (model's test accuracy)")
        corr = np.array([1.0 if f["correct"] else 0.0 for f in fr])
        if len(corr) >= 10:
            w = min(50, len(corr))
            roll = np.convolve(corr, np.ones(w) / w, mode="valid")
            ax3.plot(t[w - 1:], 100 * roll, color=colors[name], lw=0.8, alpha=0.5, ls="--",
                     label=f"{name}: measured, rolling {w} frames")
    ax1.axhline(budget, color="k", lw=1, ls="--", label=f"budget {budget:g} ms")
    ax1.set_yscale("log")
    ax1.set_ylabel("latency per frame (ms)")
    ax1.legend(fontsize=7.5, loc="upper left")
    axr = ax1.twinx()
    ch = ad["runs"]["adaptive"]["rate_changes"]
    end = sum(p["seconds"] for p in ad["schedule"])
    xs = [c["t_s"] for c in ch] + [end]
    ys = [c["mbit"] for c in ch] + [ch[-1]["mbit"]]
    axr.step(xs, ys, where="post", color="#888888", lw=2, alpha=0.5)
    axr.set_yscale("log")
    axr.set_ylabel("link rate (Mbit/s, grey)", color="#666666")
    ax2.set_ylabel("model bits/cloud")
    ax2.set_yscale("log")
    ax2.legend(fontsize=7.5, loc="upper right")
    ax3.set_ylabel("accuracy (%)")
    ax3.set_xlabel("time (s)")
    ax3.legend(fontsize=7, loc="lower left", ncol=2)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3, lw=0.5)
    fig.suptitle(f"Adaptive rate under a changing link ({ad['link_label']}), a frame every "
                 f"{ad['interval_ms']:g} ms", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def report(result: dict) -> str:
    lines = []
    if "p50" in result:
        bws = result["bandwidths"]
        for key in result["slowdowns"]:
            lines.append(f"p50 / p95 end-to-end latency (ms), device slowdown {key}, {result['link']['label']}:")
            lines.append(f"{'pipeline':<22} " + " ".join(f"{str(b) + ' Mb/s':>17}" for b in bws) + f" {'accuracy':>9}")
            for p in result["pipelines"]:
                pid = p["id"]
                cells = " ".join(f"{_fmt(result['p50'][key][pid].get(str(b))):>8}/{_fmt(result['p95'][key][pid].get(str(b))):<8}"
                                 for b in bws)
                acc = result["accuracy"].get(pid, {}).get("accuracy")
                lines.append(f"{pid:<22} {cells} {_fmt(None if acc is None else 100 * acc):>8}%")
            lines.append("")
        lines.append(f"bytes per frame on the wire, uplink / downlink (L2, from the link's counters; "
                     f"{result['link']['label']}):")
        lines.append(f"{'pipeline':<22} {'payload':>8} " + " ".join(f"{str(b) + ' Mb/s':>13}" for b in bws))
        wires = {(c["pipeline"], c["bandwidth_mbit"]): (c.get("wire_bytes_per_frame") or {}) for c in result["cells"]}
        for p in result["pipelines"]:
            if p["kind"] == "edge":
                continue
            pid = p["id"]
            pay = [c["payload_bytes_mean"] for c in result["cells"] if c["pipeline"] == pid and c["payload_bytes_mean"]]
            cells = " ".join(f"{_fmt(wires.get((pid, b), {}).get('up'), '.0f'):>6}/{_fmt(wires.get((pid, b), {}).get('down'), '.0f'):<6}"
                             for b in bws)
            lines.append(f"{pid:<22} {_fmt(float(np.mean(pay)) if pay else None):>8} {cells}")
        lines.append("")
        counts = {}
        for c in result["cells"]:
            if c["bandwidth_mbit"] is not None:
                counts.setdefault(c["pipeline"], {})[c["bandwidth_mbit"]] = c["frames"]
        lines.append("frames per cell: " + "; ".join(f"{pid} " + ",".join(str(v) for v in d.values())
                                                     for pid, d in counts.items()))
        lines.append("crossovers (Mbit/s; a faster below the crossover when a_faster_at_lowest_bw):")
        for row in result["crossovers"]:
            if row["crossovers_mbit"]:
                lines.append(f"  {row['K']}: {row['a']} vs {row['b']}: {row['crossovers_mbit']} "
                             f"({row['a']} {'faster' if row['a_faster_at_lowest_bw'] else 'slower'} below)")
        b = result.get("bar_split_vs_draco")
        if b:
            for key, v in b["by_K"].items():
                lines.append(f"bar {key}: {b['split']} p50 {_fmt(v['split_p50_ms'])} ms vs {v['draco']} "
                             f"{_fmt(v['draco_p50_ms'])} ms at 0.1 Mbit/s: ratio {_fmt(v['ratio'], '.3f')} "
                             f"(target <= {TARGET_RATIO}) -> {'met' if v['met'] else 'NOT met'}; vs each Draco: "
                             + ", ".join(f"{d} {_fmt(r, '.3f')}" for d, r in b["vs_each_draco"][key].items()))
    ad = result.get("adaptive")
    if ad:
        lines.append(f"adaptive experiment: budget {ad['budget_ms']:g} ms, a frame every {ad['interval_ms']:g} ms, "
                     f"schedule " + " -> ".join(f"{p['mbit']:g} Mbit/s x {p['seconds']:g} s" for p in ad["schedule"]))
        for name, s in ad["summary"].items():
            lines.append(f"  {name:<8}: {s['frames']}/{s['scheduled']} frames answered, lost {s['lost']}, failed "
                         f"{s['failed']}, {100 * s['within_budget']:.1f}% within budget, p50 {_fmt(s['p50_ms'])} ms, "
                         f"p95 {_fmt(s['p95_ms'])} ms, accuracy {_fmt(100 * (s['accuracy'] or 0))}%, expected "
                         f"{_fmt(100 * (s['expected_accuracy'] or 0))}%")
            for ph in s["phases"]:
                lines.append(f"      {ph['mbit']:>6g} Mbit/s: p50 {_fmt(ph['p50_ms'])} p95 {_fmt(ph['p95_ms'])} ms, "
                             f"{_fmt(100 * (ph['within_budget'] or 0))}% within, bits {_fmt(ph['bits_mean'])}")
        lines.append(f"  bar: adaptive >= {100 * TARGET_WITHIN_BUDGET:.0f}% within budget, fixed not, no frame lost "
                     f"-> {'met' if ad['bar']['met'] else 'NOT met'}")
    lines.append(f"wall time {result['wall_s']:.1f} s")
    return "\n".join(lines)
