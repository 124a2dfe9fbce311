"""The bandwidth-adaptive rate controller (edge_client/rate_control.py): its decisions on recorded
traces (replay is exact), on open-loop traces (what it learns from acks) and closed loop on a
simulated link whose rate drops and recovers."""
from __future__ import annotations

import heapq
import json
from pathlib import Path

import numpy as np
import pytest

from edge_client.rate_control import (Candidate, RateController, candidate_from_config, replay,
                                  request_wire_bytes, resolve_family, response_wire_bytes)

DATA = Path(__file__).resolve().parent / "data"
CANDS = [Candidate("low", accuracy=0.70, payload_bytes=30, encode_ms=2.0, bits=20),
         Candidate("mid", accuracy=0.82, payload_bytes=60, encode_ms=2.0, bits=250),
         Candidate("high", accuracy=0.88, payload_bytes=160, encode_ms=8.0, bits=1000)]
RESP = 200   # answer bytes on the wire


def simulate(ctrl, rate_mbit, interval_s: float, frames: int, server_ms: float = 1.0,
             fixed: str | None = None):
    """A sensor stream over a FIFO link of rate rate_mbit(t) (uplink; the answer adds RESP bytes
    at the same rate, as the controller assumes). Returns per-frame (t, model, latency_ms)."""
    by = {c.name: c for c in ctrl.candidates}
    link_free = 0.0
    acks: list = []
    out = []

    def deliver(upto):
        while acks and acks[0][0] <= upto:
            t, seq = heapq.heappop(acks)
            ctrl.on_ack(seq, t, server_ms, RESP)

    for k in range(frames):
        t = k * interval_s
        deliver(t)
        name = fixed or ctrl.choose(t).model
        c = by[name]
        ctrl.on_encoded(name, c.encode_ms)
        t_send = t + c.encode_ms / 1e3
        deliver(t_send)
        wire = c.request_bytes(ctrl.stream_id)
        ctrl.on_send(k, t_send, name, wire)
        start = max(t_send, link_free)
        link_free = start + (wire + RESP) * 8 / (rate_mbit(start) * 1e6)
        t_ack = link_free + server_ms / 1e3
        heapq.heappush(acks, (t_ack, k))
        out.append((t, name, (t_ack - t) * 1e3))
    deliver(float("inf"))
    return out


def drop(t):
    return 10.0 if t < 10 or t >= 20 else 0.05


def test_wire_bytes():
    # a 41-byte latent: its tag and length, gRPC prefix and HTTP/2 frame header, one TCP segment
    assert request_wire_bytes(41) == 41 + 2 + 14 + 66
    assert response_wire_bytes(150) == 150 + 14 + 66
    assert response_wire_bytes(3000) == 3000 + 14 + 3 * 66


def test_first_frame_is_the_smallest_then_the_best_on_a_fast_link():
    ctrl = RateController(CANDS, budget_ms=100)
    res = simulate(ctrl, lambda t: 10.0, 0.05, 40)
    assert res[0][1] == "low"
    assert all(m == "high" for _, m, _ in res[2:])
    assert all(lat <= 100 for _, _, lat in res)


def test_rate_drop_and_recovery_closed_loop():
    budget, interval = 150.0, 0.06
    # at 0.05 Mbit/s: high ~ (160+...+200) B ~ 70 ms per frame > 60 ms interval: its queue grows
    ad = RateController(CANDS, budget_ms=budget)
    res = simulate(ad, drop, interval, 500)
    fixed = simulate(RateController(CANDS, budget_ms=budget), drop, interval, 500, fixed="high")
    within_ad = np.mean([lat <= budget for _, _, lat in res])
    within_fixed = np.mean([lat <= budget for _, _, lat in fixed])
    assert within_ad >= 0.95, within_ad
    assert within_fixed < 0.80, within_fixed
    low_phase = [m for t, m, _ in res if 11 <= t < 20]
    by = {c.name: c for c in CANDS}
    # mostly smaller frames on the slow link (a "high" now and then while the queue is short)
    assert low_phase.count("high") < len(low_phase) * 0.5
    assert np.mean([by[m].payload_bytes for m in low_phase]) < 0.6 * by["high"].payload_bytes
    assert all(m == "high" for t, m, _ in res if 22 <= t)        # back to the best once it recovered
    # the accuracy it expected stays high where the link allows it
    acc = {c.name: c.accuracy for c in CANDS}
    assert np.mean([acc[m] for t, m, _ in res if t < 10]) > 0.87


