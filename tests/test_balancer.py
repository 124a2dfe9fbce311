"""Replicas behind a real HAProxy on loopback, configured by the shipped docker/haproxy.cfg:
the gRPC health check keeps exactly the SERVING replicas in rotation, and a replica killed with
SIGKILL under 16 streams loses and doubles no frame."""
from __future__ import annotations

import shutil
import threading
import time

import grpc
import pytest
from service_utils import latents, model_name, start_server

from splitinfer.bench.balancer import Balancer

pytestmark = [pytest.mark.service, pytest.mark.skipif(
    shutil.which("haproxy") is None and shutil.which("haproxy", path="/usr/sbin") is None,
    reason="haproxy is not installed (apt-get install haproxy; scripts/setup.sh dev installs it)")]


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


def test_the_health_check_follows_the_grpc_health_service():
    """A replica is UP while its health service says SERVING, DOWN once it says NOT_SERVING
    (the process still answers), UP again when it serves again."""
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    status = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(status, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    status.set("", health_pb2.HealthCheckResponse.SERVING)
    try:
        with Balancer([f"127.0.0.1:{port}"]) as lb:
            assert lb.wait(timeout_s=20) == {"replica0": "UP"}
            status.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
            lb.wait(up=0, timeout_s=20)
            status.set("", health_pb2.HealthCheckResponse.SERVING)
            lb.wait(up=1, timeout_s=20)
    finally:
        server.stop(0)


def test_a_replica_killed_mid_run_loses_and_doubles_nothing(micro):
    """Three replicas behind HAProxy, 16 streams x 500 frames; one replica gets SIGKILL when a
    quarter of the frames are answered. Every frame is answered exactly once, with the label a
    single server gives it."""
    from edge_client import EdgeClient
    streams, frames_per_stream = 16, 500
    payloads, _, _ = latents(micro, 120)   # stream frames: the latents alone
    replicas = [start_server([micro]) for _ in range(3)]
    try:
        # the reference: one plain run of every payload against one server, no balancer
        with EdgeClient(replicas[0].address, micro, window=16) as c:
            ref = c.run(payloads, payloads=True)
        assert ref.summary()["acknowledged"] == len(payloads)
        reference = [r.label for r in ref.results]

        with Balancer([r.address for r in replicas]) as lb:
            lb.wait(timeout_s=30)
            answered = [0]
            lock = threading.Lock()
            killed = threading.Event()
            reports: dict[int, object] = {}
            errors: list[BaseException] = []

            def on_result(_r):
                with lock:
                    answered[0] += 1
                    due = answered[0] == streams * frames_per_stream // 4
                if due:
                    replicas[1].proc.kill()
                    killed.set()

            def run(k):
                frames = [payloads[(k * 7 + i) % len(payloads)] for i in range(frames_per_stream)]
                try:
                    with EdgeClient(lb.address, micro, window=8, reconnect_timeout_s=60,
                                    backoff_initial_s=0.05, backoff_max_s=0.5) as c:
                        reports[k] = c.run(frames, on_result=on_result, payloads=True)
                except BaseException as e:  # noqa: BLE001 - reported below
                    errors.append(e)

            threads = [threading.Thread(target=run, args=(k,)) for k in range(streams)]
            t0 = time.monotonic()
            for t in threads:
                t.start()
            for t in threads:
                t.join(240)
            elapsed = time.monotonic() - t0
            assert not errors, errors
            assert killed.is_set()
            assert replicas[1].proc.wait(10) < 0
            status = lb.wait(up=2, timeout_s=20)  # the health check takes the dead one out
            assert status["replica1"].startswith("DOWN"), status
        reconnects = 0
        for k in range(streams):
            s = reports[k].summary()
            assert s["error"] is None and s["lost"] == 0 and s["failed"] == 0, (k, s)
            assert s["acknowledged"] == frames_per_stream, (k, s)
            results = reports[k].results
            assert [r.seq for r in results] == list(range(frames_per_stream)), k  # once each, in order
            assert [r.label for r in results] == [reference[(k * 7 + i) % len(payloads)]
                                                  for i in range(frames_per_stream)], k
            reconnects += s["reconnects"]
        assert reconnects >= 1  # the streams on the killed replica moved to the others
        print(f"16 x 500 frames through HAProxy, one of 3 replicas killed: {elapsed:.1f} s, "
              f"{reconnects} reconnects")
    finally:
        for r in replicas:
            r.stop()
