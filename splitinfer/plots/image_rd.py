"""Figures of the image-compression results (matplotlib, Agg), from the summary of
:mod:`splitinfer.plots.image_results`: rate-distortion against JPEG / WebP, and the rate saving
of adaptive encoding distributions per quality."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figure import pyplot, save_figure

COLORS = {"static": "#1f77b4", "adaptive": "#d62728", "jpeg": "#7f7f7f", "webp": "#2ca02c",
          "ideal": "#9467bd", "nonlearned": "#ff7f0e"}


def plot_rd(summary: dict, path: Path, dpi: int = 110) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.6))
    for ax, (q, label) in zip(axes, (("psnr", "PSNR (dB)"), ("ms_ssim_db", "MS-SSIM (dB, -10 log10(1 - MS-SSIM))"))):
        for name, b in summary["baselines"].items():
            pts = [p for p in b["points"] if p[q] is not None]
            ax.plot([p["bpp"] for p in pts], [p[q] for p in pts], color=COLORS.get(name, "k"),
                    marker=".", lw=1.1, label=f"{name.upper()} (Pillow)")
        for fam, f in summary["learned"].items():
            pts = f["points"]
            ax.plot([p["bpp"] for p in pts], [p[q] for p in pts], color=COLORS["static"], marker="o",
                    lw=1.8, label=f"{fam}, static tables")
            ad = [p for p in pts if p.get("bpp_adaptive")]
            if ad:
                ax.plot([p["bpp_adaptive"] for p in ad], [p[q] for p in ad], color=COLORS["adaptive"],
                        marker="s", ms=4, ls="--", lw=1.4, label=f"{fam}, adaptive (incl. side info)")
            for p in pts:
                if p[q] is not None:
                    ax.annotate(f"q{p['quality']}", (p["bpp"], p[q]), textcoords="offset points",
                                xytext=(4, -10), fontsize=7, color="0.3")
        # zoom on the learned points: up to 2.5 x their highest rate (at least 0.6 bpp)
        learned = [p["bpp"] for f in summary["learned"].values() for p in f["points"]]
        xmax = min(2.2, max([0.6] + [2.5 * x for x in learned]))
        ax.set_xlim(0, xmax)
        shown = [p[q] for b in summary["baselines"].values() for p in b["points"]
                 if p[q] is not None and p["bpp"] <= xmax]
        shown += [p[q] for f in summary["learned"].values() for p in f["points"] if p[q] is not None]
        if shown:
            pad = 0.05 * (max(shown) - min(shown) or 1.0)
            ax.set_ylim(min(shown) - pad, max(shown) + pad)
        ax.set_xlabel("bits per pixel (real file / container payload bytes)")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7.5, loc="lower right")
    n = {p["count"] for f in summary["learned"].values() for p in f["points"]} | \
        {b["count"] for b in summary["baselines"].values()}
    return save_figure(fig, f"Kodak rate-distortion ({'/'.join(map(str, sorted(n)))} images, mean over images)",
                 None, path, dpi)


def plot_savings(summary: dict, path: Path, dpi: int = 110) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8.0, 5.0))
    published = summary["published"]
    groups = []
    for fam, f in summary["learned"].items():
        ad = f["adaptive"]
        groups += [(f"{r['model'].replace('image-', '')}\n{r['static_bpp']:.3f} bpp", r) for r in ad["rows"]]
        if ad["rows"]:
            groups.append((f"{fam.replace('image-', '')}\nmean", ad["mean"]))
    kinds = ("adaptive", "ideal", "nonlearned")
    width = 0.26
    x = np.arange(len(groups))
    for j, k in enumerate(kinds):
        vals = [g[1].get(f"saving_{k}") for g in groups]
        xs = [xi + (j - 1) * width for xi, v in zip(x, vals) if v is not None]
        vs = [v for v in vals if v is not None]
        if vs:
            ax.bar(xs, vs, width, color=COLORS[k], label={"adaptive": "adaptive (learned, ours)",
                                                                 "ideal": "ideal (exact per-image p, free)",
                                                                 "nonlearned": "non-learned (quantized histograms)"}[k])
            for bx, v in zip(xs, vs):
                ax.text(bx, v, f"{v:.2f}", ha="center", va="top", fontsize=6.5, color="0.15")
    ax.axhline(published["bd_rate_adaptive_mean"], color=COLORS["adaptive"], ls="--", lw=1,
               label=f"published adaptive, mean BD-rate ({published['bd_rate_adaptive_mean']}%)")
    ax.axhline(published["bd_rate_ideal_mean"], color=COLORS["ideal"], ls=":", lw=1.2,
               label=f"published ideal, mean BD-rate ({published['bd_rate_ideal_mean']}%)")
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([g[0] for g in groups], fontsize=8)
    ax.set_ylabel("rate change vs static tables (%)")
    lo = min([published["bd_rate_ideal_mean"]] + [g[1].get(f"saving_{k}") or 0 for g in groups for k in kinds])
    ax.set_ylim(1.2 * lo - 0.3, 0.5)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    if not groups:
        ax.text(0.5, 0.5, "no adaptive results yet", transform=ax.transAxes, ha="center")
    return save_figure(fig, "Adaptive encoding distributions: Kodak rate saving at equal distortion", None, path, dpi)
