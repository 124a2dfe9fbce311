"""`splitinfer bench bandwidth`: its pieces (crossovers, statistics, the tbf drain, the plan, the
adaptive experiment's settings) and a tiny end-to-end run over the loopback relay (and, as root,
over real namespaces)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from service_utils import input_model_repo

from splitinfer.bench.bandwidth import run_bench
from splitinfer.bench.bandwidth.link import netns_available
from splitinfer.bench.bandwidth.link.drain import Drain
from splitinfer.bench.bandwidth.pipelines import plan_pipelines
from splitinfer.bench.bandwidth.rate_experiment import DEFAULT_SCHEDULE, auto_stream_settings
from splitinfer.bench.bandwidth.report import report
from splitinfer.bench.bandwidth.sweep import cell_stats, crossings


def test_crossings_log_log():
    bws = [0.01, 0.1, 1, 10]
    a = [100, 100, 100, 100]          # flat (edge-only)
    b = [10000, 1000, 100, 10]        # 1/bandwidth (cloud-only)
    assert crossings(bws, a, b) == [1]
    b2 = [10000, 1000, 200, 20]
    (c,) = crossings(bws, a, b2)
    assert c == pytest.approx(2.0)   # 200 -> 20 ms crosses 100 ms at log10 = 0.301
    assert crossings(bws, a, [50] * 4) == []
    assert crossings(bws, [None, 1, 2, 3], [2, 2, 2, 2]) == [1]   # missing points are skipped


def test_cell_stats_scale_edge_compute_only():
    frames = [{"edge_ms": 10.0, "net_ms": 100.0, "label": 1, "truth": 1},
              {"edge_ms": 10.0, "net_ms": 110.0, "label": 2, "truth": 1},
              {"edge_ms": 10.0, "net_ms": 120.0, "label": None, "truth": 1}]
    s1, s8 = cell_stats(frames, 1), cell_stats(frames, 8)
    assert s1["p50_ms"] == pytest.approx(115) and s8["p50_ms"] == pytest.approx(185)
    assert s1["accuracy"] == 0.5 and s1["errors"] == 1 and s1["frames"] == 3
    assert cell_stats(frames, 1, rtt_ms=20)["p50_ms"] == pytest.approx(135)
    edge = [{"edge_ms": 4.0, "net_ms": 0.0, "label": 0, "truth": 0}]
    assert cell_stats(edge, 8, rtt_ms=20)["p50_ms"] == 32     # no round trip for edge-only


@pytest.mark.parametrize("burst", [1600, 1601, 3028, 3100, 62500])
def test_drain_filler_is_exactly_the_bucket(burst):
    d = Drain(burst, 1e6, "127.0.0.1")
    try:
        sizes = [len(x) + d.L2_HEADERS for x in d.datagrams]
        assert sum(sizes) == burst and max(sizes) <= 1514 and min(sizes) > d.L2_HEADERS
        assert d.idle_s() == pytest.approx(burst * 8 / 1e6 + 0.002)
    finally:
        d.close()


def test_auto_stream_settings_separate_the_rate_points(tmp_path):
    from edge_client.rate_control import resolve_family
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(input_model_repo(tmp_path / "m"))
    try:
        configs = resolve_family(repo, "all")
    except ValueError:
        pytest.skip("no shipped models")
    s = auto_stream_settings(configs, DEFAULT_SCHEDULE)
    assert s["low_mbit"] == 0.05 and s["budget_ms"] >= 2.5 * s["interval_ms"]
    u = s["utilisation_at_low_rate"]
    assert u["lowest_rate_point"] <= 1.0 <= u["highest_rate_point"]


def test_plan_pipelines(tmp_path):
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(input_model_repo(tmp_path / "m"))
    plan = plan_pipelines(repo, "plain-pointnet-p1024", qbits=(4, 11))
    ids = [p["id"] for p in plan]
    assert "cloud-raw" in ids and "cloud-draco-q4" in ids and "cloud-draco-q11" in ids
    sizes = {c.raw["size"] for c in repo.list("pointcloud-classification")}
    for s in sizes:
        assert f"edge-{s}" in ids and f"split-{s}-low" in ids
    for p in plan:
        if p["id"].startswith("split-") and p["id"].endswith("-high"):
            low = next(q for q in plan if q["id"] == p["id"].replace("high", "low"))
            assert p["bits_config"] > low["bits_config"]


def _check(result, out: Path):
    ids = [p["id"] for p in result["pipelines"]]
    for key in result["slowdowns"]:
        for pid in ids:
            assert all(result["p50"][key][pid].get(str(b)) for b in result["bandwidths"]), (key, pid)
    slow, fast = (result["p50"]["K=1"]["cloud-raw"][str(b)] for b in (result["bandwidths"][0], result["bandwidths"][-1]))
    assert slow > fast                        # 12 kB take longer on the slower link
    for pid in ids:                           # K scales the edge part only
        assert result["p50"]["K=8"][pid][str(result["bandwidths"][0])] >= result["p50"]["K=1"][pid][str(result["bandwidths"][0])]
    assert json.loads(out.read_text())["benchmark"] == "bandwidth"
    png = out.with_suffix(".png")
    assert png.exists() and png.stat().st_size < 300_000


def test_tiny_run_over_the_relay(tmp_path):
    pytest.importorskip("DracoPy")
    models = input_model_repo(tmp_path / "models")
    out = tmp_path / "bw.json"
    r = run_bench("short", link_kind="relay", models_dir=str(models), limit=8, bandwidths=(0.3, 30.0),
                  qbits=(4,), sizes=("micro",), cell_seconds=0.0, min_frames=2, max_frames=2,
                  family="micro", schedule=((5.0, 1.0), (0.05, 1.5), (5.0, 1.0)), json_out=str(out),
                  progress=False)
    assert r["link"]["kind"] == "relay" and "relay" in r["link"]["label"]
    _check(r, out)
    ad = r["adaptive"]
    for name in ("adaptive", "fixed"):
        s = ad["summary"][name]
        assert s["lost"] == 0 and s["failed"] == 0 and s["frames"] == s["scheduled"] > 10
    assert Path(r["adaptive_plot"]).stat().st_size < 300_000
    trace = json.loads(Path(ad["trace_file"]).read_text())
    from edge_client.rate_control import Candidate, replay
    got = replay(trace["trace"], [Candidate(**c) for c in trace["candidates"]], trace["budget_ms"])
    assert [d.model for d in got] == [d["model"] for d in trace["decisions"]]
    text = report(r)
    assert "crossovers" in text and "adaptive experiment" in text


@pytest.mark.skipif(not netns_available()[0], reason=f"network namespaces unavailable: {netns_available()[1]}")
def test_tiny_run_over_network_namespaces(tmp_path):
    from splitinfer.bench.bandwidth.link.netns import list_namespaces
    mine = lambda: {n for n in list_namespaces() if n.startswith(f"si{os.getpid()}x")}  # noqa: E731
    before = mine()   # only this process's links: other runs may share the machine
    models = input_model_repo(tmp_path / "models")
    out = tmp_path / "bw.json"
    r = run_bench("short", link_kind="netns", models_dir=str(models), limit=6, bandwidths=(0.2, 50.0),
                  qbits=(), sizes=("micro",), cell_seconds=0.0, min_frames=2, max_frames=2,
                  adaptive=False, json_out=str(out), progress=False)
    assert r["link"]["kind"] == "netns" and "tbf" in r["link"]["label"]
    _check(r, out)
    cell = next(c for c in r["cells"] if c["pipeline"] == "cloud-raw" and c["bandwidth_mbit"] == 0.2)
    assert cell["wire_bytes_per_frame"]["up"] > 12_288     # tbf counted the frame and its headers
    split = next(c for c in r["cells"] if c["pipeline"] == "split-micro-low" and c["bandwidth_mbit"] == 0.2)
    wire = split["wire_bytes_per_frame"]
    # a v2 frame: the latent and ~110 bytes of framing up (plus an ACK), a compact answer down
    assert split["payload_bytes_mean"] < wire["up"] < split["payload_bytes_mean"] + 300
    assert wire["down"] is not None and 0 < wire["down"] < 400
    # 12.3 kB at 0.2 Mbit/s: ~0.5 s of serialization
    assert cell["stats"]["K=1"]["p50_ms"] > 0.9 * 12_288 * 8 / 0.2e6 * 1e3
    assert mine() == before                                  # everything was removed
