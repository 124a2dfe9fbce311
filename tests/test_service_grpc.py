"""The cloud server as a real process on loopback (torch blocked): unary, streaming, health,
reflection, metrics, idempotency, every INVALID_ARGUMENT/NOT_FOUND/RESOURCE_EXHAUSTED path,
and 32 concurrent streams of 100 frames each answered exactly once."""
from __future__ import annotations

import random
import threading
import uuid

import grpc
import numpy as np
import pytest
from service_utils import encoded, latents, metric, model_name, start_server, torch_blocker

from splitinfer.data import SAMPLE
from splitinfer.proto import inference_pb2 as pb2

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


@pytest.fixture(scope="module")
def server(tmp_path_factory, micro):
    blocker = torch_blocker(tmp_path_factory.mktemp("notorch"))
    names = [micro]
    try:
        names.append(model_name("lite"))
    except pytest.skip.Exception:
        pass
    srv = start_server(names, ["--max-message-bytes", str(MAX_PAYLOAD)], blocker=blocker)
    yield srv
    assert srv.stop() == 0, srv.log()


def _code(call, *args, **kw) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as e:
        call(*args, **kw)
    return e.value.code(), e.value.details()


def test_server_runs_without_torch(server):
    assert server.proc.poll() is None
    # the server was started with `import torch` made to fail: it serves all the same


def test_unary_classify_matches_local_pipeline(stub, micro):
    payloads, expected, truth = encoded(micro, 8)
    for p, want in zip(payloads, expected):
        r = stub.Classify(pb2.ClassifyRequest(model=micro, payload=p, seq=7), timeout=10)
        assert r.label == want and r.seq == 7 and r.model == micro
        assert len(r.top5) == 5 and r.top5[0].index == want
        assert r.class_name == r.top5[0].name
        assert abs(sum(t.probability for t in r.top5)) <= 1.0001
        assert r.decode_ms > 0 and r.inference_ms > 0 and r.batch_size >= 1
        assert r.payload_bytes == len(p) and not r.duplicate and not r.HasField("error")


def test_list_models(stub, server, micro):
    r = stub.ListModels(pb2.ListModelsRequest(), timeout=10)
    names = [m.name for m in r.models]
    assert micro in names and names == sorted(server.info["models"])
    m = next(m for m in r.models if m.name == micro)
    assert m.size == "micro" and m.points == 1024 and len(m.classes) == 40 and m.channels > 0
    assert r.max_message_bytes == MAX_PAYLOAD


def test_health_and_reflection(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
    with grpc.insecure_channel(server.address) as ch:
        h = health_pb2_grpc.HealthStub(ch)
        for svc in ("", "splitinfer.v1.Inference"):
            assert h.Check(health_pb2.HealthCheckRequest(service=svc), timeout=5).status == \
                health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        resp = next(iter(refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)))
        services = {s.name for s in resp.list_services_response.service}
        assert {"splitinfer.v1.Inference", "grpc.health.v1.Health"} <= services
    from cloud_server.health import check
    assert check(server.address) == "SERVING"


def test_stream_with_edge_client(server, micro):
    from edge_client import EdgeClient
    with np.load(SAMPLE) as z:
        clouds = [(f"c{i}", z["points"][i], int(z["labels"][i])) for i in range(24)]
    _, expected, _ = encoded(micro, 24)
    with EdgeClient(server.address, micro, window=4) as client:
        report = client.run(clouds)
    s = report.summary()
    assert s["acknowledged"] == 24 and s["failed"] == 0 and s["lost"] == 0, s
    assert [r.seq for r in report.results] == list(range(24))
    assert [r.label for r in report.results] == expected
    assert s["accuracy"] is not None and s["bits_mean"] > 0 and s["rtt_ms_p95"] >= s["rtt_ms_p50"] > 0
    assert all(r.encode_ms > 0 and r.name == f"c{r.seq}" for r in report.results)


