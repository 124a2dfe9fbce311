"""Stream behaviour under hostile or unlucky clients, against a real server process: a client
that does not read its answers stops being read; SIGTERM with frames unanswered ends the stream
with UNAVAILABLE; an oversized frame fails alone; answers are counted when sent; frames refused
as "queue full" are resent after a backoff. The raw-stub tests speak v1 (deprecated, served beside
v2 over the same stream machinery), so they run unchanged against older servers."""
from __future__ import annotations

import queue
import signal
import threading
import time

import grpc
import pytest
from service_utils import encoded, latents, metric, model_name, start_server

from splitinfer.proto import inference_pb2 as v1
from splitinfer.proto import inference_pb2_grpc as v1_grpc

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


def _wait_stable(read, timeout=10.0, still=1.0):
    """Poll ``read()`` until it stops changing for ``still`` seconds; its last value."""
    last, since, end = read(), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.2)
        v = read()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= still:
            break
    return last


def test_unread_answers_stop_the_server_reading(micro):
    """A client that sends 3000 frames and reads no answer: the server reads at most its
    read-ahead plus what the client's transport window holds of answers, then waits."""
    n = 3000
    payload = encoded(micro, 1)[0][0]
    srv = start_server([micro])
    try:
        with grpc.insecure_channel(srv.address, options=[("grpc.http2.bdp_probe", 0)]) as ch:
            call = v1_grpc.InferenceStub(ch).ClassifyStream(
                iter([v1.ClassifyRequest(model=micro, payload=payload, stream_id="unread", seq=i) for i in range(n)]),
                timeout=60)
            read = _wait_stable(lambda: metric(srv.metrics_port, "splitinfer_requests_total", model=micro))
            # answers are ~150 bytes (v1: names and top-5): a 64 KiB window holds some 450
            assert read < n / 2, f"the server read {read:.0f} of {n} frames nobody answered"
            got = {r.seq for r in call}                     # now read: every frame is answered
        assert got == set(range(n))
    finally:
        srv.stop()


def test_sigterm_with_frames_unanswered_ends_the_stream_unavailable(micro):
    n = 20000
    payload = encoded(micro, 1)[0][0]
    srv = start_server([micro])
    answered = 0
    try:
        with grpc.insecure_channel(srv.address) as ch:
            call = v1_grpc.InferenceStub(ch).ClassifyStream(
                iter([v1.ClassifyRequest(model=micro, payload=payload, stream_id="term", seq=i) for i in range(n)]),
                timeout=60)
            with pytest.raises(grpc.RpcError) as e:
                for _ in call:
                    answered += 1
                    if answered == 200:
                        srv.proc.send_signal(signal.SIGTERM)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
        assert answered < n
        assert srv.proc.wait(30) == 0
    finally:
        srv.stop()


def test_oversized_frame_gets_a_frame_error_and_the_stream_goes_on(micro):
    payloads, expected, _ = encoded(micro, 10)
    srv = start_server([micro], ["--max-message-bytes", str(MAX_PAYLOAD)])
    try:
        reqs = [v1.ClassifyRequest(model=micro, payload=p, stream_id="big", seq=i) for i, p in enumerate(payloads)]
        reqs[3] = v1.ClassifyRequest(model=micro, payload=b"\x01" * (MAX_PAYLOAD + 64 * 1024), stream_id="big", seq=3)
        with grpc.insecure_channel(srv.address) as ch:
            got = {r.seq: r for r in v1_grpc.InferenceStub(ch).ClassifyStream(iter(reqs), timeout=30)}
    finally:
        srv.stop()
    assert sorted(got) == list(range(10))
    assert got[3].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert all(got[i].label == expected[i] and not got[i].HasField("error") for i in range(10) if i != 3)


def test_answers_are_counted_only_when_sent(micro):
    """A client that reads 10 answers and goes away: the metrics count at most what the server
    could write to it (its transport window), not every frame it read."""
    n = 3000
    payload = encoded(micro, 1)[0][0]
    srv = start_server([micro])
    try:
        with grpc.insecure_channel(srv.address, options=[("grpc.http2.bdp_probe", 0)]) as ch:
            call = v1_grpc.InferenceStub(ch).ClassifyStream(
                iter([v1.ClassifyRequest(model=micro, payload=payload, stream_id="gone", seq=i) for i in range(n)]),
                timeout=60)
            for _, _r in zip(range(10), call):
                pass
            _wait_stable(lambda: metric(srv.metrics_port, "splitinfer_requests_total", model=micro))
            call.cancel()
        answered = _wait_stable(lambda: metric(srv.metrics_port, "splitinfer_responses_total",
                                               method="ClassifyStream", code="OK"))
        assert answered < n / 2, f"{answered:.0f} answers counted, the client took 10"
    finally:
        srv.stop()


def test_queue_full_refusals_are_resent_after_a_backoff(micro):
    """A server whose queue holds two frames (waiting 20 ms for a batch) refuses most of a window of 32 (UNAVAILABLE, queue
    full): each refused frame waits a jittered, growing backoff before it is sent again."""
    from edge_client import EdgeClient
    frames, expected, _ = latents(micro, 60)
    srv = start_server([micro], ["--max-queue-size", "2", "--max-queue-delay-ms", "20"])
    try:
        with EdgeClient(srv.address, micro, window=32, backoff_initial_s=0.02, backoff_max_s=0.2,
                        frame_retries=100) as client:
            report = client.run(frames, payloads=True)
    finally:
        srv.stop()
    s = report.summary()
    assert s["failed"] == 0 and s["lost"] == 0 and [r.label for r in report.results] == expected, s
    resent = [r for r in report.results if r.sends > 1]
    assert resent, "the queue never filled"
    for r in resent:   # at least half the initial backoff per resend (the jitter's lower bound)
        assert r.backoff_ms >= (r.sends - 1) * 0.5 * 20, (r.seq, r.sends, r.backoff_ms)
