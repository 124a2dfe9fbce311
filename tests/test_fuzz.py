"""A seeded fuzz suite against the real server processes: mutated and random payloads to
Classify and ClassifyStream (a split codec and a cloud-only model), mutated and random bodies to
the sidecar's routes. Asserts no UNKNOWN / INTERNAL status, no OK answer with a non-finite or
out-of-range probability, no 5xx, and server memory growth within a fixed budget.

Bounded: a few thousand cases, deterministic for a seed (SPLITINFER_FUZZ_SEED, default 0)."""
from __future__ import annotations

import io
import math
import os
import random
import struct
import urllib.error
import urllib.request
from pathlib import Path

import grpc
import numpy as np
import pytest
from service_utils import SAMPLE, encoded, input_model_repo, model_name

from splitinfer.codec import Container, PayloadKind
from splitinfer.pointcloud.input_model import pack_draco, pack_raw
from splitinfer.pointcloud.preprocess import preprocess
from splitinfer.proto import inference_pb2 as pb2
from splitinfer.proto import inference_pb2_grpc as pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
SEED = int(os.environ.get("SPLITINFER_FUZZ_SEED", "0"))
PLAIN = "plain-pointnet-p1024"
BAD_CODES = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
GRPC_RSS_BUDGET_MB = 150
SIDECAR_RSS_BUDGET_MB = 250
EXTREMES = (np.nan, np.inf, -np.inf, 3e38, -3e38, 1e30, 1e6, 1e-40, -0.0)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One random mutation: bit flips, byte overwrites, truncation, extension, insertion,
    deletion, a splice of itself, or an integer field set to an edge value."""
    b = bytearray(data)
    op = rng.randrange(8)
    if not b:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    if op == 0:
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 2:
        b = b[:rng.randrange(len(b))]
    elif op == 3:
        b += bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif op == 4:
        i = rng.randrange(len(b) + 1)
        b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    elif op == 5:
        i = rng.randrange(len(b))
        del b[i:i + rng.randint(1, 16)]
    elif op == 6:
        i, j = sorted(rng.randrange(len(b) + 1) for _ in range(2))
        b = b[:i] + b[j:] + b[i:j]
    else:
        i = rng.randrange(max(1, len(b) - 3))
        b[i:i + 4] = struct.pack("<I", rng.choice((0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 65536)))
    return bytes(b)


_DIGESTS: dict[str, str] = {}   # model name -> digest in the gRPC server's repository


def digest(name: str) -> str:
    return _DIGESTS[name]


# -- gRPC ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory):
    pytest.importorskip("DracoPy")
    from cloud_server.process import ServerProcess
    from splitinfer.repository import ModelRepository
    repo = input_model_repo(tmp_path_factory.mktemp("models"))
    _DIGESTS.update({c.name: c.digest for c in ModelRepository(repo).list()})
    srv = ServerProcess([PLAIN, model_name("micro")], models_dir=str(repo))
    yield srv
    assert srv.stop() == 0, srv.log()


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cloud_payloads(rng: random.Random, clouds) -> bytes:
    x = clouds[rng.randrange(len(clouds))].copy()
    kind = rng.randrange(5)
    if kind == 0:       # extreme coordinates
        for _ in range(rng.randint(1, 3)):
            x[rng.randrange(len(x)), rng.randrange(3)] = rng.choice(EXTREMES)
        return pack_raw(x, digest(PLAIN))
    if kind == 1:       # a header shape other than the data
        n = rng.choice((0, 1, 1023, 1025, 4096, 65536, 2**24))
        return Container(digest(PLAIN), PayloadKind.POINTCLOUD_RAW_F32, (n, 3), (x.astype("<f4").tobytes(),)).pack()
    if kind == 2:
        return mutate(rng, pack_draco(x, digest(PLAIN), rng.choice((4, 8, 11))))
    if kind == 3:
        return mutate(rng, pack_raw(x, digest(PLAIN)))
    scale = rng.choice((1.0, 1e3, 1e20))
    return pack_raw((x * scale).astype(np.float32), digest(PLAIN))


def _case(rng: random.Random, micro: str, latents: list[bytes], clouds) -> pb2.ClassifyRequest:
    r = rng.random()
    if r < 0.35:
        return pb2.ClassifyRequest(model=micro, payload=mutate(rng, latents[rng.randrange(len(latents))]))
    if r < 0.65:
        return pb2.ClassifyRequest(model=PLAIN, payload=_cloud_payloads(rng, clouds))
    if r < 0.75:
        n = rng.choice((0, 1, 8, 37, 300, 5000))
        return pb2.ClassifyRequest(model=rng.choice((micro, PLAIN)), payload=rng.randbytes(n))
    if r < 0.82:  # a valid payload under another name, or a hostile name
        name = rng.choice(("", "x" * rng.choice((1, 128, 129, 20000)), micro + "\0", "../" + micro,
                           "\u00e9" * 50, PLAIN if rng.random() < .5 else micro))
        return pb2.ClassifyRequest(model=name, payload=latents[rng.randrange(len(latents))])
    if r < 0.9:  # containers of every kind with random shapes
        kind = rng.choice(list(PayloadKind))
        shape = tuple(rng.choice((0, 1, 3, 16, 1024, 65535, 2**24)) for _ in range(rng.randint(0, 3)))
        try:
            data = Container(digest(rng.choice((micro, PLAIN))), kind, shape,
                             tuple(rng.randbytes(rng.randrange(40)) for _ in range(rng.randint(0, 3)))).pack()
        except Exception:  # noqa: BLE001 - the packer refuses some shapes itself
            data = rng.randbytes(40)
        return pb2.ClassifyRequest(model=rng.choice((micro, PLAIN)), payload=data)
    return pb2.ClassifyRequest(model=micro, payload=latents[rng.randrange(len(latents))],  # valid
                               seq=rng.randrange(2**63), stream_id=rng.choice(("", "s", "t" * 100)))


def _check_answer(resp, where: str) -> None:
    probs = [p.probability for p in resp.top5]
    assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in probs), (where, probs)
    assert probs == sorted(probs, reverse=True), (where, probs)
    assert sum(probs) <= 1.0 + 1e-4, (where, probs)


def test_fuzz_classify_and_stream(grpc_server):
    rng = random.Random(SEED)
    micro = model_name("micro")
    latents = encoded(micro, 24)[0]
    with np.load(SAMPLE) as z:
        clouds = [preprocess(p, 1024, 0) for p in z["points"][:6]]
    pid = grpc_server.proc.pid
    with grpc.insecure_channel(grpc_server.address) as ch:
        stub = pb2_grpc.InferenceStub(ch)
        for _ in range(50):  # warm up the allocator with valid work before the baseline
            stub.Classify(pb2.ClassifyRequest(model=micro, payload=latents[0]), timeout=20)
        base = _rss_mb(pid)
        codes: dict[str, int] = {}
        for i in range(1500):
            req = _case(rng, micro, latents, clouds)
            try:
                _check_answer(stub.Classify(req, timeout=20), f"Classify case {i}")
                codes["OK"] = codes.get("OK", 0) + 1
            except grpc.RpcError as e:
                assert e.code() not in BAD_CODES, (i, e.code(), e.details()[:300])
                assert len(e.details()) < 2000, (i, e.code())
                codes[e.code().name] = codes.get(e.code().name, 0) + 1
        for s in range(6):  # streams of mixed frames; every frame answered, the stream ends OK
            reqs = []
            for j in range(200):
                req = _case(rng, micro, latents, clouds)
                req.seq, req.stream_id = j, f"fuzz-{SEED}-{s}"
                reqs.append(req)
            answers = list(stub.ClassifyStream(iter(reqs), timeout=120))
            assert sorted(a.seq for a in answers) == list(range(200))
            for a in answers:
                if a.HasField("error") and a.error.code:
                    assert grpc.StatusCode.UNKNOWN.value[0] != a.error.code != grpc.StatusCode.INTERNAL.value[0], a
                else:
                    _check_answer(a, f"stream {s} frame {a.seq}")
        # the server still answers valid work exactly
        payloads, expected, _ = encoded(micro, 8)
        assert [stub.Classify(pb2.ClassifyRequest(model=micro, payload=p), timeout=20).label
                for p in payloads] == expected
    growth = _rss_mb(pid) - base
    assert growth < GRPC_RSS_BUDGET_MB, f"server RSS grew {growth:.0f} MB ({codes})"
    assert codes.get("OK", 0) > 0 and codes.get("INVALID_ARGUMENT", 0) > 0, codes


# -- sidecar -------------------------------------------------------------------------------------------
pytest.importorskip("fastapi")
from image_fixtures import SAMPLE_IMAGES, image_repo  # noqa: E402,F401

from splitinfer.sidecar.process import SidecarProcess  # noqa: E402


@pytest.fixture(scope="module")
def sidecar(image_repo, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz-sidecar")
    proc = SidecarProcess(image_repo, extra=["--max-upload-mb", "1", "--max-pixels", str(256 * 192)],
                          log=tmp / "sidecar.log")
    with proc:
        yield proc


def _post(url: str, body: bytes, ctype: str):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _multipart(rng: random.Random, data: bytes, extra: dict | None = None) -> tuple[bytes, str]:
    boundary = f"fuzz{rng.randrange(10**9)}"
    parts = []
    for k, v in (extra or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode())
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    if rng.random() < 0.1:
        body = mutate(rng, body)
    return body, f"multipart/form-data; boundary={boundary}"


def test_fuzz_sidecar_routes(sidecar):
    from PIL import Image
    rng = random.Random(SEED + 1)
    url = sidecar.url
    pngs = [p.read_bytes() for p in SAMPLE_IMAGES[:2]]
    status, bitstream = _post(url + "/v1/images:compress", *_multipart(rng, pngs[0]))
    assert status == 200
    model = Container.unpack(bitstream).digest
    small = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(small, format="PNG")
    pngs.append(small.getvalue())
    pid = sidecar.proc.pid
    for _ in range(5):
        _post(url + "/v1/images:decompress", bitstream, "application/octet-stream")
    base = _rss_mb(pid)
    seen: dict[int, int] = {}
    for i in range(600):
        route = rng.choice(("compress", "decompress", "analyze", "decompress"))
        r = rng.random()
        if route == "decompress":
            if r < 0.5:
                body = mutate(rng, bitstream)
            elif r < 0.8:
                shape = tuple(rng.choice((0, 1, 15, 16, 17, 192, 256, 4096, 65535)) for _ in range(rng.choice((2, 2, 1, 3))))
                body = Container(model, PayloadKind.IMAGE_LATENT, shape, (rng.randbytes(rng.randrange(64)),)).pack()
            else:
                body = rng.randbytes(rng.randrange(200))
            if rng.random() < 0.2:
                body, ctype = _multipart(rng, body)
            else:
                ctype = rng.choice(("application/octet-stream", "image/png", "text/plain"))
        else:
            data = mutate(rng, rng.choice(pngs)) if r < 0.7 else rng.randbytes(rng.randrange(300))
            extra = {}
            if rng.random() < 0.3:
                extra["model"] = rng.choice((model, "nope", "x" * 300, ""))
            if rng.random() < 0.3:
                extra["adaptive"] = rng.choice(("true", "false", "maybe"))
            body, ctype = _multipart(rng, data, extra)
        status, answer = _post(f"{url}/v1/images:{route}", body, ctype)
        seen[status] = seen.get(status, 0) + 1
        assert status < 500, (i, route, status, answer[:300])
    growth = _rss_mb(pid) - base
    assert growth < SIDECAR_RSS_BUDGET_MB, f"sidecar RSS grew {growth:.0f} MB ({seen})"
    assert seen.get(200, 0) > 0 and seen.get(400, 0) > 0, seen