def test_resent_frames_are_answered_again_but_counted_once(stub, server, micro):
    payloads, expected, _ = encoded(micro, 5)
    sid = uuid.uuid4().hex
    before = metric(server.metrics_port, "splitinfer_requests_total", model=micro)
    dup_before = metric(server.metrics_port, "splitinfer_duplicate_frames_total", model=micro)
    reqs = [pb2.ClassifyRequest(model=micro, payload=p, stream_id=sid, seq=i) for i, p in enumerate(payloads)]
    first = list(stub.ClassifyStream(iter(reqs), timeout=20))
    again = list(stub.ClassifyStream(iter(reqs[2:] + reqs[:1]), timeout=20))   # a reconnect resends
    unary = stub.Classify(reqs[4], timeout=10)                                  # and unary too
    assert sorted(r.seq for r in first) == list(range(5)) and not any(r.duplicate for r in first)
    assert sorted(r.seq for r in again) == [0, 2, 3, 4] and all(r.duplicate for r in again)
    assert unary.duplicate and unary.label == expected[4]
    assert {r.seq: r.label for r in again} == {i: expected[i] for i in (0, 2, 3, 4)}
    assert metric(server.metrics_port, "splitinfer_requests_total", model=micro) - before == 5
    assert metric(server.metrics_port, "splitinfer_duplicate_frames_total", model=micro) - dup_before == 5


def _bad_payloads(good: bytes) -> dict[str, bytes]:
    rng = random.Random(0)
    bad = {"garbage": b"this is not a container", "truncated": good[: len(good) // 2],
           "one byte short": good[:-1], "trailing data": good + b"\x00\x01", "empty": b""}
    for i in range(20):
        bad[f"random {i}"] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 200)))
    for i in range(20):  # a valid header with corrupted bytes after it
        b = bytearray(good)
        pos = rng.randrange(4, len(b))
        b[pos] ^= 1 << rng.randrange(8)
        bad[f"bit flip {i} at {pos}"] = bytes(b)
    for i in range(10):
        bad[f"magic + random {i}"] = good[:4] + bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 60)))
    return bad


