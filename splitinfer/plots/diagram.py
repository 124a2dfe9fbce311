"""The split-inference pipeline at a glance (docs/img/pipeline.png): a sample cloud, the edge
encoder and range coder, the gRPC stream, the cloud decoder and classifier."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import SAMPLE
from .figure import pyplot


def plot_pipeline(path: str | Path, sample: str | Path = SAMPLE) -> Path:
    """Draw the pipeline diagram with the first cloud of ``sample``; returns the PNG path."""
    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    plt = pyplot()
    with np.load(sample) as f:
        cloud = f["points"][0]

    fig = plt.figure(figsize=(11.5, 3.2), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 11.5)
    ax.set_ylim(0, 3.2)
    ax.axis("off")
    pc = fig.add_axes([0.005, 0.18, 0.14, 0.64], projection="3d")
    pc.scatter(cloud[:, 0], cloud[:, 2], cloud[:, 1], s=0.6, c=cloud[:, 1], cmap="viridis")
    pc.set_axis_off()
    pc.view_init(20, -60)
    ax.text(0.85, 0.25, "point cloud\n1024 x 3 float32\n= 98,304 bits", ha="center", fontsize=8)

    boxes = [
        (1.7, "edge: ONNX encoder\npointwise convs, max pool,\ngain, round -> y_hat", "#d8ecff"),
        (3.95, "range coder\n(constriction, learned\nfactorized CDF tables)", "#d8ecff"),
        (6.2, "gRPC  ClassifyStream\n~4-10 bytes payload\n+ container header", "#fff2cc"),
        (8.45, "cloud: decode y_hat,\nONNX classifier\n(dynamic batching)", "#e2f5dc"),
    ]
    for x, text, color in boxes:
        ax.add_patch(FancyBboxPatch((x, 1.0), 1.75, 1.3, boxstyle="round,pad=0.05", fc=color, ec="#555"))
        ax.text(x + 0.875, 1.65, text, ha="center", va="center", fontsize=8.5)
    for x0, x1 in [(1.45, 1.68), (3.5, 3.93), (5.75, 6.18), (8.0, 8.43)]:
        ax.add_patch(FancyArrowPatch((x0, 1.65), (x1, 1.65), arrowstyle="-|>", mutation_scale=14))
    ax.add_patch(FancyArrowPatch((10.25, 1.65), (10.45, 1.65), arrowstyle="-|>", mutation_scale=14))
    ax.text(10.5, 1.65, "airplane", ha="left", va="center", fontsize=8.5, weight="bold")
    ax.text(3.0, 2.75, "device (no torch: onnxruntime + numpy + constriction)", ha="center", fontsize=9, color="#1f4e79")
    ax.text(9.3, 2.75, "server", ha="center", fontsize=9, color="#2e6b1f")
    ax.text(7.1, 0.65, "tens of bits per cloud instead of ~98k", ha="center", fontsize=8, style="italic")
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path
