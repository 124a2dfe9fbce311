"""Protocol v2 against a real server process: the stream header binds frames to the model digest
(a mismatch is FAILED_PRECONDITION for every frame, never a label), the idempotency ledger never
answers for another frame, stream ids are bounded, oversized frames fail alone, answers are
compact unless asked for more, and `models pull` fetches a verified edge folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import grpc
import numpy as np
import pytest
from service_utils import ROOT, SAMPLE, encoded, latents, metric, model_name, start_server

from splitinfer.proto.v2 import inference_pb2 as pb2
from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc

MAX_PAYLOAD = 4096


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


@pytest.fixture(scope="module")
def server(micro):
    srv = start_server([micro], ["--max-message-bytes", str(MAX_PAYLOAD), "--max-stream-id-bytes", "64"])
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.address) as ch:
        yield pb2_grpc.InferenceStub(ch)


def _digest(name: str) -> bytes:
    from splitinfer.repository import ModelRepository
    return bytes.fromhex(ModelRepository().config(name).digest)


def _header(name, **kw):
    return pb2.StreamHeader(model=name, model_digest=kw.pop("digest", _digest(name)), **kw)


def _stream(stub, header, frames, seqs=None, timeout=20):
    """Send ``frames`` on one call (the header with the first); the answers by seq."""
    def reqs():
        for i, f in enumerate(frames):
            r = pb2.StreamRequest(latent=f)
            if i == 0:
                r.header.CopyFrom(header)
            if seqs is not None:
                r.seq = seqs[i]
            yield r
    return {r.seq: r for r in stub.ClassifyStream(reqs(), timeout=timeout)}


@pytest.fixture
def other_version(tmp_path, micro):
    """The same model name with different files (tables re-saved with an extra array, the config's
    sha256 updated): what an edge holding an older or retrained copy has."""
    from splitinfer.repository import ModelRepository, sha256, write_digest
    cfg = ModelRepository().config(micro)
    dest = tmp_path / "edge" / micro / str(cfg.version)
    shutil.copytree(cfg.path, dest)
    tables = dest / cfg.raw["files"]["tables"]
    with np.load(tables) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tables, **arrays, retrained=np.ones(1))
    raw = json.loads((dest / "config.json").read_text())
    raw["sha256"][tables.name] = sha256(tables)
    (dest / "config.json").write_text(json.dumps(raw))
    write_digest(dest / "config.json")       # a consistent folder: another version's files
    return tmp_path / "edge"


def test_compact_answers_by_default_and_more_on_request(stub, micro):
    frames, expected, _ = latents(micro, 4)
    got = _stream(stub, _header(micro), frames)
    assert [got[i].label for i in range(4)] == expected
    for r in got.values():
        assert 0 < r.probability <= 1 and not r.top_index and not r.class_name and not r.HasField("timings")
        assert r.ByteSize() <= 10     # seq, label, probability
    rich = _stream(stub, _header(micro, top_k=3, names=True, timings=True), frames[:1])[0]
    assert list(rich.top_index)[0] == expected[0] and len(rich.top_name) == 3 and rich.class_name
    assert rich.timings.batch_size >= 1 and rich.timings.decode_ms > 0


def test_implicit_and_explicit_seqs(stub, micro):
    frames, expected, _ = latents(micro, 4)
    got = _stream(stub, _header(micro, stream_id="seqs", session=os.urandom(8)), frames, seqs=[10, 11, 20, 21])
    assert sorted(got) == [10, 11, 20, 21]
    assert [got[s].label for s in (10, 11, 20, 21)] == expected


def test_digest_mismatch_refuses_the_stream(stub, micro):
    frames = latents(micro, 2)[0]
    with pytest.raises(grpc.RpcError) as e:
        _stream(stub, _header(micro, digest=b"\x01" * 32), frames)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    d = e.value.details()
    assert ("01" * 32) in d and _digest(micro).hex() in d and "models pull" in d
    with pytest.raises(grpc.RpcError) as e:   # no digest at all
        _stream(stub, _header(micro, digest=b""), frames)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError) as e:   # unary, with a digest
        stub.Classify(pb2.ClassifyRequest(model=micro, payload=encoded(micro, 1)[0][0], model_digest=b"\x02" * 32),
                      timeout=10)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_first_message_must_carry_the_header(stub, micro):
    with pytest.raises(grpc.RpcError) as e:
        list(stub.ClassifyStream(iter([pb2.StreamRequest(latent=latents(micro, 1)[0][0])]), timeout=10))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "header" in e.value.details()


def test_edge_with_other_model_files_gets_failed_precondition_for_every_frame(server, micro, other_version):
    from edge_client import EdgeClient
    with np.load(SAMPLE) as z:
        clouds = [(f"c{i}", p, int(t)) for i, (p, t) in enumerate(zip(z["points"][:30], z["labels"][:30]))]
    with EdgeClient(server.address, micro, models_dir=other_version, window=4) as client:
        assert client.digest(micro) != _digest(micro)
        report = client.run(clouds)
        with pytest.raises(Exception) as e:
            client.classify(clouds[0][1])
        assert "FAILED_PRECONDITION" in str(e.value)
    assert len(report.results) == 30
    assert all(r.label is None and r.error.startswith("FAILED_PRECONDITION") for r in report.results)
    assert report.summary()["succeeded"] == 0 and "FAILED_PRECONDITION" in report.error


def test_same_stream_id_run_twice_with_other_clouds_scores_both(server, micro):
    from edge_client import EdgeClient
    from splitinfer.repository import ModelRepository
    m = ModelRepository().load(micro)
    with np.load(SAMPLE) as z:
        pts = z["points"][:40]
    want = [int(np.argmax(m.classify(m.decode_latent(m.encode_latent(p))[None].astype(np.float32))[0]))
            for p in pts]
    with EdgeClient(server.address, micro) as client:
        a = client.run(list(pts[:20]), stream_id="robot-7")
        b = client.run(list(pts[20:]), stream_id="robot-7")
    assert [r.label for r in a.results] == want[:20]
    assert [r.label for r in b.results] == want[20:]           # not the first run's answers
    assert not any(r.duplicate for r in a.results + b.results)


def test_reused_seq_with_another_payload_is_already_exists(stub, micro):
    frames, expected, _ = latents(micro, 3)
    h = _header(micro, stream_id="d", session=b"s1")
    first = _stream(stub, h, [frames[0]], seqs=[0])[0]
    again = _stream(stub, h, [frames[0]], seqs=[0])[0]            # a resend: the same answer
    other = _stream(stub, h, [frames[1]], seqs=[0])[0]            # another frame under that key
    assert first.label == expected[0] and again.duplicate and again.label == first.label
    assert other.error.code == grpc.StatusCode.ALREADY_EXISTS.value[0] and other.label == 0
    fresh = _stream(stub, _header(micro, stream_id="d", session=b"s2"), [frames[1]], seqs=[0])[0]
    assert fresh.label == expected[1] and not fresh.duplicate     # a new session: a new ledger


def test_v1_reused_key_with_another_payload_is_already_exists(server, micro):
    """v1's Classify(chair, stream d, seq 0) then Classify(toilet, stream d, seq 0): an error for the
    second, not the first one's answer."""
    from splitinfer.proto import inference_pb2 as v1
    from splitinfer.proto import inference_pb2_grpc as v1_grpc
    payloads, expected, _ = encoded(micro, 30)
    a, b = next((i, j) for i in range(30) for j in range(30) if expected[i] != expected[j])
    with grpc.insecure_channel(server.address) as ch:
        stub = v1_grpc.InferenceStub(ch)
        r = stub.Classify(v1.ClassifyRequest(model=micro, payload=payloads[a], stream_id="v1d", seq=0), timeout=10)
        assert r.label == expected[a]
        with pytest.raises(grpc.RpcError) as e:
            stub.Classify(v1.ClassifyRequest(model=micro, payload=payloads[b], stream_id="v1d", seq=0), timeout=10)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_stream_id_over_the_limit_is_invalid_argument(stub, micro):
    with pytest.raises(grpc.RpcError) as e:
        _stream(stub, _header(micro, stream_id="x" * 65), latents(micro, 1)[0])
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "64" in e.value.details()
    assert _stream(stub, _header(micro, stream_id="x" * 64), latents(micro, 1)[0])[0].label >= 0


