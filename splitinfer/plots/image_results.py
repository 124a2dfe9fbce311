"""Image-compression results from ``results/image/*.json`` (torch-free): summary and tables.

Inputs (every *.json of the folder; the kind is read from the file, names do not matter):
- ``splitinfer eval image`` outputs (``"kind": "image-codec-eval"``), one per learned model /
  quality, e.g. results/image/image-factorized-q3_kodak.json;
- ``splitinfer baseline image`` outputs (``"kind": "image-baseline"``): jpeg_kodak.json, webp_kodak.json.

Outputs (:func:`make_all`):
- summary.json: RD points of every curve; BD-rates (PSNR, and MS-SSIM in dB) of the learned codec
  (static and adaptive) against JPEG and WebP, and of adaptive / ideal / non-learned against
  static; the adaptive table per quality (static, adaptive, ideal, non-learned bpp; savings in %;
  gap captured; side information bits per image) with means;
- rd_kodak.png, adaptive_savings.png (:mod:`splitinfer.plots.image_rd`);
- table.md: the markdown tables.

Savings per quality are ``100 * (bpp_x / bpp_static - 1)`` on the mean bpp over images (the
distortion is identical: the same y_hat is decoded); BD-rates use PCHIP (and cubic) fits of
log(bpp) against PSNR over the shared PSNR range (:mod:`splitinfer.metrics.bd`).
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np

from ..metrics import NoOverlapError, bd_rate, pareto_front

# Ulhaq & Bajić, ICIP 2024 (Kodak, factorized prior (N, M) = (128, 192); qualities 1 / 4 / 8 of the paper)
PUBLISHED = {
    "bd_rate_adaptive_mean": -6.95, "bd_rate_ideal_mean": -8.33, "gap_captured": 0.84,
    "per_quality": [
        {"quality": "paper q1", "static_bpp": 0.122, "adaptive_bpp": 0.113, "adaptive": -7.66,
         "ideal": -9.45, "nonlearned": -6.79},
        {"quality": "paper q4", "static_bpp": 0.440, "adaptive_bpp": 0.411, "adaptive": -6.57,
         "ideal": -7.90},
        {"quality": "paper q8", "static_bpp": 1.830, "adaptive_bpp": 1.705, "adaptive": -6.88,
         "ideal": -8.14},
    ],
    "side_bits_per_image": [160, 640],
}
MIN_OVERLAP_DB = 0.1  # BD-rates over less than 0.1 dB of shared quality are not reported

def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _db(ms_ssim: float | None) -> float | None:
    if ms_ssim is None or not math.isfinite(ms_ssim) or ms_ssim >= 1:
        return None
    return -10.0 * math.log10(1.0 - ms_ssim)


def family(model: str) -> str:
    """image-factorized-q3 -> image-factorized."""
    return re.sub(r"-q\d+$", "", model)


def load(results: Path) -> tuple[list[dict], dict[str, dict]]:
    evals, baselines = [], {}
    for p in sorted(results.glob("*.json")):
        r = _read(p)
        if not isinstance(r, dict):
            continue
        if r.get("kind") == "image-codec-eval":
            evals.append(r)
        elif r.get("kind") == "image-baseline":
            baselines[r["codec"]] = r
    return evals, baselines


def _point(r: dict) -> dict:
    a = r.get("analysis") or {}
    bpp = a.get("bpp_mean") or {}
    p = {"model": r["model"], "quality": r.get("quality"), "lmbda": r.get("lmbda"),
         "count": r["count"], "bpp": r["bpp_mean"], "bpp_container": r["bpp_container_mean"],
         "psnr": r["psnr_mean"], "ms_ssim": r["ms_ssim_mean"], "ms_ssim_db": _db(r["ms_ssim_mean"]),
         "encode_ms": r["static"]["encode_ms_median"], "decode_ms": r["static"]["decode_ms_median"],
         "roundtrip_exact": r.get("roundtrip_exact_all")}
    if r.get("adaptive_evaluated"):
        ad = r["adaptive"]
        p.update(bpp_adaptive=ad["bpp"], bpp_adaptive_container=ad["bpp_container"],
                 side_bits=ad.get("side_bits"), encode_ms_adaptive=ad["encode_ms_median"],
                 decode_ms_adaptive=ad["decode_ms_median"])
    for k in ("ideal", "nonlearned"):
        if k in bpp:
            p[f"bpp_{k}"] = bpp[k]
    return p


def _bd(anchor: tuple, test: tuple) -> dict:
    """BD-rate (%) of test vs anchor, both (rates, qualities); PCHIP and cubic."""
    (ra, qa), (rb, qb) = anchor, test
    keep_a = [i for i, (r, q) in enumerate(zip(ra, qa)) if r and q is not None and math.isfinite(q)]
    keep_b = [i for i, (r, q) in enumerate(zip(rb, qb)) if r and q is not None and math.isfinite(q)]
    ra, qa = [ra[i] for i in keep_a], [qa[i] for i in keep_a]
    rb, qb = [rb[i] for i in keep_b], [qb[i] for i in keep_b]
    out: dict = {}
    try:
        fa, fb = pareto_front(ra, qa), pareto_front(rb, qb)
    except ValueError as err:
        return {"pchip": None, "cubic": None, "error": str(err)}
    lo, hi = max(fa[1].min(), fb[1].min()), min(fa[1].max(), fb[1].max())
    out["quality_overlap"] = [round(float(lo), 3), round(float(hi), 3)] if hi > lo else None
    out["points"] = {"anchor": len(fa[0]), "test": len(fb[0])}
    for method in ("pchip", "cubic"):
        try:
            out[method] = round(bd_rate(ra, qa, rb, qb, method, min_overlap=MIN_OVERLAP_DB), 3)
        except (NoOverlapError, ValueError) as err:
            out[method] = None
            out["error"] = str(err)
    return out


def _curve(points: list[dict], rate: str, quality: str) -> tuple[list, list]:
    sel = [p for p in points if p.get(rate) and p.get(quality) is not None]
    return [p[rate] for p in sel], [p[quality] for p in sel]


def _baseline_curve(b: dict, quality: str) -> tuple[list, list]:
    key = {"psnr": "psnr_mean", "ms_ssim_db": None}[quality]
    if key:
        return [p["bpp_mean"] for p in b["points"]], [p[key] for p in b["points"]]
    return [p["bpp_mean"] for p in b["points"]], [_db(p["ms_ssim_mean"]) for p in b["points"]]


def adaptive_table(points: list[dict], evals: dict[str, dict]) -> dict:
    """Per quality: static / adaptive / ideal / non-learned bpp, savings (%), gap, side bits."""
    rows = []
    for p in points:
        r = evals[p["model"]]
        a = r.get("analysis") or {}
        bpp = dict(a.get("bpp_mean") or {})
        if not bpp and r.get("adaptive_evaluated"):  # no analyze(): real container rates only
            bpp = {"static": r["static"]["bpp"], "adaptive": r["adaptive"]["bpp"]}
        if "adaptive" not in bpp:
            continue
        s = bpp["static"]
        row = {"model": p["model"], "quality": p["quality"], "psnr": p["psnr"],
               "static_bpp": s, "adaptive_bpp": bpp.get("adaptive"), "ideal_bpp": bpp.get("ideal"),
               "nonlearned_bpp": bpp.get("nonlearned"),
               "adaptive_real_bpp": p.get("bpp_adaptive"), "static_real_bpp": p["bpp"]}
        for k in ("adaptive", "ideal", "nonlearned"):
            row[f"saving_{k}"] = None if bpp.get(k) is None else 100.0 * (bpp[k] / s - 1.0)
        row["gap_captured"] = (None if bpp.get("ideal") is None or bpp["ideal"] == s
                               else (s - bpp["adaptive"]) / (s - bpp["ideal"]))
        row["side_bits"] = a.get("side_bits_mean", p.get("side_bits"))
        row["nonlearned_side_bits"] = a.get("nonlearned_side_bits_mean")
        row["saving_real"] = (None if p.get("bpp_adaptive") is None
                              else 100.0 * (p["bpp_adaptive"] / p["bpp"] - 1.0))
        rows.append(row)
    mean = {}
    for k in ("static_bpp", "adaptive_bpp", "ideal_bpp", "nonlearned_bpp", "saving_adaptive",
              "saving_ideal", "saving_nonlearned", "saving_real", "side_bits", "nonlearned_side_bits"):
        v = [r[k] for r in rows if r.get(k) is not None]
        mean[k] = float(np.mean(v)) if len(v) == len(rows) and v else None
    if mean.get("saving_ideal"):
        mean["gap_captured"] = mean["saving_adaptive"] / mean["saving_ideal"]
    # BD-rates against the static curve (same PSNR per quality, so these mix the per-quality savings)
    bd = {}
    if len(rows) >= 2:
        ps = [r["psnr"] for r in rows]
        for k in ("adaptive", "ideal", "nonlearned"):
            if all(r[f"{k}_bpp"] for r in rows):
                bd[k] = _bd(([r["static_bpp"] for r in rows], ps), ([r[f"{k}_bpp"] for r in rows], ps))
    return {"rows": rows, "mean": mean, "bd_rate_vs_static": bd}


def summarize(evals: list[dict], baselines: dict[str, dict]) -> dict:
    fams: dict[str, list[dict]] = {}
    by_model = {}
    for r in evals:
        by_model[r["model"]] = r
        fams.setdefault(family(r["model"]), []).append(_point(r))
    out: dict = {"data": sorted({r["data"] for r in evals} | {b["data"] for b in baselines.values()}),
                 "learned": {}, "baselines": {}, "published": PUBLISHED}
    for name, b in baselines.items():
        out["baselines"][name] = {
            "settings": b.get("settings"), "count": b["count"],
            "points": [{"quality": p["quality"], "bpp": p["bpp_mean"], "psnr": p["psnr_mean"],
                        "ms_ssim": p["ms_ssim_mean"], "ms_ssim_db": _db(p["ms_ssim_mean"]),
                        "encode_ms": p["encode_ms_median"], "decode_ms": p["decode_ms_median"]}
                       for p in b["points"]]}
    if "jpeg" in baselines and "webp" in baselines:  # context for the anchors themselves
        out["baselines_bd_rate"] = {f"webp_vs_jpeg_{q}": _bd(_baseline_curve(baselines["jpeg"], q),
                                                            _baseline_curve(baselines["webp"], q))
                                    for q in ("psnr", "ms_ssim_db")}
    for fam, pts in sorted(fams.items()):
        pts.sort(key=lambda p: p["bpp"])
        f: dict = {"points": pts, "bd_rate": {}}
        for curve, rate in (("static", "bpp"), ("adaptive", "bpp_adaptive")):
            for qname in ("psnr", "ms_ssim_db"):
                test = _curve(pts, rate, qname)
                if len(test[0]) < 2:
                    continue
                for bname, b in baselines.items():
                    f["bd_rate"][f"{curve}_vs_{bname}_{qname}"] = _bd(_baseline_curve(b, qname), test)
        f["adaptive"] = adaptive_table(pts, by_model)
        out["learned"][fam] = f
    return out


def _f(v, spec=".3f", none="–"):
    return none if v is None else format(v, spec)


def markdown(summary: dict) -> str:
    out = []
    for fam, f in summary["learned"].items():
        out += [f"### {fam}: rate-distortion (real bytes, mean over {f['points'][0]['count']} images)", "",
                "| model | λ | bpp | bpp (container) | PSNR dB | MS-SSIM | adaptive bpp | "
                "encode ms | decode ms | round trip |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for p in f["points"]:
            out.append(f"| {p['model']} | {_f(p['lmbda'], 'g')} | {p['bpp']:.4f} | "
                       f"{p['bpp_container']:.4f} | {p['psnr']:.2f} | {_f(p['ms_ssim'], '.4f')} | "
                       f"{_f(p.get('bpp_adaptive'), '.4f')} | {_f(p['encode_ms'], '.0f')}"
                       + (f" / {p['encode_ms_adaptive']:.0f}" if p.get("encode_ms_adaptive") else "")
                       + f" | {_f(p['decode_ms'], '.0f')}"
                       + (f" / {p['decode_ms_adaptive']:.0f}" if p.get("decode_ms_adaptive") else "")
                       + f" | {'exact' if p['roundtrip_exact'] else 'MISMATCH'} |")
        if f["bd_rate"]:
            out += ["", "| BD-rate (PCHIP; cubic) | vs JPEG | vs WebP |", "|---|---:|---:|"]
            for curve in ("static", "adaptive"):
                for q, label in (("psnr", "PSNR"), ("ms_ssim_db", "MS-SSIM dB")):
                    cells = []
                    for b in ("jpeg", "webp"):
                        d = f["bd_rate"].get(f"{curve}_vs_{b}_{q}")
                        cells.append("–" if not d else f"{_f(d.get('pchip'), '+.1f')}% ({_f(d.get('cubic'), '+.1f')}%)")
                    if any(c != "–" for c in cells):
                        out.append(f"| {curve}, {label} | {cells[0]} | {cells[1]} |")
        ad = f["adaptive"]
        if ad["rows"]:
            out += ["", f"### {fam}: adaptive encoding distributions (rate saving vs static)", "",
                    "| model | static bpp | adaptive bpp | ideal bpp | non-learned bpp | adaptive | "
                    "ideal | non-learned | gap captured | side bits/image |",
                    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
            for r in ad["rows"] + [{"model": "**mean**", **ad["mean"]}]:
                out.append(
                    f"| {r['model']} | {_f(r.get('static_bpp'), '.4f')} | {_f(r.get('adaptive_bpp'), '.4f')} | "
                    f"{_f(r.get('ideal_bpp'), '.4f')} | {_f(r.get('nonlearned_bpp'), '.4f')} | "
                    f"{_f(r.get('saving_adaptive'), '+.2f')}% | {_f(r.get('saving_ideal'), '+.2f')}% | "
                    f"{_f(r.get('saving_nonlearned'), '+.2f')}% | {_f(r.get('gap_captured'), '.2f')} | "
                    f"{_f(r.get('side_bits'), '.0f')} |")
            bd = ad["bd_rate_vs_static"]
            if bd:
                out.append("\nBD-rate vs static (PCHIP): " + ", ".join(
                    f"{k} {_f(v.get('pchip'), '+.2f')}%" for k, v in bd.items())
                    + f". Published: adaptive {PUBLISHED['bd_rate_adaptive_mean']}%, ideal "
                      f"{PUBLISHED['bd_rate_ideal_mean']}% (gap captured {PUBLISHED['gap_captured']}).")
        out.append("")
    for k, d in summary.get("baselines_bd_rate", {}).items():
        out.append(f"BD-rate {k.replace('_', ' ')} (PCHIP; cubic): {_f(d.get('pchip'), '+.1f')}% "
                   f"({_f(d.get('cubic'), '+.1f')}%)")
    if summary.get("baselines_bd_rate"):
        out.append("")
    for name, b in summary["baselines"].items():
        out += [f"### {name.upper()} ({b['settings'].get('library', 'Pillow') if b.get('settings') else ''}"
                f", {b['count']} images)", "",
                "| quality | bpp | PSNR dB | MS-SSIM | encode ms | decode ms |",
                "|---:|---:|---:|---:|---:|---:|"]
        for p in b["points"]:
            out.append(f"| {p['quality']} | {p['bpp']:.4f} | {p['psnr']:.2f} | {_f(p['ms_ssim'], '.4f')} | "
                       f"{_f(p['encode_ms'], '.1f')} | {_f(p['decode_ms'], '.1f')} |")
        out.append("")
    return "\n".join(out)


def make_all(results: str | Path) -> dict:
    """Read the results folder; write summary.json, table.md and the two figures into it."""
    from .image_rd import plot_rd, plot_savings
    results = Path(results)
    evals, baselines = load(results)
    s = summarize(evals, baselines)
    results.mkdir(parents=True, exist_ok=True)
    (results / "summary.json").write_text(json.dumps(s, indent=1) + "\n")
    (results / "table.md").write_text(markdown(s) + "\n")
    plot_rd(s, results / "rd_kodak.png")
    plot_savings(s, results / "adaptive_savings.png")
    return s
