"""Hostile clients and unlucky operators against the real server process: cloud-only payloads
that amplify (Draco) or overflow (3e38), a 20,000-character model name, the metrics endpoint,
TLS key pairs, token files and auth that must not fail open, one-line startup errors."""
from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from service_utils import ROOT, SAMPLE, encoded, input_model_repo, model_name, start_server

from splitinfer.codec import Container, PayloadKind
from splitinfer.pointcloud.input_model import pack_draco, pack_raw, unpack_points
from splitinfer.pointcloud.preprocess import preprocess
from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc

PLAIN = "plain-pointnet-p1024"
_DIGESTS: dict[str, str] = {}


def digest(name: str = PLAIN) -> str:
    """The digest of a model of the test repository (``repo_dir``)."""
    return _DIGESTS[name]


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    pytest.importorskip("DracoPy")
    from splitinfer.repository import ModelRepository
    root = input_model_repo(tmp_path_factory.mktemp("models"))
    _DIGESTS.update({c.name: c.digest for c in ModelRepository(root).list()})
    return root


@pytest.fixture(scope="module")
def server(repo_dir):
    from cloud_server.process import ServerProcess
    srv = ServerProcess([PLAIN, model_name("micro")], models_dir=str(repo_dir))
    yield srv
    assert srv.stop() == 0, srv.log()


@pytest.fixture(scope="module")
def cloud():
    with np.load(SAMPLE) as z:
        return preprocess(z["points"][0], 1024, 0)