def test_nothing_fits_picks_the_fastest():
    ctrl = RateController(CANDS, budget_ms=5)
    res = simulate(ctrl, lambda t: 0.02, 0.5, 20)
    assert all(m == "low" for _, m, _ in res)
    assert not ctrl.decisions[-1].feasible


def test_encode_time_matters_when_the_link_is_fast():
    # a slow device: the accurate model's encoder alone takes 120 ms > budget
    cands = [Candidate("small", 0.80, 40, encode_ms=5), Candidate("big", 0.89, 60, encode_ms=120)]
    ctrl = RateController(cands, budget_ms=100)
    res = simulate(ctrl, lambda t: 100.0, 0.2, 30)
    assert all(m == "small" for _, m, _ in res[1:])


def test_idle_and_busy_delivery_samples():
    ctrl = RateController(CANDS, budget_ms=100, alpha=1.0, alpha_up=1.0)  # no smoothing: the last sample
    # idle link: 1000 wire bytes answered after 101 ms, 1 ms of it on the server -> 0.1 ms/byte
    ctrl.on_send(1, 0.0, "low", 800)
    ctrl.on_ack(1, 0.101, 1.0, 200)
    assert ctrl.pace == pytest.approx(0.1)
    # busy link: frame 3 sent while 2 was in flight; it is delivered 50 ms after 2's ack
    ctrl.on_send(2, 1.0, "low", 300)
    ctrl.on_send(3, 1.001, "low", 300)
    ctrl.on_ack(2, 1.05, 1.0, 200)
    ctrl.on_ack(3, 1.10, 1.0, 200)
    assert ctrl.pace == pytest.approx(0.05 * 1e3 / 500)
    d = ctrl.choose(1.2)
    assert d.goodput_mbit == pytest.approx(8e-3 / ctrl.pace)


def test_backlog_raises_the_prediction():
    ctrl = RateController(CANDS, budget_ms=1000, alpha=1.0, alpha_up=1.0)
    ctrl.on_send(1, 0.0, "low", 800)
    ctrl.on_ack(1, 0.101, 1.0, 200)       # 0.1 ms per byte
    quiet = ctrl.choose(0.2).predicted_ms["high"]
    for k in range(2, 7):                   # five frames of 1000 bytes queued
        ctrl.on_send(k, 0.2, "low", 800)
    busy = ctrl.choose(0.2)
    assert busy.backlog_ms == pytest.approx(500, rel=0.01)
    assert busy.predicted_ms["high"] == pytest.approx(quiet + 500, rel=0.02)


def test_hysteresis_keeps_a_steady_choice():
    ctrl = RateController(CANDS, budget_ms=150)
    res = simulate(ctrl, lambda t: 0.05, 0.2, 200)      # a steady, slow link
    models = [m for _, m, _ in res[5:]]
    switches = sum(a != b for a, b in zip(models, models[1:]))
    assert switches <= 4, models


def test_replay_reproduces_decisions():
    ctrl = RateController(CANDS, budget_ms=150)
    simulate(ctrl, drop, 0.06, 400)
    again = replay(ctrl.trace, CANDS, 150)
    assert [d.model for d in again] == [d.model for d in ctrl.decisions]
    assert [d.predicted_ms for d in again] == [d.predicted_ms for d in ctrl.decisions]
    # different parameters, different decisions (the trace is an input, not an answer)
    strict = replay(ctrl.trace, CANDS, 40)
    assert [d.model for d in strict] != [d.model for d in ctrl.decisions]


RECORDED = DATA / "adaptive_trace.json.gz"


