"""Figures (matplotlib, Agg): sweep curves, random-affine histograms, per-layer profile, video."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .figure import pyplot

__all__ = ["plot_sweeps", "plot_random_hist", "plot_profile", "plot_video"]

_DPI = 90


def _label(name: str, strides: dict[str, float] | None) -> str:
    return f"{name} (/{strides[name]:g})" if strides and name in strides else name


def plot_sweeps(sweeps: dict, layers: list[str], path: str | Path, title: str = "",
                strides: dict[str, float] | None = None) -> Path:
    """2x2 panels (translation, rotation, scale, shear): mean NRMSE over images of the warped
    prediction (solid) and of the zero-motion prediction (dotted, same colour)."""
    plt = pyplot()
    names = list(sweeps)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    xlabels = {"translation": "horizontal translation (px)", "rotation": "rotation (deg)",
               "scale": "horizontal scale", "shear": "horizontal shear (deg)"}
    for ax, sw in zip(axes.ravel(), names):
        d = sweeps[sw]
        x = np.asarray(d["values"])
        for i, n in enumerate(layers):
            c = f"C{i}"
            ax.plot(x, d["layers"][n]["mean"], "-o", ms=3, color=c, label=_label(n, strides))
            ax.plot(x, d["layers"][n]["zero_mean"], ":", color=c, lw=1)
        if sw == "scale":
            ax.set_xscale("log")
            ax.set_xticks([0.8, 0.9, 1.0, 1.1, 1.25])
            ax.set_xticklabels(["0.8", "0.9", "1", "1.1", "1.25"])
        ax.set_xlabel(xlabels.get(sw, sw))
        ax.set_ylabel("NRMSE")
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
    axes.ravel()[0].legend(fontsize=8, title="warped (solid), zero-motion (dotted)", title_fontsize=7)
    fig.suptitle(title or "NRMSE of the warped prediction")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return Path(path)


def plot_random_hist(random: dict, layers: list[str], path: str | Path, title: str = "",
                     strides: dict[str, float] | None = None) -> Path:
    """Histogram of the random-affine NRMSE per layer, means as vertical lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    vals = {n: np.asarray(random["layers"][n]["values"], dtype=float) for n in layers}
    vals = {n: v[np.isfinite(v)] for n, v in vals.items()}
    hi = max(float(np.percentile(v, 99.5)) for v in vals.values() if len(v))
    bins = np.linspace(0, hi * 1.05, 60)
    for i, (n, v) in enumerate(vals.items()):
        c = f"C{i}"
        ax.hist(v, bins=bins, histtype="step", lw=1.6, color=c, density=True,
                label=f"{_label(n, strides)}: mean {v.mean():.4f}")
        ax.axvline(v.mean(), color=c, ls="--", lw=1)
    ax.set_xlabel("NRMSE of the warped prediction")
    ax.set_ylabel("density")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    n = len(next(iter(vals.values())))
    ax.set_title(title or f"random 6-parameter affine motions ({n} draws)")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return Path(path)


def plot_profile(random: dict, layers: list[str], strides: dict[str, float], path: str | Path,
                 video: dict | None = None, highlight: list[str] | None = None, title: str = "") -> Path:
    """Mean NRMSE per layer, in network order: random affine (warped vs zero-motion) and, when
    given, the video (flow-warped vs zero-motion)."""
    plt = pyplot()
    rows = 2 if video else 1
    fig, axes = plt.subplots(rows, 1, figsize=(11, 3.6 * rows), squeeze=False)
    x = np.arange(len(layers))
    ax = axes[0, 0]
    w = [random["layers"][n]["stats"]["mean"] for n in layers]
    z = [random["layers"][n]["zero_stats"]["mean"] for n in layers]
    ax.plot(x, w, "-o", label="warped (same affine, stride-rescaled)")
    ax.plot(x, z, ":s", label="zero motion (reference as is)")
    ax.set_ylabel("mean NRMSE")
    ax.set_title("random affine motions")
    panels = [(ax, w)]
    if video:
        ax2 = axes[1, 0]
        vf = [video["layers"][n]["summary"]["flow"]["mean"] for n in layers]
        vz = [video["layers"][n]["summary"]["zero_flow_mask"]["mean"] for n in layers]
        va = [video["layers"][n]["summary"]["affine"]["mean"] for n in layers]
        ax2.plot(x, vf, "-o", label="dense flow / stride")
        ax2.plot(x, va, "-^", ms=4, alpha=0.7, label="global affine")
        ax2.plot(x, vz, ":s", label="zero motion")
        ax2.set_ylabel("mean NRMSE")
        ax2.set_title(f"video, frame t -> t+{video.get('gap', 1)}")
        panels.append((ax2, vf))
    for a, _ in panels:
        a.set_xticks(x)
        a.set_xticklabels([f"{n.replace('blocks.', 'b')}\n/{strides[n]:g}" for n in layers], fontsize=7)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
        a.set_ylim(bottom=0)
        for n in highlight or []:
            if n in layers:
                a.axvline(layers.index(n), color="grey", alpha=0.25, lw=6)
    fig.suptitle((title + " " if title else "") + "(bN = blocks.N, /stride; shaded: the summary layers)")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return Path(path)


def plot_video(videos: list[dict], layers: list[str], path: str | Path, title: str = "",
               strides: dict[str, float] | None = None) -> Path:
    """Per frame pair NRMSE of the flow-warped, affine-warped and zero-motion predictions; one
    column per layer, one row per frame gap."""
    plt = pyplot()
    cols = len(layers) + 1
    fig, axes = plt.subplots(len(videos), cols, figsize=(3.2 * cols, 2.8 * len(videos)), squeeze=False)
    for r, v in enumerate(videos):
        for c, n in enumerate(["input"] + layers):
            ax = axes[r, c]
            d = v["layers"][n]["per_pair"]
            t = np.arange(len(d["flow"]))
            ax.plot(t, d["zero_flow_mask"], color="0.5", lw=1.2, label="zero motion")
            ax.plot(t, d["affine"], color="C1", lw=1, label="global affine")
            ax.plot(t, d["flow"], color="C0", lw=1.4, label="dense flow")
            ax.set_title(f"{_label(n, strides) if n != 'input' else 'input frame'}, gap {v.get('gap', 1)}", fontsize=9)
            ax.set_xlabel("frame pair", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_ylim(bottom=0)
            if c == 0:
                ax.set_ylabel("NRMSE")
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.suptitle(title or "video: predicting frame t+gap's tensors from frame t's")
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return Path(path)
