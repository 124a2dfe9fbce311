"""Rate-accuracy results of the point-cloud codec: collect, summarise, tabulate, plot.

Inputs (all optional but the first):
- ``results/pointcloud/eval/<model>.json``: ``splitinfer eval pointcloud`` output (real bits);
- ``models/<model>/<version>/config.json``: size, points, lmbda, training wall time;
- ``results/pointcloud/draco.json``: ``splitinfer baseline draco`` output;
- ``models/plain-pointnet-p1024/1/config.json``: the plain PointNet's training record;
- ``results/pointcloud/scans/<model>@<version>.json``: ``splitinfer eval pointcloud --scans``
  output (clean and scan accuracy at real bits), for the scan benchmark's table and plot.

The main table and plot cover the models trained on clean clouds (configs without a
``preprocess`` section); the scan benchmark covers both those and the scan-trained versions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..metrics import NoOverlapError, bd_rate, cubic_fit_monotone, interpolate_rate, pareto_front

SIZES = ("full", "lite", "micro")
COLORS = {"full": "#1f77b4", "lite": "#ff7f0e", "micro": "#2ca02c"}
# Ulhaq & Bajić, MMSP 2023 (arXiv:2308.05959): published rate-accuracy at P=1024 (estimated bits, accuracy in %)
PUBLISHED = {
    "full": [(8.1, 45.1), (16.7, 72.5), (30.8, 81.1), (46.5, 84.0), (139.4, 87.6), (789.8, 88.5)],
    "micro": [(35.7, 77.3), (48.9, 80.9)],
}
PUBLISHED_80 = {"full": 30, "lite": 40, "micro": 50}  # "80% at about 30 / 40 / 50 bits"
PUBLISHED_MAX = {1024: {"full": 88.5, "lite": 85.0, "micro": 83.6},
                 256: {"full": 87.6, "lite": 84.4, "micro": 81.6},
                 64: {"full": 86.1, "lite": 81.3, "micro": 76.6}}
MIN_OVERLAP = 0.02  # BD-rates over less than 2 accuracy points are not reported
DRACO_PROTOCOL_QBITS = (3, 4, 5, 6, 7, 8, 10, 12)  # S = 8..256 as published, plus 1024, 4096


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def load_rows(results: str | Path, models: str | Path) -> list[dict]:
    """One row per evaluated model: eval JSON joined with its repository config."""
    results, models = Path(results), Path(models)
    configs = {}
    for p in sorted(models.glob("*/*/config.json")):
        c = _read(p)
        if c and c.get("task", "pointcloud-classification") == "pointcloud-classification" and "size" in c \
                and "preprocess" not in c:  # scan-trained versions: load_scan_rows
            if c["name"] not in configs or int(c.get("version", 1)) > int(configs[c["name"]].get("version", 1)):
                configs[c["name"]] = c
    evals = {}
    for p in sorted((results / "eval").glob("*.json")):
        e = _read(p)
        if e and "accuracy" in e and "bits_mean" in e:
            evals[e.get("model", p.stem)] = e
    rows = []
    for name in sorted(set(evals) | {n for n, c in configs.items() if c.get("metrics", {}).get("bits_mean")}):
        c = configs.get(name, {})
        e = evals.get(name) or c.get("metrics", {})
        size, P, lmbda = c.get("size"), c.get("points"), c.get("lmbda")
        if size is None:  # no config: parse <size>-p<P>-l<lambda>
            try:
                s, p_, l_ = name.split("-")
                size, P, lmbda = s, int(p_[1:]), float(l_[1:])
            except ValueError:
                continue
        est = e.get("estimated_bits_mean")
        rows.append({
            "model": name, "size": size, "points": int(P), "lmbda": float(lmbda),
            "bits": float(e["bits_mean"]),
            "estimated_bits": None if est is None else float(est),
            "overhead_bits": None if est is None else float(e["bits_mean"]) - float(est),
            "accuracy": float(e["accuracy"]),
            "train_wall_s": c.get("training", {}).get("wall_time_s"),
            "train_wall_with_warm_start_s": c.get("training", {}).get("wall_time_with_warm_start_s"),
            "train_epochs": c.get("training", {}).get("epochs"),
            "encode_ms": e.get("encode_ms_mean"), "decode_ms": e.get("decode_ms_mean"),
            "count": e.get("count"),
        })
    rows.sort(key=lambda r: (SIZES.index(r["size"]) if r["size"] in SIZES else 9, -r["points"], r["bits"]))
    return rows


def draco_curve(draco: dict | None, qbits=DRACO_PROTOCOL_QBITS,
                key: str = "bits_mean") -> tuple[np.ndarray, np.ndarray]:
    if not draco:
        return np.zeros(0), np.zeros(0)
    s = [x for x in draco["settings"] if (qbits is None or x["quantization_bits"] in qbits) and key in x]
    return np.array([x[key] for x in s]), np.array([x["accuracy"] for x in s])


def _bd(anchor, test) -> dict:
    (ra, qa), (rb, qb) = anchor, test
    out: dict = {}
    try:
        fa, fb = pareto_front(ra, qa), pareto_front(rb, qb)
    except ValueError as err:
        return {"error": str(err)}
    lo, hi = max(fa[1].min(), fb[1].min()), min(fa[1].max(), fb[1].max())
    out["accuracy_overlap"] = [float(lo), float(hi)] if hi > lo else None
    out["points"] = {"anchor": len(fa[0]), "test": len(fb[0])}
    if hi > lo:
        out["cubic_fit_monotone"] = {"anchor": cubic_fit_monotone(ra, qa, lo, hi),
                                     "test": cubic_fit_monotone(rb, qb, lo, hi)}
    for method in ("cubic", "pchip"):
        try:
            v = bd_rate(ra, qa, rb, qb, method, min_overlap=MIN_OVERLAP)
            out[method] = round(v, 3)
            # -99% hides the scale: the equivalent mean rate ratio (anchor bits / test bits)
            out[f"{method}_rate_ratio"] = round(100.0 / (100.0 + v), 1) if v > -100 else None
        except NoOverlapError as err:
            out[method] = None
            out["error"] = str(err)
        except ValueError as err:
            out[method] = None
            out["error"] = str(err)
    return out


def summarize(rows: list[dict], draco: dict | None = None, plain: dict | None = None) -> dict:
    """Everything the README table and the plot need."""
    best: dict = {}
    for r in rows:
        b = best.setdefault(r["size"], {})
        b[str(r["points"])] = max(b.get(str(r["points"]), 0.0), r["accuracy"])
    at80, bd, bd_q2, bd_payload = {}, {}, {}, {}
    dr = draco_curve(draco)
    dr_all = draco_curve(draco, None)
    dr_payload = draco_curve(draco, key="bits_minus_overhead_mean")
    for size in SIZES:
        sel = [r for r in rows if r["size"] == size and r["points"] == 1024]
        if not sel:
            continue
        rates = [r["bits"] for r in sel]
        acc = [r["accuracy"] for r in sel]
        est = [r["estimated_bits"] for r in sel]
        at80[size] = {"real_bits": interpolate_rate(rates, acc, 0.80),
                      "estimated_bits": interpolate_rate(est, acc, 0.80) if None not in est else None,
                      "published_estimated_bits": PUBLISHED_80[size],
                      "reached": max(acc) >= 0.80}
        if len(dr[0]):
            bd[size] = _bd(dr, (rates, acc))
            if len(dr_all[0]) > len(dr[0]):
                bd_q2[size] = _bd(dr_all, (rates, acc))
            if len(dr_payload[0]):
                bd_payload[size] = _bd(dr_payload, (rates, acc))
    out = {
        "rows": rows,
        "best_accuracy": best,
        "published_max_accuracy": {str(k): v for k, v in PUBLISHED_MAX.items()},
        "bits_at_80": at80,
        "bd_rate_vs_draco": bd,
        "notes": {
            "bits": "real bits = 8 x range-coded payload bytes per cloud (container header excluded); "
                    "estimated = sum of -log2 p of y_hat under the same tables; published points are "
                    "estimated bits",
            "bits_at_80": "linear interpolation in log rate between the two Pareto points around 80%",
            "bd_rate": "Bjontegaard delta rate (%) of each size (P=1024, real bits) against Draco + "
                       "plain PointNet (Draco q in 3..12; Draco bits are whole Draco buffers, header "
                       f"included); computed over the shared accuracy interval, not reported when it "
                       f"is under {MIN_OVERLAP:.0%}; cubic = classic polynomial fit of log rate vs "
                       "accuracy (meaningless where cubic_fit_monotone is false: a saturating curve "
                       "makes the polynomial oscillate), pchip = piecewise cubic Hermite (monotone); "
                       "rate_ratio = 100 / (100 + BD-rate), the mean factor of fewer bits",
        },
    }
    if bd_q2:
        out["bd_rate_vs_draco_incl_q2"] = bd_q2
    if bd_payload:
        out["bd_rate_vs_draco_minus_header"] = bd_payload
        out["notes"]["bd_rate_vs_draco_minus_header"] = (
            "the same against Draco bits minus Draco's fixed per-buffer overhead (a one-point "
            "buffer's size): a lower bound on Draco's cost, so a conservative BD-rate for us")
    if draco:
        out["draco"] = [{k: s.get(k) for k in ("quantization_bits", "scale", "bits_mean",
                                               "bits_minus_overhead_mean", "accuracy",
                                               "encode_ms_mean", "decode_ms_mean")}
                        for s in draco["settings"]]
        out["plain_accuracy"] = draco.get("plain_accuracy")
    if plain:
        out["plain_pointnet"] = plain
    return out


def _fmt(v, spec=".1f", none="–"):
    return none if v is None else format(v, spec)


def markdown_table(summary: dict) -> str:
    lines = ["| model | size | P | λ | bits/cloud (real) | estimated bits | overhead | accuracy | "
             "train wall | encode ms | decode ms |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        wall, total = r["train_wall_s"], r.get("train_wall_with_warm_start_s")
        wall_txt = "–" if wall is None else f"{wall / 60:.1f} min"
        if wall is not None and total and total > wall + 1:
            wall_txt += f" ({total / 60:.0f} with warm start)"
        lines.append(
            f"| {r['model']} | {r['size']} | {r['points']} | {r['lmbda']:g} | {r['bits']:.1f} | "
            f"{_fmt(r['estimated_bits'])} | {_fmt(r['overhead_bits'], '+.1f')} | "
            f"{100 * r['accuracy']:.1f}% | {wall_txt} | "
            f"{_fmt(r['encode_ms'], '.2f')} | {_fmt(r['decode_ms'], '.2f')} |")
    lines += ["", "| size | best accuracy P=1024 / 256 / 64 (published) | bits at 80% real (estimated; "
              "published) | BD-rate vs Draco (cubic / pchip) | vs Draco minus its header (pchip) |",
              "|---|---|---|---|---|"]
    for size in SIZES:
        if size not in summary["best_accuracy"]:
            continue
        b = summary["best_accuracy"][size]
        accs = " / ".join(  # two decimals: one test cloud is 0.04 points, and bars sit on a tenth
            (f"{100 * b[str(P)]:.2f}" if str(P) in b else "–") + f" ({PUBLISHED_MAX[P][size]})"
            for P in (1024, 256, 64))
        a = summary["bits_at_80"].get(size, {})
        if a.get("real_bits") is not None:
            at = f"{a['real_bits']:.1f} ({_fmt(a.get('estimated_bits'))}; ~{a['published_estimated_bits']})"
        elif a:
            at = f"not reached ({a['published_estimated_bits']} published)" if not a["reached"] else \
                "reached below the lowest rate point"
        else:
            at = "–"
        d = summary["bd_rate_vs_draco"].get(size)
        if d is None:
            bdt = "–"
        elif d.get("cubic") is None and d.get("pchip") is None:
            bdt = "overlap too small"
        else:
            mono = d.get("cubic_fit_monotone", {})
            bdt = " / ".join(
                "–" if d.get(m) is None else
                "cubic fit not monotone" if m == "cubic" and not all(mono.values()) else
                f"{d[m]:+.2f}%" + (f" (÷{d[m + '_rate_ratio']:.0f})" if d.get(m + "_rate_ratio") else "")
                for m in ("cubic", "pchip"))
            if d.get("accuracy_overlap"):
                lo, hi = d["accuracy_overlap"]
                bdt += f", over {100 * lo:.1f}–{100 * hi:.1f}%"
        p = summary.get("bd_rate_vs_draco_minus_header", {}).get(size, {})
        pt = "–" if p.get("pchip") is None else f"{p['pchip']:+.2f}% (÷{p['pchip_rate_ratio']:.0f})"
        lines.append(f"| {size} | {accs} | {at} | {bdt} | {pt} |")
    if summary.get("draco"):
        lines += ["", "Draco + plain PointNet (P=1024; plain, uncompressed: "
                  f"{100 * summary['plain_accuracy']:.1f}%):", "",
                  "| quantization bits q (S = 2^q) | bits/cloud | without Draco's fixed header | "
                  "accuracy | encode ms | decode ms |",
                  "|---:|---:|---:|---:|---:|---:|"]
        for s in summary["draco"]:
            lines.append(f"| {s['quantization_bits']} ({s['scale']}) | {s['bits_mean']:.0f} | "
                         f"{_fmt(s.get('bits_minus_overhead_mean'), '.0f')} | "
                         f"{100 * s['accuracy']:.1f}% | {s['encode_ms_mean']:.2f} | {s['decode_ms_mean']:.2f} |")
    return "\n".join(lines) + "\n"


def plot_rate_accuracy(summary: dict, path: str | Path, dpi: int = 110) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["rows"]
    fig, ax = plt.subplots(figsize=(10.6, 5.4))
    styles = {1024: dict(ls="-", marker="o", ms=5, alpha=1.0, lw=1.8),
              256: dict(ls="--", marker="s", ms=3.5, alpha=0.45, lw=1.1),
              64: dict(ls=":", marker="^", ms=3.5, alpha=0.45, lw=1.1)}
    for size in SIZES:
        for P, st in styles.items():
            sel = sorted((r for r in rows if r["size"] == size and r["points"] == P), key=lambda r: r["bits"])
            if not sel:
                continue
            ax.plot([r["bits"] for r in sel], [100 * r["accuracy"] for r in sel], color=COLORS[size],
                    label=f"{size}, P={P}" + (" (ours, real bits)" if P == 1024 else ""), **st)
    for size, pts in PUBLISHED.items():
        x, y = zip(*pts)
        ax.plot(x, y, ls=(0, (1, 2)), marker="D" if size == "full" else "v", mfc="none", ms=5,
                color=COLORS[size], alpha=0.8, lw=0.9, label=f"published {size} (estimated bits)")
    if summary.get("draco"):
        d = summary["draco"]
        ax.plot([s["bits_mean"] for s in d], [100 * s["accuracy"] for s in d], color="black",
                marker="x", lw=1.3, label="Draco + plain PointNet (P=1024)")
        if all(s.get("bits_minus_overhead_mean") for s in d):
            ax.plot([s["bits_minus_overhead_mean"] for s in d], [100 * s["accuracy"] for s in d],
                    color="black", marker="x", ms=4, lw=0.9, ls="--", alpha=0.45,
                    label="Draco minus its fixed header (~1.4 kbit)")
        for s in d:
            ax.annotate(f"q{s['quantization_bits']}", (s["bits_mean"], 100 * s["accuracy"]),
                        textcoords="offset points", xytext=(-4, -11), fontsize=6.5, color="0.3")
        if summary.get("plain_accuracy") is not None:
            ax.axhline(100 * summary["plain_accuracy"], color="0.5", lw=0.8, ls="-.",
                       label=f"plain PointNet, uncompressed ({100 * summary['plain_accuracy']:.1f}%)")
    ax.axhline(80, color="0.3", ls="--", lw=0.8)
    ax.text(1.02, 80, "80%", transform=ax.get_yaxis_transform(), va="center", fontsize=8, color="0.3")
    ax.set_xscale("log")
    ax.set_xlabel("bits per cloud (log scale)")
    ax.set_ylabel("top-1 accuracy, ModelNet40 test (%)")
    ax.set_title("Point-cloud classification: rate vs accuracy")
    ax.grid(True, which="major", alpha=0.3)
    ax.grid(True, which="minor", alpha=0.1)
    lo = max(0.0, min([r["accuracy"] * 100 for r in rows] + [45.0]) - 3)
    ax.set_ylim(lo, 92)
    below = [s for s in summary.get("draco") or [] if 100 * s["accuracy"] < lo]
    if below:  # keep the axis on the interesting range; say what is off it
        ax.text(0.99, 0.02, "off scale: " + ", ".join(
            f"Draco q{s['quantization_bits']} {100 * s['accuracy']:.1f}% at {s['bits_mean']:.0f} bits"
            for s in below), transform=ax.transAxes, ha="right", va="bottom", fontsize=7, color="0.3")
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.06, 1.0), framealpha=0.9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def load_scan_rows(results: str | Path, models: str | Path) -> list[dict]:
    """One row per evaluated model version: clean and scan accuracy at real bits, joined with the
    version's config. A result without its clean half takes it from ``eval/<model>.json``."""
    results, models = Path(results), Path(models)
    rows = []
    for p in sorted((results / "scans").glob("*.json")):
        e = _read(p)
        if not e or "scans" not in e:
            continue
        name, version = e["model"], int(e.get("version", 1))
        c = _read(models / name / str(version) / "config.json") or {}
        clean = e.get("clean") or (_read(results / "eval" / f"{name}.json") if version == 1 else None)
        t = c.get("training", {})
        rows.append({
            "model": name, "version": version, "size": c.get("size"), "points": c.get("points"),
            "lmbda": c.get("lmbda"), "scan_trained": "preprocess" in c,
            "bits_clean": clean["bits_mean"] if clean else None,
            "accuracy_clean": clean["accuracy"] if clean else None,
            "bits_scan": e["scans"]["bits_mean"], "accuracy_scan": e["scans"]["accuracy"],
            "refused_scan": e["scans"].get("refused", 0), "scan_seed": e["scans"].get("input"),
            "train_wall_s": t.get("wall_time_s"),
            "train_wall_with_warm_start_s": t.get("wall_time_with_warm_start_s"),
            "command": f"splitinfer eval pointcloud --model {name} --version {version} "
                       f"--data modelnet40_test.npz --scans 0" + ("" if e.get("clean") else " --scans-only"),
        })
    rows.sort(key=lambda r: (SIZES.index(r["size"]) if r["size"] in SIZES else 9, not r["scan_trained"],
                             r["bits_scan"]))
    return rows


