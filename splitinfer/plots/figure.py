"""What every figure shares: matplotlib on the Agg backend, and saving a titled PNG."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, title: str, subtitles: Mapping[str, str] | None, path: str | Path,
                dpi: int) -> Path:
    """Title (with an optional line of subtitles), tight layout, write the PNG, close the figure."""
    import matplotlib.pyplot as plt
    sub = "" if not subtitles else "; ".join(f"{k}: {v}" for k, v in subtitles.items())
    fig.suptitle(title + (f"\n{sub}" if sub else ""), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