def test_oversized_frame_fails_alone_and_the_client_counts_are_true(server, micro):
    from edge_client import EdgeClient
    frames, expected, _ = latents(micro, 20)
    sent = list(frames)
    sent[5] = b"\x07" * (MAX_PAYLOAD + 8192)        # over the limit, under the transport's
    sent[9] = b"\x07" * (2 << 20)                   # over the client's limit: never sent
    with EdgeClient(server.address, micro, max_message_bytes=1 << 20) as client:
        report = client.run(sent, payloads=True)
    s = report.summary()
    assert s["acknowledged"] == 20 and s["failed"] == 2 and s["lost"] == 0 and s["error"] is None, s
    assert report.results[5].error.startswith("RESOURCE_EXHAUSTED")
    assert report.results[9].error.startswith("RESOURCE_EXHAUSTED") and report.results[9].sends == 0
    assert [r.label for r in report.results if r.ok] == [e for i, e in enumerate(expected) if i not in (5, 9)]


def test_ledger_size_is_a_metric(server, micro, stub):
    _stream(stub, _header(micro, stream_id="metric", session=b"m"), latents(micro, 3)[0])
    assert metric(server.metrics_port, "splitinfer_ledger_bytes") > 0
    assert metric(server.metrics_port, "splitinfer_ledger_streams") >= 1


