"""Shaped links: the namespace + veth + tbf set-up and tear-down (root only, skipped otherwise),
the tbf and relay rates (measured within 10% of the set rate), and the token bucket."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from splitinfer.bench.bandwidth.link import NetnsLink, Relay, TokenBucket, netns_available, tbf_burst_bytes
from splitinfer.bench.bandwidth.link.netns import list_namespaces, tbf_limit_bytes

ROOT_OK, WHY = netns_available()
needs_netns = pytest.mark.skipif(not ROOT_OK, reason=f"network namespaces unavailable: {WHY}")

# a TCP sink in one namespace, a timed sender in the other: prints the receiver's rate (bits/s)
SINK = """
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)
print("ready", flush=True)
c, _ = s.accept(); n = 0; t0 = None
while True:
    d = c.recv(65536)
    if not d: break
    if t0 is None: t0 = time.perf_counter(); first = len(d)
    n += len(d)
print(n, (n - first) * 8 / (time.perf_counter() - t0), flush=True)
"""
SEND = """
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
s.sendall(b"x" * int(sys.argv[3])); s.close()
"""


def test_tbf_burst_and_limit():
    assert tbf_burst_bytes(0.01e6) == 1600 and tbf_burst_bytes(1e6) == 1600
    assert tbf_burst_bytes(100e6) == 62500                      # 5 ms at 100 Mbit/s
    assert tbf_limit_bytes(0.01e6) == 256 * 1024 and tbf_limit_bytes(100e6) == 25_000_000


@needs_netns
def test_netns_link_up_shaped_and_torn_down():
    link = NetnsLink(rate_mbit=2.0)
    with link:
        assert link.exists() == {"client": True, "server": True}
        q = link.qdisc("client")
        assert q["kind"] == "tbf" and q["options"]["rate"] == 2_000_000 // 8
        assert link.qdisc("server")["kind"] == "tbf"        # shape="both" by default
        link.set_rate(0.5)
        assert link.qdisc("client")["options"]["rate"] == 500_000 // 8 and link.rate_mbit == 0.5
        link.set_rate(None)                                  # unshaped: the default qdisc again
        assert link.qdisc("client").get("kind") != "tbf"
    assert link.exists() == {"client": False, "server": False}
    assert not any(ns.startswith(f"si{link.tag}") for ns in list_namespaces())


@needs_netns
def test_netns_teardown_after_an_error():
    link = NetnsLink(rate_mbit=1.0, shape="uplink")
    with pytest.raises(RuntimeError, match="boom"):
        with link:
            assert link.exists()["server"]
            assert link.qdisc("client")["kind"] == "tbf" and link.qdisc("server").get("kind") != "tbf"
            raise RuntimeError("boom")
    assert link.exists() == {"client": False, "server": False}
    r = subprocess.run(["ip", "link", "show", link.dev["client"]], capture_output=True)
    assert r.returncode != 0     # the veth pair went with the namespaces


@needs_netns
def test_tbf_rate_measured_within_10_percent():
    rate = 4.0   # Mbit/s; 0.6 MB take ~1.2 s
    with NetnsLink(rate_mbit=rate, shape="both") as link:
        assert link.qdisc("server")["kind"] == "tbf"
        sink = subprocess.Popen(link.exec_prefix("server") + [sys.executable, "-c", SINK, link.server_ip, "5201"],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert sink.stdout.readline().strip() == "ready"
            subprocess.run(link.exec_prefix("client") + [sys.executable, "-c", SEND, link.server_ip, "5201",
                                                         str(600_000)], check=True, timeout=60)
            n, bps = sink.stdout.readline().split()
        finally:
            sink.kill()
            sink.wait()
        assert int(n) == 600_000
        # tbf counts L2 frames: TCP payload is ~1448/1514 of the rate
        payload_rate = rate * 1e6 * 1448 / 1514
        assert abs(float(bps) - payload_rate) / payload_rate < 0.10, (bps, payload_rate)
        c = link.counters()["client"]
        assert c["bytes"] > 600_000 and c["drops"] == 0


def _sink_server():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    out = {}

    def run():
        c, _ = srv.accept()
        n, t0, first = 0, None, 0
        while True:
            d = c.recv(65536)
            if not d:
                break
            if t0 is None:
                t0, first = time.perf_counter(), len(d)
            n += len(d)
            out["t1"] = time.perf_counter()
        out["n"], out["rate"] = n, (n - first) * 8 / (out["t1"] - t0)
        c.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv, t, out


@pytest.mark.parametrize("rate", [0.5, 4.0])
def test_relay_rate_measured_within_10_percent(rate):
    srv, t, out = _sink_server()
    size = int(rate * 1e6 / 8 * 1.0)       # ~1 s of data
    with Relay(srv.getsockname(), rate_mbit=rate) as relay:
        c = socket.create_connection(("127.0.0.1", relay.port))
        c.sendall(b"y" * size)
        c.close()
        t.join(10)
    srv.close()
    assert out["n"] == size
    assert abs(out["rate"] - rate * 1e6) / (rate * 1e6) < 0.10, out
    assert relay.bytes["up"] == size


def test_relay_serializes_small_frames_and_changes_rate():
    """burst 0: even after an idle period, n bytes take n / rate (a real link), and set_rate acts."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    with Relay(srv.getsockname(), rate_mbit=0.1) as relay:
        c = socket.create_connection(("127.0.0.1", relay.port))
        s, _ = srv.accept()
        times = []
        for rate in (0.1, 1.0):
            relay.set_rate(rate)
            time.sleep(0.3)                   # idle: a tbf bucket would have refilled
            t0 = time.perf_counter()
            c.sendall(b"z" * 5000)
            got = 0
            while got < 5000:
                got += len(s.recv(4096))
            times.append(time.perf_counter() - t0)
        c.close()
        s.close()
    srv.close()
    # lower bounds only (the shaper cannot deliver sooner; a loaded machine only adds time)
    assert times[0] >= 0.7 * 5000 * 8 / 0.1e6                       # 400 ms at 0.1 Mbit/s
    assert times[1] < times[0] / 2                                  # 40 ms at 1 Mbit/s


def test_token_bucket_debt_and_cap():
    b = TokenBucket(8e3, burst=100)     # 1000 bytes/s
    assert b.reserve(100) == 0.0        # the full bucket
    w = b.reserve(50)
    assert w == pytest.approx(0.05, abs=0.01)
    b.set_rate(16e3)
    assert b.rate_bps == 16e3 and b.burst == 100


def test_token_bucket_late_caller_loses_no_link_time():
    """Backlogged bytes are scheduled from the link's clock: waking 50 ms late shortens the next wait."""
    b = TokenBucket(8e3, burst=0)       # 1000 bytes/s, no bucket
    arrival = time.monotonic()
    assert b.reserve(100, arrival) == pytest.approx(0.1, abs=0.02)
    time.sleep(0.15)                    # the first 100 bytes were due after 0.1 s
    assert b.reserve(100, arrival) < 0.055      # due at arrival + 0.2 s, whenever we ask
    assert b.reserve(100) > 0.09                # bytes arriving now queue behind those
