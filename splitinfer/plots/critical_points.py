"""Pictures of what the edge encoder keeps (numpy + matplotlib; the torch parts live in
:mod:`splitinfer.training.reconstruction`).

- critical points: the argmax point of every channel of g_a before max pooling, i.e. the points
  that alone determine y (at most C of them: 1024 / 32 / 16 for full / lite / micro);
- reconstructions: the point cloud a visualisation-only network rebuilds from y_hat.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .figure import pyplot, save_figure

GREY = "0.72"
SIZE_COLORS = {"full": "#d62728", "lite": "#ff7f0e", "micro": "#2ca02c"}


def _axes3d(fig, rows, cols, k):
    ax = fig.add_subplot(rows, cols, k, projection="3d")
    ax.set_axis_off()
    ax.set_box_aspect((1, 1, 1), zoom=1.45)
    ax.view_init(elev=22, azim=-60)
    lim = 0.75
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_zlim(-lim, lim)
    return ax


def _xyz(p: np.ndarray):
    """ModelNet40 (PointNet's release) is z-up, like matplotlib's 3D axes."""
    return p[:, 0], p[:, 1], p[:, 2]


def unique_critical(indices: np.ndarray) -> np.ndarray:
    """The critical point set: distinct argmax indices over channels."""
    return np.unique(np.asarray(indices).ravel())


def plot_critical_points(clouds: Sequence[np.ndarray], labels: Sequence[str],
                         critical: Mapping[str, Sequence[np.ndarray]], path: str | Path,
                         subtitles: Mapping[str, str] | None = None, dpi: int = 80) -> Path:
    """Grid: one row per cloud, one column per model size; the cloud in grey, its critical points
    (``critical[size][row]``: per-channel argmax indices) highlighted."""
    plt = pyplot()

    sizes = list(critical)
    rows, cols = len(clouds), len(sizes)
    fig = plt.figure(figsize=(2.7 * cols, 2.5 * rows + 0.5))
    for i, (cloud, label) in enumerate(zip(clouds, labels)):
        for j, size in enumerate(sizes):
            ax = _axes3d(fig, rows, cols, i * cols + j + 1)
            idx = unique_critical(critical[size][i])
            channels = np.asarray(critical[size][i]).size
            ax.scatter(*_xyz(cloud), s=1.2, c=GREY, alpha=0.5, linewidths=0, depthshade=False)
            ax.scatter(*_xyz(cloud[idx]), s=16 if len(idx) < 64 else 5, c=SIZE_COLORS.get(size, "C3"),
                       linewidths=0, depthshade=False)
            ax.set_title(f"{label}: {size}\n{len(idx)} critical points ({channels} channels)", fontsize=8)
    return save_figure(fig, "Critical points (argmax point of each encoder channel) on ModelNet40 test clouds",
                 subtitles, path, dpi)


def plot_reconstructions(clouds: Sequence[np.ndarray], labels: Sequence[str],
                         recons: Mapping[str, Sequence[np.ndarray]], path: str | Path,
                         chamfer: Mapping[str, Sequence[float]] | None = None,
                         subtitles: Mapping[str, str] | None = None, dpi: int = 80) -> Path:
    """Grid: one row per cloud; the input, then each size's reconstruction from y_hat."""
    plt = pyplot()

    sizes = list(recons)
    rows, cols = len(clouds), len(sizes) + 1
    fig = plt.figure(figsize=(2.5 * cols, 2.5 * rows + 0.5))
    for i, (cloud, label) in enumerate(zip(clouds, labels)):
        ax = _axes3d(fig, rows, cols, i * cols + 1)
        ax.scatter(*_xyz(cloud), s=1.5, c="0.35", linewidths=0, depthshade=False)
        ax.set_title(f"{label}: input ({len(cloud)} points)", fontsize=8)
        for j, size in enumerate(sizes):
            ax = _axes3d(fig, rows, cols, i * cols + j + 2)
            r = np.asarray(recons[size][i])
            ax.scatter(*_xyz(r), s=1.5, c=SIZE_COLORS.get(size, "C0"), linewidths=0, depthshade=False)
            cd = f"\nChamfer {chamfer[size][i]:.4f}" if chamfer else ""
            ax.set_title(f"{size} from y_hat{cd}", fontsize=8)
    return save_figure(fig, "Reconstruction from the transmitted y_hat (visualisation only)", subtitles, path, dpi)
