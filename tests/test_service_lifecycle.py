"""Server lifecycle on loopback: killed and restarted mid-stream (the client resumes, loses and
doubles nothing), graceful SIGTERM, server-side deadlines, dynamic batching with a queue delay."""
from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest
from service_utils import encoded, free_port, latents, metric, model_name, start_server

from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


@pytest.mark.parametrize("how", ["kill", "sigterm"])
def test_server_restarted_mid_stream_client_resumes_exactly_once(micro, how):
    from edge_client import EdgeClient
    n = 300
    payloads, expected, _ = latents(micro, 100)
    frames = [payloads[i % 100] for i in range(n)]
    port = free_port()
    servers = [start_server([micro], port=port)]
    seen: list = []
    restarted = threading.Event()

    def on_result(r):
        seen.append(r)
        if len(seen) == 100:  # mid-stream: take the server down, bring a new one up on the same port
            s = servers[0]
            if how == "kill":
                s.proc.kill()
            else:
                s.proc.send_signal(signal.SIGTERM)
            s.proc.wait(20)
            s.stop()
            servers.append(start_server([micro], port=port))
            restarted.set()

    try:
        with EdgeClient(f"127.0.0.1:{port}", micro, window=16, reconnect_timeout_s=60,
                        backoff_initial_s=0.05, backoff_max_s=0.5) as client:
            report = client.run(frames, on_result=on_result, payloads=True)
    finally:
        for s in servers:
            s.stop()
    assert restarted.is_set()
    s = report.summary()
    assert s["error"] is None, s
    assert s["lost"] == 0 and s["failed"] == 0 and s["acknowledged"] == n, s
    assert [r.seq for r in report.results] == list(range(n))       # each frame answered exactly once
    assert all(r.label == expected[r.seq % 100] for r in report.results)
    assert s["reconnects"] >= 1
    assert servers[0].proc.returncode == (0 if how == "sigterm" else -signal.SIGKILL)


def test_graceful_shutdown_finishes_inflight_and_refuses_new_calls(micro):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    # a long queue delay keeps a request in flight while SIGTERM arrives
    srv = start_server([micro], ["--max-queue-delay-ms", "1500", "--max-batch-size", "64", "--grace-s", "10"])
    payload = encoded(micro, 1)[0][0]
    try:
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb2_grpc.InferenceStub(ch)
            health = health_pb2_grpc.HealthStub(ch)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=20)
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            fut = stub.Classify.future(pb2.ClassifyRequest(model=micro, payload=payload), timeout=20)
            end = time.monotonic() + 20  # wait until the request is queued, waiting for its batch
            while metric(srv.metrics_port, "splitinfer_inflight_frames") < 1:
                assert time.monotonic() < end
                time.sleep(0.02)
            srv.proc.send_signal(signal.SIGTERM)
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            time.sleep(0.2)
            with pytest.raises(grpc.RpcError) as e:  # no new calls
                with grpc.insecure_channel(srv.address) as ch2:
                    pb2_grpc.InferenceStub(ch2).Classify(pb2.ClassifyRequest(model=micro, payload=payload),
                                                         timeout=3)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            r = fut.result(timeout=20)  # the in-flight call finished
            assert r.label == encoded(micro, 1)[1][0]
        assert srv.proc.wait(20) == 0
    finally:
        srv.stop()


@pytest.mark.parametrize("executor", ["inline", "thread"])
def test_dynamic_batching_and_server_side_deadlines(micro, executor):
    payloads, expected, _ = encoded(micro, 8)
    srv = start_server([micro], ["--max-queue-delay-ms", "400", "--max-batch-size", "8",
                                 "--batch-executor", executor])
    try:
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb2_grpc.InferenceStub(ch)
            stub.ListModels(pb2.ListModelsRequest(), timeout=10)
            # eight concurrent requests ride in one full batch, not each alone after 400 ms
            futs = [stub.Classify.future(pb2.ClassifyRequest(model=micro, payload=p), timeout=10) for p in payloads]
            rs = [f.result() for f in futs]
            assert [r.label for r in rs] == expected
            assert all(r.batch_size == 8 for r in rs)
            # a lone request waits for its batch; its deadline passes first: it is never run
            batches = metric(srv.metrics_port, "splitinfer_batch_size_count")
            with pytest.raises(grpc.RpcError) as e:
                stub.Classify(pb2.ClassifyRequest(model=micro, payload=payloads[0]), timeout=0.15)
            assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            time.sleep(0.5)
            assert metric(srv.metrics_port, "splitinfer_batch_size_count") == batches
            assert metric(srv.metrics_port, "splitinfer_errors_total", code="DEADLINE_EXCEEDED") == 1
            # without a deadline it waits the queue delay, then runs alone
            t0 = time.perf_counter()
            r = stub.Classify(pb2.ClassifyRequest(model=micro, payload=payloads[1]), timeout=10)
            assert r.batch_size == 1 and r.queue_ms >= 350 and r.label == expected[1]
    finally:
        assert srv.stop() == 0
