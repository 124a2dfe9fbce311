"""TLS with a self-signed certificate made here, and bearer-token auth (UNAUTHENTICATED)."""
from __future__ import annotations

import shutil
import subprocess

import grpc
import pytest
from service_utils import encoded, latents, metric, model_name, start_server

from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def micro():
    return model_name("micro")


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if not shutil.which("openssl"):
        pytest.skip("openssl is needed to make the test certificate")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def server(micro, cert):
    srv = start_server([micro], ["--tls-cert", str(cert[0]), "--tls-key", str(cert[1]), "--token", TOKEN])
    yield srv
    assert srv.stop() == 0


def _secure(server, cert, **options):
    creds = grpc.ssl_channel_credentials(root_certificates=cert[0].read_bytes())
    return grpc.secure_channel(server.address, creds, options=list(options.items()))


def test_tls_handshake_and_token(server, cert, micro):
    from edge_client import EdgeClient
    payloads, expected, _ = encoded(micro, 3)
    frames = latents(micro, 3)[0]
    with EdgeClient(server.address, micro, tls_ca=cert[0], token=TOKEN) as client:
        assert micro in [m["name"] for m in client.list_models()]
        report = client.run(frames, payloads=True)
    assert [r.label for r in report.results] == expected
    with _secure(server, cert) as ch:
        r = pb2_grpc.InferenceStub(ch).Classify(pb2.ClassifyRequest(model=micro, payload=payloads[0]),
                                                metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=10)
        assert r.label == expected[0]


def test_plaintext_client_cannot_talk_to_tls_server(server, micro):
    payload = encoded(micro, 1)[0][0]
    with grpc.insecure_channel(server.address) as ch:
        with pytest.raises(grpc.RpcError) as e:
            pb2_grpc.InferenceStub(ch).Classify(pb2.ClassifyRequest(model=micro, payload=payload),
                                                metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_untrusted_certificate_is_refused(server, micro):
    payload = encoded(micro, 1)[0][0]
    with grpc.secure_channel(server.address, grpc.ssl_channel_credentials()) as ch:  # system roots only
        with pytest.raises(grpc.RpcError) as e:
            pb2_grpc.InferenceStub(ch).Classify(pb2.ClassifyRequest(model=micro, payload=payload),
                                                metadata=(("authorization", f"Bearer {TOKEN}"),), timeout=5)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("metadata", [(), (("authorization", "Bearer wrong"),),
                                      (("authorization", TOKEN),), (("authorization", "Basic " + TOKEN),)],
                         ids=["missing", "wrong", "no-scheme", "basic"])
def test_bad_or_missing_token_is_unauthenticated(server, cert, micro, metadata):
    payload = encoded(micro, 1)[0][0]
    with _secure(server, cert) as ch:
        stub = pb2_grpc.InferenceStub(ch)
        calls = [lambda: stub.Classify(pb2.ClassifyRequest(model=micro, payload=payload), metadata=metadata, timeout=5),
                 lambda: list(stub.ClassifyStream(iter([pb2.ClassifyRequest(model=micro, payload=payload)]),
                                                  metadata=metadata, timeout=5)),
                 lambda: stub.ListModels(pb2.ListModelsRequest(), metadata=metadata, timeout=5)]
        for call in calls:
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert metric(server.metrics_port, "splitinfer_errors_total", code="UNAUTHENTICATED") >= 3


def test_edge_client_without_token_fails_fast(server, cert, micro):
    from edge_client import EdgeClient, StreamError
    payloads = latents(micro, 2)[0]
    with EdgeClient(server.address, micro, tls_ca=cert[0]) as client:
        with pytest.raises(StreamError) as e:
            list(client.stream(payloads, payloads=True))
    assert e.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_health_needs_no_token(server, cert):
    from cloud_server.health import check
    assert check(server.address, tls_ca=str(cert[0])) == "SERVING"
