#!/usr/bin/env python
"""Draw docs/img/pipeline.png: the split-inference pipeline at a glance
(:func:`splitinfer.plots.diagram.plot_pipeline`)."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.plots.diagram import plot_pipeline  # noqa: E402

print(plot_pipeline(ROOT / "docs" / "img" / "pipeline.png"))