def test_models_pull_then_stream_from_the_pulled_folder(server, micro, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "pulled"
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "models", "pull", "--server", server.address,
                        micro, "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    folder = next(out.glob(f"{micro}/*"))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["config.json", *[json.loads((folder / "config.json").read_text())["files"][k] for k in ("encoder", "tables")]])
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "stream", "--server", server.address, "--models",
                        str(out), "--model", micro, str(SAMPLE), "--limit", "10", "--quiet"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "10/10 answered (0 failed, 0 lost" in r.stdout
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "models", "pull", "--server", server.address,
                        f"{micro}@99", "--out", str(out)], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 1 and "NOT_FOUND" in r.stderr and "@99" in r.stderr


def test_pull_refuses_a_corrupted_or_foreign_transfer(micro):
    from edge_client.pull import PullError, receive, verify
    from splitinfer.repository import ModelRepository
    cfg = ModelRepository().config(micro)
    import hashlib
    data = (cfg.path / "config.json").read_bytes()

    def chunk(**kw):
        return pb2.ModelChunk(**kw)
    good = [chunk(model=micro, version=cfg.version, digest=cfg.digest, file="config.json", size=len(data),
                  sha256=hashlib.sha256(data).hexdigest(), data=data)]
    info, files = receive(good)
    bad = [chunk(model=micro, version=cfg.version, digest=cfg.digest, file="config.json", size=len(data),
                 sha256="0" * 64, data=data)]
    with pytest.raises(PullError, match="sha256"):
        receive(bad)
    with pytest.raises(PullError, match="outside"):
        receive([chunk(model=micro, file="../x", size=1, sha256="", data=b"x")])
    with pytest.raises(PullError, match="no encoder"):
        verify(info, files)     # the encoder never came
    for role in ("encoder", "tables"):
        files[cfg.raw["files"][role]] = cfg.file(role).read_bytes()
    assert verify(info, files)["name"] == micro
    with pytest.raises(PullError, match="digest"):
        verify(dict(info, digest="f" * 64), files)
    files[cfg.raw["files"]["tables"]] += b"\0"
    with pytest.raises(PullError, match="recorded in the model's config"):
        verify(info, files)


def test_an_empty_latent_is_a_frame_even_beside_a_header(stub, micro):
    """A most probable y_hat codes to no byte at all: such a frame is answered, also when it
    travels with a header (the first message, or a model switch)."""
    import numpy as np

    from splitinfer.repository import ModelRepository
    m = ModelRepository().load(micro)
    want = int(np.argmax(m.classify(m.decode_latent(b"")[None].astype(np.float32))[0]))
    frames, expected, _ = latents(micro, 2)
    h = _header(micro)

    def reqs():
        yield pb2.StreamRequest(header=h, latent=b"")           # seq 0: header and an empty frame
        yield pb2.StreamRequest(latent=frames[0])               # seq 1
        yield pb2.StreamRequest(header=h, latent=b"")           # seq 2: a header again, empty frame
        yield pb2.StreamRequest(latent=frames[1])               # seq 3
    got = {r.seq: r for r in stub.ClassifyStream(reqs(), timeout=20)}
    assert sorted(got) == [0, 1, 2, 3] and not any(r.HasField("error") for r in got.values())
    assert [got[i].label for i in range(4)] == [want, expected[0], want, expected[1]]


def test_stream_metrics_count_every_frame_exactly(server, stub, micro):
    """The stream path writes its per-frame metrics once per batch: the counts are the frames'."""
    frames, expected, _ = latents(micro, 40)
    bad = b"\xff" * 50                                            # no valid latent: INVALID_ARGUMENT
    sent = frames[:20] + [bad] + frames[20:]
    port = server.metrics_port

    def read():
        return {"requests": metric(port, "splitinfer_requests_total", method="ClassifyStream", model=micro),
                "ok": metric(port, "splitinfer_responses_total", method="ClassifyStream", code="OK"),
                "invalid": metric(port, "splitinfer_responses_total", method="ClassifyStream",
                                  code="INVALID_ARGUMENT"),
                "latency": metric(port, "splitinfer_request_latency_seconds_count", method="ClassifyStream",
                                  model=micro),
                "latency_inf": metric(port, "splitinfer_request_latency_seconds_bucket", method="ClassifyStream",
                                      model=micro, le="+Inf"),
                "decode": metric(port, "splitinfer_decode_seconds_count", model=micro),
                "queue": metric(port, "splitinfer_queue_seconds_count", model=micro),
                "payload": metric(port, "splitinfer_payload_bits_count", model=micro),
                "payload_sum": metric(port, "splitinfer_payload_bits_sum", model=micro),
                "bits": metric(port, "splitinfer_received_bits_total", model=micro),
                "duplicates": metric(port, "splitinfer_duplicate_frames_total", model=micro),
                "inflight": metric(port, "splitinfer_inflight_frames")}
    before = read()
    header = _header(micro, stream_id="metrics-" + os.urandom(4).hex(), session=os.urandom(8))
    answers = _stream(stub, header, sent)
    again = _stream(stub, header, [frames[0]], seqs=[0])          # a resend: answered from the ledger
    assert again[0].duplicate and again[0].label == expected[0]
    assert answers[20].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert [answers[i if i < 20 else i + 1].label for i in range(40)] == expected
    d = {k: v - before[k] for k, v in read().items()}
    payload_bits = 8 * sum(len(f) for f in sent)
    assert d == {"requests": 41, "ok": 41, "invalid": 1, "latency": 40, "latency_inf": 40, "decode": 40,
                 "queue": 40, "payload": 41, "payload_sum": payload_bits, "bits": payload_bits,
                 "duplicates": 1, "inflight": 0}