@pytest.mark.skipif(not RECORDED.exists(), reason="no recorded trace")
def test_recorded_benchmark_trace():
    """A trace recorded by `splitinfer bench bandwidth` on a real tbf link (10 -> 0.05 -> 10
    Mbit/s): replaying it gives the decisions the client made, and they follow the link."""
    import gzip
    rec = json.loads(gzip.decompress(RECORDED.read_bytes()))
    cands = [Candidate(**c) for c in rec["candidates"]]
    got = replay(rec["trace"], cands, rec["budget_ms"])
    assert [d.model for d in got] == [d["model"] for d in rec["decisions"]]
    by = {c.name: c for c in cands}
    best = max(cands, key=lambda c: c.accuracy).name
    phases = rec["phases_s"]        # [start of the slow phase, start of the recovery]
    t0 = rec["t0"]
    slow = [d for d in got if phases[0] + 1 <= d.t - t0 < phases[1]]
    fast = [d for d in got if d.t - t0 < phases[0] or d.t - t0 >= phases[1] + 2]
    assert np.mean([by[d.model].payload_bytes for d in slow]) < by[best].payload_bytes
    assert np.mean([d.model == best for d in fast]) > 0.8
    assert max(d.pace_ms_per_kb for d in slow if d.pace_ms_per_kb) > 10 * np.median(
        [d.pace_ms_per_kb for d in fast if d.pace_ms_per_kb])


def test_candidates_from_the_repository(tmp_path):
    from splitinfer.repository import ModelRepository
    repo = ModelRepository()
    configs = repo.list("pointcloud-classification")
    if not configs:
        pytest.skip("no shipped models")
    fam = resolve_family(repo, "all")
    assert {c.name for c in fam} == {c.name for c in configs if int(c.raw["points"]) == 1024
                                     and (c.raw.get("metrics") or {}).get("bits_mean") is not None}
    c = candidate_from_config(fam[0], encode_ms=3.0)
    bits = fam[0].raw["metrics"]["bits_mean"]
    assert c.payload_bytes == pytest.approx(max(1.0, bits / 8))       # a v2 frame: the latent alone
    assert 0 < c.accuracy < 1 and c.encode_ms == 3.0
    with pytest.raises(Exception):
        resolve_family(repo, "no-such-model")


def test_stream_cli_with_a_latency_budget(tmp_path):
    """`splitinfer stream --family micro --latency-budget MS`: every frame answered, each with a
    model of the family, the decisions written to the JSON and each one following its own
    predictions. How many frames meet the budget depends on the machine's load, so it is
    checked against the frames' latencies, not against a threshold (speed is the benchmark's)."""
    from service_utils import SAMPLE, start_server

    from edge_client.cli import main
    from splitinfer.repository import ModelRepository
    fam = [c.name for c in ModelRepository().list("pointcloud-classification") if c.raw["size"] == "micro"]
    if not fam:
        pytest.skip("no shipped micro model")
    srv = start_server(fam)
    try:
        out = tmp_path / "s.json"
        rc = main(["--server", srv.address, "--family", "micro", "--latency-budget", "100", "--limit", "24",
                   "--interval-ms", "5", "--quiet", "--json", str(out), str(SAMPLE)])
        assert rc == 0
        rec = json.loads(out.read_text())
        assert len(rec["frames"]) == 24 and all(f["error"] is None for f in rec["frames"])
        assert {f["model"] for f in rec["frames"]} <= set(fam)
        ad = rec["adaptive"]
        assert len(ad["decisions"]) == 24
        within = [f["latency_ms"] <= 100 for f in rec["frames"]]
        assert ad["within_budget"] == pytest.approx(sum(within) / len(within))
        for d in ad["decisions"]:
            preds = d["predicted_ms"]
            if d["pace_ms_per_kb"] is None:  # before the first answer: the smallest frames
                continue
            if d["feasible"]:  # a model predicted inside the margin (0.8 of the budget, less hysteresis)
                assert preds[d["model"]] <= 0.8 * 100 + 1e-3
            else:  # none fits: the fastest
                assert preds[d["model"]] == pytest.approx(min(preds.values()), abs=2e-3)
        assert rec["summary"]["latency_ms_p50"] > 0
        assert main(["--server", srv.address, "--latency-budget", "100", str(SAMPLE)]) == 2   # no family
    finally:
        srv.stop()