def summarize_scans(rows: list[dict]) -> dict:
    """Best clean and scan accuracy per size and family, bits at 80% clean, full's best scan
    accuracy at 100 real bits or fewer."""
    out: dict = {"rows": rows, "best": {}, "bits_at_80_clean": {}, "full_scan_at_100_bits": {}}
    for size in SIZES:
        for trained in (False, True):
            sel = [r for r in rows if r["size"] == size and r["scan_trained"] == trained and r["points"] == 1024]
            if not sel:
                continue
            fam = "scan_trained" if trained else "clean_trained"
            clean = [r for r in sel if r["accuracy_clean"] is not None]
            out["best"].setdefault(size, {})[fam] = {
                "scan": max(r["accuracy_scan"] for r in sel),
                "clean": max((r["accuracy_clean"] for r in clean), default=None)}
            if clean:
                out["bits_at_80_clean"].setdefault(size, {})[fam] = interpolate_rate(
                    [r["bits_clean"] for r in clean], [r["accuracy_clean"] for r in clean], 0.80)
            if size == "full":
                low = [r["accuracy_scan"] for r in sel if r["bits_scan"] <= 100]
                out["full_scan_at_100_bits"][fam] = max(low) if low else None
    return out


def scans_table(summary: dict) -> str:
    lines = ["| model | version | trained on | bits (clean) | clean accuracy | bits (scans) | "
             "scan accuracy | train wall (own) |", "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in summary["rows"]:
        wall = "–" if r["train_wall_s"] is None else f"{r['train_wall_s'] / 60:.1f} min"
        if r.get("train_wall_with_warm_start_s"):
            wall += f" ({r['train_wall_with_warm_start_s'] / 60:.0f} with warm starts)"
        lines.append(f"| {r['model']} | {r['version']} | {'clean + scans' if r['scan_trained'] else 'clean'} | "
                     f"{_fmt(r['bits_clean'])} | {_fmt(None if r['accuracy_clean'] is None else 100 * r['accuracy_clean'])}"
                     f"{'' if r['accuracy_clean'] is None else '%'} | {r['bits_scan']:.1f} | "
                     f"{100 * r['accuracy_scan']:.1f}% | {wall} |")
    return "\n".join(lines) + "\n"


def plot_scans(summary: dict, path: str | Path, dpi: int = 110) -> Path:
    """Clean and scan accuracy against real bits for each size: clean-trained models (thin, pale)
    and scan-trained ones (bold); solid lines clean clouds, dashed lines scans."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10.6, 5.4))
    for size in SIZES:
        for trained in (False, True):
            sel = [r for r in summary["rows"] if r["size"] == size and r["scan_trained"] == trained
                   and r["points"] == 1024]
            if not sel:
                continue
            kw = dict(color=COLORS[size], lw=1.9 if trained else 0.9, alpha=1.0 if trained else 0.45)
            who = "scan-trained" if trained else "clean-trained"
            clean = sorted((r for r in sel if r["accuracy_clean"] is not None), key=lambda r: r["bits_clean"])
            if clean:
                ax.plot([r["bits_clean"] for r in clean], [100 * r["accuracy_clean"] for r in clean],
                        ls="-", marker="o", ms=4, label=f"{size}, {who}: clean", **kw)
            sc = sorted(sel, key=lambda r: r["bits_scan"])
            ax.plot([r["bits_scan"] for r in sc], [100 * r["accuracy_scan"] for r in sc], ls="--",
                    marker="s", ms=4, label=f"{size}, {who}: scans", **kw)
    ax.set_xscale("log")
    ax.set_xlabel("bits per cloud, real (log scale)")
    ax.set_ylabel("top-1 accuracy, ModelNet40 test (%)")
    ax.set_title("Clean clouds and simulated single-view scans (seed 0), P=1024")
    ax.grid(True, which="major", alpha=0.3)
    ax.set_ylim(0, 92)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.02, 1.0), framealpha=0.9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def make_all(results: str | Path = "results/pointcloud", models: str | Path = "models") -> dict:
    """Regenerate summary.json, table.md and rate_accuracy.png under ``results``."""
    results, models = Path(results), Path(models)
    rows = load_rows(results, models)
    draco = _read(results / "draco.json")
    plain = _read(models / "plain-pointnet-p1024" / "1" / "config.json").get("training", {})
    summary = summarize(rows, draco, plain)
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (results / "table.md").write_text(markdown_table(summary))
    plot_rate_accuracy(summary, results / "rate_accuracy.png")
    scan_rows = load_scan_rows(results, models)
    if scan_rows:
        scans = summarize_scans(scan_rows)
        (results / "scans_summary.json").write_text(json.dumps(scans, indent=1) + "\n")
        (results / "scans_table.md").write_text(scans_table(scans))
        plot_scans(scans, results / "rate_accuracy_scans.png")
    return summary