def test_bad_payloads_are_invalid_argument_and_server_survives(stub, server, micro):
    good, expected, _ = encoded(micro, 1)
    bad = _bad_payloads(good[0])
    for what, payload in bad.items():  # every single-bit flip is caught too (header checks, CRC)
        code, details = _code(stub.Classify, pb2.ClassifyRequest(model=micro, payload=payload), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and details, (what, code, details)
    assert stub.Classify(pb2.ClassifyRequest(model=micro, payload=good[0]), timeout=10).label == expected[0]
    assert server.proc.poll() is None
    assert metric(server.metrics_port, "splitinfer_errors_total", method="Classify",
                  code="INVALID_ARGUMENT") >= len(bad)


def test_payload_of_other_model_files_is_failed_precondition(stub, server, micro):
    """A container made by other files than the served model's (another model, or an older
    copy of the same name) is refused naming both digests and the fix, never answered."""
    from splitinfer.codec import Container
    from splitinfer.repository import ModelRepository
    served = ModelRepository().config(micro).digest[:16]
    good = Container.unpack(encoded(micro, 1)[0][0])
    stale = Container("0123456789abcdef", good.kind, good.shape, good.payloads).pack()
    payloads = {"stale copy": (stale, "0123456789abcdef")}
    try:
        lite = model_name("lite")
        payloads["another model"] = (encoded(lite, 1)[0][0], ModelRepository().config(lite).digest[:16])
    except pytest.skip.Exception:
        pass
    for what, (payload, theirs) in payloads.items():
        for call in (stub.Classify, None):
            if call is None:  # the same per frame on a stream
                (r,) = stub.ClassifyStream(iter([pb2.ClassifyRequest(model=micro, payload=payload, seq=1)]),
                                           timeout=10)
                code, details = r.error.code, r.error.message
                assert code == grpc.StatusCode.FAILED_PRECONDITION.value[0], (what, r)
            else:
                code, details = _code(call, pb2.ClassifyRequest(model=micro, payload=payload), timeout=10)
                assert code == grpc.StatusCode.FAILED_PRECONDITION, (what, code, details)
            assert served in details and theirs in details, details
            assert f"splitinfer models pull --server ADDR {micro}" in details


def test_latent_at_the_int32_limits_is_invalid_argument(stub, micro):
    """A forged latent far outside the model's range (escapes to the int32 limits) is refused,
    not answered with a confident label."""
    import numpy as np
    from splitinfer.codec import encode
    from splitinfer.repository import ModelRepository
    m = ModelRepository().load(micro)
    for value in (2**31 - 1, -2**31):
        y = np.zeros(m.channels, np.int32)
        y[::3] = value
        payload = m.pack(y)
        code, details = _code(stub.Classify, pb2.ClassifyRequest(model=micro, payload=payload), timeout=10)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "SymbolOutOfRange" in details, details
        assert len(encode(y, m.tables)) > 0


def test_unknown_model_is_not_found(stub, micro):
    good = encoded(micro, 1)[0][0]
    code, details = _code(stub.Classify, pb2.ClassifyRequest(model="no-such-model", payload=good), timeout=10)
    assert code == grpc.StatusCode.NOT_FOUND and "no-such-model" in details and micro in details


def test_oversize_is_resource_exhausted(stub, micro):
    # over the payload limit: refused by the service
    code, details = _code(stub.Classify, pb2.ClassifyRequest(model=micro, payload=b"S" * (MAX_PAYLOAD + 1)),
                          timeout=10)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and str(MAX_PAYLOAD) in details
    # far over it: refused by the transport
    code, _ = _code(stub.Classify, pb2.ClassifyRequest(model=micro, payload=b"S" * (1 << 20)), timeout=10)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_stream_deadline_is_deadline_exceeded(stub, micro):
    import time
    good = encoded(micro, 1)[0][0]

    def slow():
        yield pb2.ClassifyRequest(model=micro, payload=good, seq=0)
        time.sleep(2.5)   # the client keeps the stream open past its deadline

    call = stub.ClassifyStream(slow(), timeout=1.0)
    first = next(call)
    assert first.seq == 0 and not first.HasField("error")
    with pytest.raises(grpc.RpcError) as e:
        next(call)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_bad_frames_in_a_stream_get_errors_and_the_stream_goes_on(stub, micro):
    payloads, expected, _ = encoded(micro, 4)
    sid = uuid.uuid4().hex
    reqs = [pb2.ClassifyRequest(model=micro, payload=payloads[0], stream_id=sid, seq=0),
            pb2.ClassifyRequest(model=micro, payload=b"junk", stream_id=sid, seq=1),
            pb2.ClassifyRequest(model="nope", payload=payloads[1], stream_id=sid, seq=2),
            pb2.ClassifyRequest(model=micro, payload=b"x" * (MAX_PAYLOAD + 10), stream_id=sid, seq=3),
            pb2.ClassifyRequest(model=micro, payload=payloads[3], stream_id=sid, seq=4)]
    got = {r.seq: r for r in stub.ClassifyStream(iter(reqs), timeout=20)}
    assert sorted(got) == [0, 1, 2, 3, 4]
    assert got[0].label == expected[0] and not got[0].HasField("error")
    assert got[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert got[2].error.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert got[3].error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    assert got[4].label == expected[3]


def test_edge_client_reports_frame_errors(server, micro):
    from edge_client import EdgeClient
    good = latents(micro, 2)[0]
    with EdgeClient(server.address, micro) as client:
        report = client.run([good[0], b"\xff" * 50, good[1]], payloads=True)   # no valid latent
    s = report.summary()
    assert s["acknowledged"] == 3 and s["failed"] == 1 and s["lost"] == 0
    assert report.results[1].error.startswith("INVALID_ARGUMENT")


def test_32_concurrent_streams_of_100_frames_each_answered_exactly_once(server, micro):
    from edge_client import EdgeClient
    payloads, expected, _ = latents(micro, 100)
    before = metric(server.metrics_port, "splitinfer_requests_total", model=micro)
    results: dict[int, list] = {}
    errors: list = []

    def one(k: int, client):
        try:
            frames = [payloads[(k + i) % 100] for i in range(100)]
            results[k] = list(client.stream(frames, payloads=True, window=8))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    with EdgeClient(server.address, micro) as client:
        threads = [threading.Thread(target=one, args=(k, client)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors, errors
    assert len(results) == 32
    for k, rs in results.items():
        assert sorted(r.seq for r in rs) == list(range(100)), k          # every frame, exactly once
        assert all(r.ok and r.label == expected[(k + r.seq) % 100] for r in rs)
    assert metric(server.metrics_port, "splitinfer_requests_total", model=micro) - before == 3200
    # the server batched across the concurrent streams
    assert metric(server.metrics_port, "splitinfer_batch_size_sum", model=micro) > \
        metric(server.metrics_port, "splitinfer_batch_size_count", model=micro)


def test_metrics_endpoint(server, micro):
    from service_utils import scrape
    text = scrape(server.metrics_port)
    for name in ("splitinfer_requests_total", "splitinfer_errors_total", "splitinfer_request_latency_seconds_bucket",
                 "splitinfer_received_bits_total", "splitinfer_batch_size_bucket", "splitinfer_decode_seconds_bucket",
                 "splitinfer_inference_seconds_bucket", "splitinfer_payload_bits_bucket", "splitinfer_active_streams"):
        assert name in text, name
    assert metric(server.metrics_port, "splitinfer_received_bits_total", model=micro) > 0
