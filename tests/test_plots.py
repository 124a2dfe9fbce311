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


def _points(scale):
    return [{"streams": n, "clouds_per_s": scale * n, "p50_ms": 1.0 + n, "p99_ms": 2.0 + n}
            for n in (1, 8, 64)]


def test_bench_figures_are_drawn_from_their_results(tmp_path):
    from splitinfer.plots.bench import plot_server_bench, plot_soak
    server = {"configs": {"echo": {"points": _points(3)}, "no_batching": {"points": _points(1)},
                          "batching_w2": {"points": _points(2)}},
              "target": None, "echo": {"classify_p50_ms": 0.5, "echo_p50_ms": 0.2, "ratio": 2.5},
              "fraction_of_echo_at_max_streams": {"no_batching": 0.3, "batching_w2": 0.6},
              "model": "micro", "machine": {"cpus": 2}, "settings": {"window": 1},
              "streams": [1, 8, 64]}
    soak = {"series": [{"t_s": t, "answered_per_s": 100.0, "p50_ms": 2.0, "p99_ms": 5.0,
                        "rss_mb": 200.0 + t} for t in range(5)],
            "config": {"streams": 4, "duration_s": 5.0, "model": "micro", "window": 8}}
    for path in (plot_server_bench(server, str(tmp_path / "server.png")),
                 plot_soak(soak, tmp_path / "soak.png")):
        with Image.open(path) as im:
            assert len(set(im.convert("L").getdata())) > 16


def test_results_doc_is_generated_from_the_committed_results():
    """docs/results.md is what the generator makes of results/*, every section filled."""
    from pathlib import Path

    from splitinfer.plots.results_doc import results_markdown
    root = Path(__file__).resolve().parents[1]
    text = results_markdown(root / "results")
    assert text == (root / "docs" / "results.md").read_text()
    assert "not generated yet" not in text and text.count("<!--") == 1   # only the generated-by note
    for section in ("## Serving", "### Bytes per frame", "## Single-view scans", "## Under load"):
        assert section in text
