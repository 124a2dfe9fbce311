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
