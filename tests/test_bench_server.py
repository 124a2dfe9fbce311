"""`splitinfer bench server` end to end on tiny settings: every configuration is measured beside
the bare echo, each point carries its fraction of the echo, --workers and --target work. The
figures themselves are the benchmark's business (results/server/), not asserted here."""
from __future__ import annotations

import json

import pytest
from service_utils import model_name, start_server

pytestmark = pytest.mark.service  # real server processes on loopback


@pytest.mark.slow
def test_bench_server_measures_against_the_echo(tmp_path):
    from splitinfer.bench.server import report, run_bench
    micro = model_name("micro")
    kw = dict(streams=(1, 4), duration_s=0.4, warmup_s=0.1, repeats=1, echo_requests=100, procs=1)
    r = run_bench(micro, workers=(1, 2), json_out=str(tmp_path / "server.json"), **kw)
    assert set(r["configs"]) == {"batching", "batching_w2", "no_batching", "echo"}
    for key, c in r["configs"].items():
        for p in c["points"]:
            assert p["answered"] > 0 and p["errors"] == 0, (key, p)
            assert p["fraction_of_echo"] == pytest.approx(p["clouds_per_s"] / r["configs"]["echo"]["points"][
                [q["streams"] for q in c["points"]].index(p["streams"])]["clouds_per_s"])
    assert r["configs"]["batching_w2"]["server_args"][-2:] == ["--workers", "2"]
    assert len(r["workers_ratios"]["batching_w2"]) == 2 and r["echo"]["ratio"] > 0
    assert json.loads((tmp_path / "server.json").read_text())["fraction_of_echo_at_max_streams"]
    assert (tmp_path / "server.png").is_file()
    assert "of echo" in report(r)

    with start_server([micro]) as s:  # a deployed endpoint: measured as it is, beside the echo
        t = run_bench(micro, target=s.address, **kw)
    assert set(t["configs"]) == {"target", "echo"} and t["target"] == {"target": s.address}
    assert all(p["answered"] > 0 and p["errors"] == 0 for p in t["configs"]["target"]["points"])
    assert "target = 127.0.0.1" in report(t)


def test_profile_categories_split_the_event_loop_thread_per_frame():
    from splitinfer.bench.server import profile_categories
    loop = "run (asyncio/runners.py:118);BaseEventLoop._run_once (asyncio/base_events.py:1922)"
    raw = "\n".join([
        f"{loop};Handle._run (asyncio/events.py:80);reader (cloud_server/server.py:1);"
        "PointCloudModel.decode_latent (splitinfer/pointcloud/runtime.py:83) 40",
        f"{loop};Handle._run (asyncio/events.py:80);DynamicBatcher._flush (cloud_server/batcher.py:1);"
        "Session.run (onnxruntime/x.py:406) 20",
        f"{loop};Handle._run (asyncio/events.py:80) 30",
        f"{loop};EpollSelector.select (selectors.py:468) 2",
        f"{loop};Handle._run (asyncio/events.py:80);frame (cloud_server/server.py:540) 8",
        "Thread._bootstrap (threading.py:1002);Thread.run (threading.py:982) 5",
        ""])
    us = profile_categories(raw, frames=100, rate=200)   # one sample: 5 ms over 100 frames = 50 us
    assert us["range decoding (codec)"] == pytest.approx(2000)
    assert us["ONNX classifier"] == pytest.approx(1000)
    assert us["grpc.aio (Cython: read, write, (de)serialize)"] == pytest.approx(1500)
    assert us["event-loop poll"] == pytest.approx(100)
    assert us["server Python (stream path, batcher, metrics, ledger)"] == pytest.approx(400)
    assert us["other threads"] == pytest.approx(250)


@pytest.mark.slow
def test_bench_server_profiles_the_server_with_py_spy(tmp_path):
    import shutil
    import sys
    from pathlib import Path

    from splitinfer.bench.server import report, run_bench
    if not (shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists()):
        pytest.skip("py-spy is not installed (the `profile` extra)")
    r = run_bench(model_name("micro"), streams=(4,), duration_s=0.5, warmup_s=0.1, repeats=1, echo_requests=50,
                  procs=1, workers=(1,), profile=str(tmp_path / "stacks.txt"))
    pr = r["profile"]
    assert pr["clouds_per_s"] > 0 and (tmp_path / "stacks.txt").read_text().strip()
    assert pr["event_loop_us_per_frame"] > 0 and pr["us_per_frame"]["range decoding (codec)"] > 0
    assert "event-loop thread" in report(r)
