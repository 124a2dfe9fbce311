"""Figures drawn by splitinfer.plots from the bundled data."""
import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402

from splitinfer.plots.diagram import plot_pipeline  # noqa: E402


def test_pipeline_diagram_is_drawn_at_its_size(tmp_path):
    path = plot_pipeline(tmp_path / "pipeline.png")
    with Image.open(path) as im:
        assert im.size == (1265, 352)            # 11.5 x 3.2 inches at 110 dpi
        assert len(set(im.convert("L").getdata())) > 16   # drawn, not blank