def _threads(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def _classify(stub, payload, model=PLAIN):
    return stub.Classify(pb2.ClassifyRequest(model=model, payload=payload), timeout=20)


# -- item 8: no NaN leaves the server ---------------------------------------------------------------
def test_a_huge_coordinate_is_invalid_argument_not_nan(stub, cloud):
    x = cloud.copy()
    x[5, 1] = 3e38
    with pytest.raises(grpc.RpcError) as e:
        _classify(stub, pack_raw(x, digest()))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "coordinates" in e.value.details()
    reqs = [pb2.ClassifyRequest(model=PLAIN, payload=pack_raw(x, digest()), stream_id="nan", seq=1),
            pb2.ClassifyRequest(model=PLAIN, payload=pack_raw(cloud, digest()), stream_id="nan", seq=2)]
    answers = {r.seq: r for r in stub.ClassifyStream(iter(reqs), timeout=20)}
    assert answers[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert answers[2].error.code == 0 and all(np.isfinite(p.probability) for p in answers[2].top5)


def test_the_batcher_answers_non_finite_logits_with_an_error_per_input():
    """The last guard: an input whose logits are not finite gets NonFiniteOutput, the others of
    its batch their answers."""
    from cloud_server import batcher
    from cloud_server.batcher import DynamicBatcher
    NonFiniteOutput = getattr(batcher, "NonFiniteOutput", None)
    assert NonFiniteOutput is not None, "no typed error for non-finite logits"

    def run(x):  # logits = the inputs themselves (a real, if trivial, model)
        return x.astype(np.float32)

    async def go():
        b = DynamicBatcher("identity", run, max_batch_size=8).start()
        futs = [b.submit(np.array([1, 2, 3], np.float32)),
                b.submit(np.array([np.inf, 0, 1], np.float32)),
                b.submit(np.array([0, np.nan, 1], np.float32))]
        return await asyncio.gather(*futs, return_exceptions=True)
    ok, inf, nan = asyncio.run(go())
    assert ok.label == 2 and np.isfinite(ok.top_prob).all()
    assert isinstance(inf, NonFiniteOutput) and isinstance(nan, NonFiniteOutput)


# -- item 3: Draco amplification --------------------------------------------------------------------
def test_draco_point_count_is_read_from_the_header(cloud):
    from splitinfer.pointcloud.draco import draco_point_count
    d = Container.unpack(pack_draco(cloud, digest(), 11)).payloads[0]
    assert draco_point_count(d) == 1024


def test_draco_and_header_shapes_bounded_by_the_model_input(stub, cloud):
    big = np.random.default_rng(0).uniform(-1, 1, (65536, 3)).astype(np.float32)
    draco_big = Container.unpack(pack_draco(big, digest(), 4)).payloads[0]
    cases = {
        # the container says 65,536 points (the old limit), the model takes 1,024
        "header": pack_draco(big, digest(), 4),
        # the container says 1,024, the Draco buffer itself 65,536: refused before decoding
        "draco": Container(digest(), PayloadKind.POINTCLOUD_DRACO, (1024, 3), (draco_big,)).pack(),
        # truncated after the Draco header: the declared count alone refuses it
        "truncated": Container(digest(), PayloadKind.POINTCLOUD_DRACO, (1024, 3), (draco_big[:15],)).pack(),
        "raw": Container(digest(), PayloadKind.POINTCLOUD_RAW_F32, (2048, 3),
                         (np.zeros((2048, 3), "<f4").tobytes(),)).pack(),
    }
    for what, payload in cases.items():
        t0 = time.perf_counter()
        with pytest.raises(grpc.RpcError) as e:
            _classify(stub, payload)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, what
        assert time.perf_counter() - t0 < 5.0, what
    with pytest.raises(Exception, match="declares 65536 points"):
        unpack_points(Container.unpack(cases["truncated"]), 1024)


# -- item 10: long model names ---------------------------------------------------------------------
def test_a_20000_character_model_name_is_refused_with_a_short_message(stub, server):
    name = "m" * 20000
    payload = encoded(model_name("micro"), 1)[0][0]
    with pytest.raises(grpc.RpcError) as e:
        _classify(stub, payload, model=name)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()[:200]
    assert len(e.value.details()) < 400
    with pytest.raises(grpc.RpcError) as e:
        _classify(stub, payload, model="x" * 100)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND and len(e.value.details()) < 1000
    answers = list(stub.ClassifyStream(iter([pb2.ClassifyRequest(model=name, payload=payload, seq=1)]),
                                       timeout=20))
    assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(answers[0].error.message) < 400


# -- item 5: the metrics endpoint -------------------------------------------------------------------
def test_metrics_endpoint_answers_only_metrics_and_caps_connections(server):
    port = server.metrics_port
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/anything", timeout=5)
    assert e.value.code == 404
    threads0 = _threads(server.proc.pid)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(300)]
    try:
        time.sleep(0.5)
        assert _threads(server.proc.pid) <= threads0 + 2
    finally:
        for s in idle:
            s.close()
    deadline = time.monotonic() + 10
    while True:  # the closed sockets are reaped and scrapes answer again
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            break
        except urllib.error.HTTPError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert b"splitinfer_requests_total" in body


def test_metrics_default_port_and_loopback():
    import argparse

    from cloud_server.cli import add_arguments
    p = argparse.ArgumentParser()
    add_arguments(p)
    a = p.parse_args([])
    assert a.metrics_port != 9100 and a.metrics_host == "127.0.0.1"


def test_metrics_bind_loopback_even_when_grpc_listens_everywhere(repo_dir):
    from cloud_server.process import ServerProcess
    with ServerProcess([PLAIN], models_dir=str(repo_dir), host="0.0.0.0") as srv:
        out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout \
            if shutil.which("ss") else ""
        if out:
            assert f"127.0.0.1:{srv.metrics_port} " in out
            assert f"0.0.0.0:{srv.metrics_port} " not in out
        assert srv.stop() == 0


# -- items 11, 12, 13, 17: startup -----------------------------------------------------------------
def _serve(args, timeout=60, env=None):
    """Run `python -m cloud_server ARGS` expecting it to refuse to start."""
    penv = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    penv.pop("SPLITINFER_TOKEN", None)
    return subprocess.run([sys.executable, "-m", "cloud_server", "--port", "0", "--metrics-port", "-1",
                           "--model", model_name("micro")] + args,
                          capture_output=True, text=True, timeout=timeout, env=penv, cwd=ROOT)


def _one_error_line(r):
    assert r.returncode == 2, r.stderr[-2000:]
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def two_certs(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test certificates")
    d = tmp_path_factory.mktemp("tls2")
    for n in ("a", "b"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "1", "-keyout", str(d / f"{n}.key"), "-out", str(d / f"{n}.pem"),
                        "-subj", "/CN=localhost"], check=True, capture_output=True, timeout=60)
    return d


def test_a_mismatched_tls_key_is_named(two_certs):
    line = _one_error_line(_serve(["--tls-cert", str(two_certs / "a.pem"),
                                   "--tls-key", str(two_certs / "b.key")]))
    assert "does not match" in line or "not the private key" in line
    line = _one_error_line(_serve(["--tls-cert", str(two_certs / "a.pem"),
                                   "--tls-key", str(two_certs / "a.pem")]))
    assert "tls" in line.lower()


def test_auth_does_not_fail_open(tmp_path):
    empty = tmp_path / "tokens"
    empty.write_text("# rotated out\n\n")
    line = _one_error_line(_serve(["--token-file", str(empty)]))
    assert "no token" in line and "--no-auth" in line
    line = _one_error_line(_serve(["--token", ""]))
    assert "--no-auth" in line
    line = _one_error_line(_serve(["--token", "abc", "--no-auth"]))
    assert "conflicts" in line


def test_startup_failures_are_one_error_line(tmp_path):
    assert "nosuch" in _one_error_line(_serve(["--model", "nosuch-model"]))
    assert "tokens.txt" in _one_error_line(_serve(["--token-file", str(tmp_path / "tokens.txt")]))
    line = _one_error_line(_serve(["--tls-cert", str(tmp_path / "c.pem"), "--tls-key", str(tmp_path / "k.pem")]))
    assert "c.pem" in line


def test_no_auth_serves_without_tokens(repo_dir, tmp_path):
    from cloud_server.process import ServerProcess
    empty = tmp_path / "tokens"
    empty.write_text("")
    env = {"SPLITINFER_TOKEN": ""}
    with ServerProcess([PLAIN], models_dir=str(repo_dir), extra=["--token-file", str(empty), "--no-auth"],
                       env=env) as srv:
        assert srv.info["auth"] is False
        assert srv.stop() == 0


def test_token_file_format_is_shared_by_server_and_client(tmp_path):
    text = "# tokens of the fleet\n  S3cr3t#2024-rotated  \n\n#old-token\nsecond\n"
    f = tmp_path / "tokens"
    f.write_text(text)
    micro = model_name("micro")
    srv = start_server([micro], ["--token-file", str(f)])
    try:
        payloads, expected, _ = encoded(micro, 3)
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb2_grpc.InferenceStub(ch)
            r = stub.Classify(pb2.ClassifyRequest(model=micro, payload=payloads[0]), timeout=10,
                              metadata=(("authorization", "Bearer S3cr3t#2024-rotated"),))
            assert r.label == expected[0]
            with pytest.raises(grpc.RpcError) as e:   # the part before '#' is not a token
                stub.Classify(pb2.ClassifyRequest(model=micro, payload=payloads[0]), timeout=10,
                              metadata=(("authorization", "Bearer S3cr3t"),))
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # the edge client reads the same file and sends its first token, once
        np.savez(tmp_path / "clouds.npz", points=np.load(SAMPLE)["points"][:2])
        r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "stream", str(tmp_path / "clouds.npz"),
                            "--server", srv.address, "--model", micro, "--token-file", str(f), "--quiet",
                            "--reconnect-timeout", "10"],
                           capture_output=True, text=True, timeout=120, cwd=ROOT,
                           env=dict(os.environ, PYTHONPATH=str(ROOT), SPLITINFER_TOKEN=""))
        assert r.returncode == 0, r.stdout + r.stderr
        assert "2/2 answered" in r.stdout, r.stdout
    finally:
        assert srv.stop() == 0
    from splitinfer.tokens import parse_tokens, read_token
    assert parse_tokens(text) == ["S3cr3t#2024-rotated", "second"]
    assert read_token(f) == "S3cr3t#2024-rotated"


# -- item 18 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("limit", ["0", "-1", "x"])
def test_stream_refuses_non_positive_limits(limit):
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "stream", str(SAMPLE), "--model", "m",
                        "--limit", limit], capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 2 and "--limit" in r.stderr and "positive" in r.stderr
