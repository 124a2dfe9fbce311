"""The edge client's --lb: gRPC's round_robin and pick_first over a multi-address target of real
servers on loopback, and a stream that moves on when its server is killed."""
from __future__ import annotations

import subprocess
import sys

import pytest
from service_utils import ROOT, encoded, latents, metric, model_name, start_server

from edge_client.balancing import channel_options, target
from splitinfer.data import SAMPLE

pytestmark = pytest.mark.service  # real server processes on loopback


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


@pytest.fixture()
def two(micro):
    servers = [start_server([micro]) for _ in range(2)]
    yield servers
    for s in servers:
        s.stop()


def _counts(servers, micro):
    return [metric(s.metrics_port, "splitinfer_requests_total", model=micro) for s in servers]


def test_targets_and_policies():
    assert target("127.0.0.1:1,127.0.0.1:2") == "ipv4:127.0.0.1:1,127.0.0.1:2"
    assert target("[::1]:1, [::1]:2") == "ipv6:[::1]:1,[::1]:2"
    for as_is in ("host:50051", "dns:///svc.ns.svc.cluster.local:50051", "ipv4:10.0.0.1:1,10.0.0.2:1"):
        assert target(as_is) == as_is
    for bad in ("a.example:1,b.example:1", "127.0.0.1:1,[::1]:1", "127.0.0.1,127.0.0.2:1"):
        with pytest.raises(ValueError):
            target(bad)
    assert channel_options(None) == []
    assert '{"loadBalancingConfig": [{"round_robin": {}}]}' in dict(channel_options("round_robin")).values()
    with pytest.raises(ValueError):
        channel_options("least_request_typo")


@pytest.mark.parametrize("lb", ["round_robin", "pick_first"])
def test_calls_spread_or_stick(two, micro, lb):
    from edge_client import EdgeClient
    payloads, expected, _ = encoded(micro, 40)
    with EdgeClient(",".join(s.address for s in two), micro, lb=lb) as c:
        c.wait_ready(30)
        for p in payloads[:10]:  # until every address the policy uses is connected
            c.classify_payload(p)
        before = _counts(two, micro)
        labels = [c.classify_payload(p).label for p in payloads]
    assert labels == expected
    counts = [a - b for a, b in zip(_counts(two, micro), before)]
    assert sum(counts) == 40
    if lb == "round_robin":
        assert min(counts) >= 15, counts   # each call on the next address
    else:
        assert sorted(counts) == [0, 40], counts   # one connection


def test_a_stream_moves_to_the_other_address_when_its_server_dies(two, micro):
    from edge_client import EdgeClient
    payloads, expected, _ = latents(micro, 100)   # stream frames: the latents alone
    frames = [payloads[i % 100] for i in range(400)]
    killed = []

    def on_result(r):
        if len(killed) == 0 and r.seq == 100:
            victim = max(two, key=lambda s: metric(s.metrics_port, "splitinfer_requests_total", model=micro))
            victim.proc.kill()
            killed.append(victim)

    with EdgeClient(",".join(s.address for s in two), micro, lb="round_robin", window=8,
                    reconnect_timeout_s=30, backoff_initial_s=0.05, backoff_max_s=0.5) as c:
        report = c.run(frames, on_result=on_result, payloads=True)
    s = report.summary()
    assert killed and s["error"] is None and s["lost"] == 0 and s["acknowledged"] == 400, s
    assert [r.seq for r in report.results] == list(range(400))
    assert all(r.label == expected[r.seq % 100] for r in report.results)
    assert s["reconnects"] >= 1


def test_the_cli_refuses_a_list_of_names():
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "stream", "--server", "a.example:1,b.example:1",
                        "--model", model_name("micro"), "--lb", "round_robin",
                        str(SAMPLE)],
                       capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 2 and "error: --server" in r.stderr and "Traceback" not in r.stderr, r.stderr
