"""The image codec sidecar in process (FastAPI TestClient) over a tiny exported model repository:
every route, the compress -> decompress round trip against the codec itself, every error status
(never a 500), the metrics."""
from __future__ import annotations

import io
import random
import re

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from image_fixtures import ADAPTIVE_MODEL, SAMPLE_IMAGES, STATIC_MODEL, image_repo  # noqa: E402,F401
from PIL import Image  # noqa: E402

from splitinfer.codec import Container, PayloadKind  # noqa: E402
from splitinfer.image.data import load_rgb  # noqa: E402
from splitinfer.repository import ModelRepository  # noqa: E402
from splitinfer.sidecar import DEFAULT_MAX_UPLOAD_BYTES  # noqa: E402
from splitinfer.sidecar.app import MULTIPART_SLACK, create_app  # noqa: E402
from splitinfer.sidecar.schemas import Analysis, ErrorBody, ModelList  # noqa: E402

SAMPLE = SAMPLE_IMAGES[0]
MAX_UPLOAD = 200_000          # the bundled PNGs are ~80 kB
MAX_PIXELS = 256 * 192        # exactly a bundled image


@pytest.fixture(scope="module")
def client(image_repo):
    app = create_app(image_repo, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS)
    with TestClient(app) as c:
        r = c.get("/readyz")
        for _ in range(600):  # the models load in a background thread at startup
            if r.status_code == 200:
                break
            r = c.get("/readyz")
        assert r.status_code == 200, r.text
        yield c


@pytest.fixture(scope="module")
def repo(image_repo):
    return ModelRepository(image_repo)


@pytest.fixture(scope="module")
def sample_png() -> bytes:
    return SAMPLE.read_bytes()


@pytest.fixture(scope="module")
def bitstream(client, sample_png) -> bytes:
    r = client.post("/v1/images:compress", files={"file": ("a.png", sample_png, "image/png")})
    assert r.status_code == 200, r.text
    return r.content


def png_bytes(rgb: np.ndarray, mode: str = "RGB", **save) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).convert(mode).save(buf, format=save.pop("format", "PNG"), **save)
    return buf.getvalue()


def decode_png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def error(r, status: int, code: str | None = None) -> str:
    """Assert a uniform JSON error body with this status (and code); returns the message."""
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = ErrorBody.model_validate(r.json())
    assert set(r.json()) == {"error"} and set(r.json()["error"]) == {"code", "message"}
    if code is not None:
        assert body.error.code == code, body
    assert body.error.message
    return body.error.message


def compress(client, data: bytes, name="a.png", **params):
    return client.post("/v1/images:compress", params=params,
                       files={"file": (name, data, "application/octet-stream")})


# ------------------------------------------------------------------------------- routes


def test_health_ready_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and set(ready["models"]) == {ADAPTIVE_MODEL, STATIC_MODEL}
    models = ModelList.model_validate(client.get("/v1/models").json())
    assert models.default == ADAPTIVE_MODEL == models.models[0].name  # lowest quality first
    by_name = {m.name: m for m in models.models}
    assert by_name[ADAPTIVE_MODEL].adaptive and not by_name[STATIC_MODEL].adaptive
    assert by_name[ADAPTIVE_MODEL].default and not by_name[STATIC_MODEL].default
    assert (by_name[STATIC_MODEL].quality, by_name[STATIC_MODEL].M) == (2, 8)
    assert models.analysis and models.max_upload_bytes == MAX_UPLOAD
    assert models.max_pixels == MAX_PIXELS


def test_compress_matches_the_codec_and_round_trips(client, repo, sample_png, bitstream):
    rgb = load_rgb(SAMPLE)
    codec = repo.load(ADAPTIVE_MODEL)
    assert bitstream == codec.compress(rgb)  # the default model, static distributions
    r = compress(client, sample_png, name="photo.png")
    h = r.headers
    assert r.headers["content-type"] == "application/octet-stream"
    assert h["x-splitinfer-model"] == ADAPTIVE_MODEL and h["x-splitinfer-adaptive"] == "false"
    assert int(h["x-splitinfer-bytes"]) == len(r.content)
    assert (int(h["x-splitinfer-width"]), int(h["x-splitinfer-height"])) == (256, 192)
    assert float(h["x-splitinfer-bpp"]) == pytest.approx(8 * len(r.content) / (256 * 192), abs=1e-6)
    assert 'filename="photo.splt"' in h["content-disposition"]

    expected = codec.decompress(bitstream)
    raw = client.post("/v1/images:decompress", content=bitstream,
                      headers={"content-type": "application/octet-stream"})
    assert raw.status_code == 200 and raw.headers["content-type"] == "image/png"
    assert np.array_equal(decode_png(raw.content), expected)
    assert raw.headers["x-splitinfer-model"] == ADAPTIVE_MODEL
    assert (raw.headers["x-splitinfer-width"], raw.headers["x-splitinfer-height"]) == ("256", "192")
    multi = client.post("/v1/images:decompress", files={"file": ("a.splt", bitstream)})
    assert multi.status_code == 200 and multi.content == raw.content


def test_model_and_adaptive_as_query_or_form(client, repo, sample_png):
    rgb = load_rgb(SAMPLE)
    q = compress(client, sample_png, model=STATIC_MODEL)
    f = client.post("/v1/images:compress", data={"model": STATIC_MODEL},
                    files={"file": ("a.png", sample_png, "image/png")})
    assert q.status_code == f.status_code == 200
    assert q.headers["x-splitinfer-model"] == f.headers["x-splitinfer-model"] == STATIC_MODEL
    assert q.content == f.content == repo.load(STATIC_MODEL).compress(rgb)

    codec = repo.load(ADAPTIVE_MODEL)
    for r in (compress(client, sample_png, adaptive="true"),
              client.post("/v1/images:compress", data={"adaptive": "true"},
                          files={"file": ("a.png", sample_png, "image/png")})):
        assert r.status_code == 200 and r.headers["x-splitinfer-adaptive"] == "true"
        assert len(Container.unpack(r.content).payloads) == 2  # [q, y]
        assert r.content == codec.compress(rgb, adaptive=True)
        d = client.post("/v1/images:decompress", content=r.content)
        assert d.status_code == 200 and d.headers["x-splitinfer-adaptive"] == "true"
        # the same y_hat as the static coding, so the same image
        assert np.array_equal(decode_png(d.content), codec.decompress(codec.compress(rgb)))


@pytest.mark.parametrize("mode", ["RGBA", "L", "P", "I;16", "JPEG", "1x1"])
def test_other_image_kinds(client, repo, mode):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    if mode == "JPEG":
        data = png_bytes(rgb, format="JPEG", quality=90)
    elif mode == "1x1":
        rgb = rgb[:1, :1]
        data = png_bytes(rgb)
    elif mode == "I;16":
        data = png_bytes((rgb[..., 0].astype(np.uint16) * 257), "I;16")
    else:
        data = png_bytes(rgb, mode)
    r = compress(client, data)
    assert r.status_code == 200, r.text
    H, W = rgb.shape[:2]
    assert (int(r.headers["x-splitinfer-width"]), int(r.headers["x-splitinfer-height"])) == (W, H)
    d = client.post("/v1/images:decompress", content=r.content)
    assert d.status_code == 200 and decode_png(d.content).shape == (H, W, 3)


def test_analyze(client, repo, sample_png):
    r = client.post("/v1/images:analyze", files={"file": ("a.png", sample_png, "image/png")})
    assert r.status_code == 200, r.text
    a = Analysis.model_validate(r.json())
    assert (a.model, a.height, a.width, a.pixels) == (ADAPTIVE_MODEL, 192, 256, 192 * 256)
    d = a.distributions
    C, B = 8, len(d.offsets)
    assert len(d.centres) == C and B > 1
    for grid in (d.ideal, d.static, d.adaptive):
        assert len(grid) == C and all(len(row) == B for row in grid)
    rgb = load_rgb(SAMPLE)
    codec = repo.load(ADAPTIVE_MODEL)
    static, adaptive = codec.compress(rgb), codec.compress(rgb, adaptive=True)
    rec = a.reconstruction
    assert rec.static.bytes == len(static) and rec.adaptive.bytes == len(adaptive)
    assert rec.static.bpp == pytest.approx(8 * len(static) / (256 * 192))
    mse = np.mean((rgb.astype(float) - codec.decompress(static).astype(float)) ** 2)
    assert rec.static.psnr == pytest.approx(10 * np.log10(255 ** 2 / mse), abs=1e-3)
    assert rec.adaptive.psnr == rec.static.psnr
    assert a.bytes["adaptive"] is not None and a.bpp["static"] > 0

    # a model without the adaptive part: the static and ideal sides only
    r = client.post("/v1/images:analyze", params={"model": STATIC_MODEL},
                    files={"file": ("a.png", sample_png, "image/png")})
    assert r.status_code == 200, r.text
    a = Analysis.model_validate(r.json())
    assert a.distributions.adaptive is None and a.reconstruction.adaptive is None
    assert a.bytes["adaptive"] is None and a.distributions.static


def test_page_and_static_files(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', r.text):
        a = client.get(asset)
        assert a.status_code == 200, asset
    js = client.get("/static/app.js").text
    for route in ("/v1/images:compress", "/v1/images:decompress", "/v1/images:analyze",
                  "/v1/models"):
        assert route in js
    from splitinfer.sidecar.service import static_dir
    for f in static_dir().iterdir():  # no CDN, no external fetches
        assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", f.read_text()), f.name


def test_openapi_documents_every_route_and_error(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    assert {"/v1/images:compress", "/v1/images:decompress", "/v1/images:analyze", "/v1/models",
            "/healthz", "/readyz", "/metrics"} <= set(paths)
    compress_op = paths["/v1/images:compress"]["post"]
    assert {"400", "404", "409", "413", "415", "422"} <= set(compress_op["responses"])
    assert "X-Splitinfer-Bpp" in compress_op["responses"]["200"]["headers"]
    for path, ops in paths.items():
        for op in ops.values():
            for status, resp in op["responses"].items():
                if status.startswith(("4", "5")):
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, status)


# ------------------------------------------------------------------------------- errors


def test_oversized_upload_is_413(client, sample_png):
    # over the body cap: refused before the app reads it
    error(compress(client, b"\0" * (MAX_UPLOAD + MULTIPART_SLACK + 1)), 413, "PayloadTooLarge")
    error(client.post("/v1/images:decompress", content=b"SPLT" + b"\0" * (MAX_UPLOAD + MULTIPART_SLACK)),
          413, "PayloadTooLarge")
    # over the file limit, within the multipart slack
    error(compress(client, b"\0" * (MAX_UPLOAD + 10)), 413, "PayloadTooLarge")
    error(client.post("/v1/images:analyze", files={"file": ("a", b"\0" * (MAX_UPLOAD + 10))}),
          413, "PayloadTooLarge")


def test_too_many_pixels_is_413(client, repo):
    big = png_bytes(np.zeros((193, 256, 3), np.uint8))  # one row over the limit, a tiny file
    assert len(big) < MAX_UPLOAD
    assert "pixels" in error(compress(client, big), 413, "TooManyPixels")
    error(client.post("/v1/images:analyze", files={"file": ("a", big)}), 413, "TooManyPixels")
    # a bitstream announcing too many pixels, refused from its header
    codec = repo.load(ADAPTIVE_MODEL)
    y = codec.analysis(np.zeros((16, 16, 3), np.uint8))
    huge = Container.unpack(codec.pack(y, 16, 16))
    forged = Container(huge.digest, PayloadKind.IMAGE_LATENT, (4000, 4000), huge.payloads).pack()
    error(client.post("/v1/images:decompress", content=forged), 413, "TooManyPixels")


def test_not_an_image_is_415_and_broken_images_400(client, sample_png):
    assert "not an image" in error(compress(client, b"hello, world" * 10), 415, "NotAnImage")
    error(compress(client, b"%PDF-1.4\n" + b"x" * 100), 415, "NotAnImage")
    error(client.post("/v1/images:analyze", files={"file": ("a.txt", b"text")}), 415, "NotAnImage")
    truncated = sample_png[: len(sample_png) // 2]
    assert "truncated" in error(compress(client, truncated), 400, "UnreadableImage")
    error(compress(client, sample_png[:30]), 400)          # header only
    error(compress(client, b""), 400, "EmptyUpload")
    corrupt = bytearray(sample_png)
    corrupt[200:260] = b"\xff" * 60                        # inside the IDAT stream
    error(compress(client, bytes(corrupt)), 400, "UnreadableImage")


@pytest.mark.parametrize("how, code", [
    ("flip", "CorruptPayload"), ("truncate", "TruncatedBitstream"), ("magic", "BadMagic"),
    ("trailing", "TrailingData"), ("empty", "TruncatedBitstream"), ("version", "UnsupportedVersion"),
])
def test_corrupt_bitstream_is_400_naming_the_error(client, bitstream, how, code):
    data = bytearray(bitstream)
    if how == "flip":
        data[-3] ^= 0x5A
    elif how == "truncate":
        data = data[:-7]
    elif how == "magic":
        data[:4] = b"\x89PNG"
    elif how == "trailing":
        data += b"\0\0"
    elif how == "empty":
        data = bytearray()
    elif how == "version":
        data[2] = 99                                       # the version byte
    r = client.post("/v1/images:decompress", content=bytes(data))
    if how == "empty":
        error(r, 400, "EmptyUpload")
        return
    assert code in error(r, 400, code)
    m = client.post("/v1/images:decompress", files={"file": ("x.splt", bytes(data))})
    error(m, 400, code)


def test_mutated_bitstreams_never_500(client, bitstream, repo):
    """Random byte flips, cuts and splices of real static and adaptive bitstreams: always a 4xx
    JSON error (or a 200 when a mutation happens to be valid), never a server error."""
    rng = random.Random(1)
    adaptive = repo.load(ADAPTIVE_MODEL).compress(load_rgb(SAMPLE), adaptive=True)
    seen = set()
    for i in range(120):
        data = bytearray(bitstream if i % 2 else adaptive)
        for _ in range(rng.randint(1, 3)):
            op, pos = rng.random(), rng.randrange(len(data))
            if op < 0.5:
                data[pos] ^= 1 << rng.randrange(8)
            elif op < 0.7:
                data = data[:pos]
            elif op < 0.85:
                data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            else:
                del data[pos:pos + rng.randint(1, 8)]
            if not data:
                data = bytearray(b"S")
        r = client.post("/v1/images:decompress", content=bytes(data))
        assert r.status_code in (200, 400, 404, 409, 413), (r.status_code, r.text)
        if r.status_code != 200:
            seen.add(ErrorBody.model_validate(r.json()).error.code)
    assert {"CorruptPayload", "TruncatedBitstream"} <= seen


def test_mutated_images_never_500(client, sample_png):
    """Random damage to a real PNG and JPEG: a 200 (the decoder coped), or 400 / 415, never 500."""
    rng = random.Random(2)
    jpeg = png_bytes(load_rgb(SAMPLE), format="JPEG", quality=80)
    statuses = set()
    for i in range(40):
        data = bytearray(sample_png if i % 2 else jpeg)
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(len(data))
            if rng.random() < 0.7:
                data[pos] ^= 1 << rng.randrange(8)
            else:
                data = data[:max(pos, 1)]
        r = compress(client, bytes(data))
        assert r.status_code in (200, 400, 415), (r.status_code, r.text)
        statuses.add(r.status_code)
    assert 400 in statuses


def test_unknown_model_is_404(client, sample_png, bitstream):
    assert "nope" in error(compress(client, sample_png, model="nope"), 404, "UnknownModel")
    error(client.post("/v1/images:analyze", params={"model": "nope"},
                      files={"file": ("a.png", sample_png)}), 404, "UnknownModel")
    c = Container.unpack(bitstream)
    other = Container("0123456789abcdef", c.kind, c.shape, c.payloads).pack()
    assert "0123456789abcdef" in error(client.post("/v1/images:decompress", content=other), 404,
                                       "UnknownModel")


def test_adaptive_unavailable_is_409(client, repo, sample_png):
    msg = error(compress(client, sample_png, model=STATIC_MODEL, adaptive="true"), 409,
                "AdaptiveUnavailable")
    assert STATIC_MODEL in msg
    # an adaptive bitstream relabelled for the model without the adaptive part
    c = Container.unpack(repo.load(ADAPTIVE_MODEL).compress(load_rgb(SAMPLE), adaptive=True))
    relabelled = Container(repo.config(STATIC_MODEL).digest, c.kind, c.shape, c.payloads).pack()
    error(client.post("/v1/images:decompress", content=relabelled), 409, "AdaptiveUnavailable")


def test_invalid_requests_are_uniform_errors(client):
    error(client.post("/v1/images:compress"), 422, "ValidationError")
    error(client.post("/v1/images:compress", params={"adaptive": "maybe"},
                      files={"file": ("a.png", b"x")}), 422, "ValidationError")
    error(client.post("/v1/images:decompress", files={"other": ("a", b"SPLT")}), 422,
          "ValidationError")
    error(client.get("/v1/images:compress"), 405, "MethodNotAllowed")
    error(client.get("/v1/nothing"), 404, "NotFound")
    error(client.post("/v1/images:decompress", content=b"x",
                      headers={"content-length": "abc"}), 400)


# ------------------------------------------------------------------------------- metrics


def sample_value(text: str, name: str, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def test_metrics_move(client, sample_png):
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    before = r.text
    compress(client, sample_png)
    compress(client, b"not an image")
    compress(client, b"\0" * (MAX_UPLOAD + MULTIPART_SLACK + 1))  # refused before routing
    after = client.get("/metrics").text
    route = "/v1/images:compress"
    for name, labels, delta in [
        ("splitinfer_sidecar_requests_total", {"route": route, "status": "200"}, 1),
        ("splitinfer_sidecar_requests_total", {"route": route, "status": "415"}, 1),
        ("splitinfer_sidecar_requests_total", {"route": route, "status": "413"}, 1),
        ("splitinfer_sidecar_errors_total", {"route": route, "code": "PayloadTooLarge"}, 1),
        ("splitinfer_sidecar_errors_total", {"route": route, "code": "NotAnImage"}, 1),
        ("splitinfer_sidecar_images_total", {"op": "compress", "model": ADAPTIVE_MODEL}, 1),
        ("splitinfer_sidecar_pixels_total", {"op": "compress", "model": ADAPTIVE_MODEL}, 256 * 192),
        ("splitinfer_sidecar_bpp_count", {"model": ADAPTIVE_MODEL}, 1),
        ("splitinfer_sidecar_codec_seconds_count", {"op": "compress", "model": ADAPTIVE_MODEL}, 1),
        ("splitinfer_sidecar_request_seconds_count", {"route": route}, 3),
    ]:
        assert sample_value(after, name, **labels) - sample_value(before, name, **labels) == delta, name
    assert sample_value(after, "splitinfer_sidecar_models_loaded") == 2
    assert sample_value(after, "splitinfer_sidecar_ready") == 1
    assert sample_value(after, "splitinfer_sidecar_bitstream_bytes_total", op="compress") > 0


def test_codec_work_runs_in_worker_threads(client, sample_png, monkeypatch):
    """The CPU-heavy calls run off the event loop, in anyio's worker threads (a spy that calls
    through to the real codec)."""
    import threading
    codec = client.app.state.sidecar.codec(None)
    threads = []
    for name in ("compress", "decompress"):
        real = getattr(codec, name)

        def spy(*args, _real=real, **kw):
            threads.append(threading.current_thread().name)
            return _real(*args, **kw)
        monkeypatch.setattr(codec, name, spy)
    r = compress(client, sample_png)
    assert client.post("/v1/images:decompress", content=r.content).status_code == 200
    assert threads == ["AnyIO worker thread"] * 2


def test_apps_keep_their_own_metrics(image_repo):
    a, b = create_app(image_repo), create_app(image_repo)
    assert a.state.sidecar.metrics.registry is not b.state.sidecar.metrics.registry
    assert a.state.sidecar.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES


def test_not_ready_without_models(tmp_path):
    with TestClient(create_app(tmp_path, load_on_startup=False)) as c:
        assert c.get("/healthz").status_code == 200
        assert "no image-compression models" in error(c.get("/readyz"), 503, "NotReady")
        assert c.get("/v1/models").json()["models"] == []
        error(compress(c, b"x"), 503, "NoModels")


def test_broken_models_are_skipped_and_listed_in_readiness(image_repo, tmp_path, sample_png):
    """A truncated config.json and a model with an altered file: the sidecar serves the good
    model and names the broken ones (file and fix) in /readyz."""
    import shutil
    root = tmp_path / "models"
    shutil.copytree(image_repo, root)
    cfg = root / STATIC_MODEL / "1" / "config.json"
    cfg.write_text(cfg.read_text()[:150])
    shutil.copytree(root / ADAPTIVE_MODEL, root / "image-tiny-altered")
    altered = root / "image-tiny-altered" / "1"
    text = (altered / "config.json").read_text().replace(ADAPTIVE_MODEL, "image-tiny-altered")
    (altered / "config.json").write_text(text)
    (altered / "g_s.onnx").write_bytes((altered / "g_s.onnx").read_bytes() + b"\0")
    with TestClient(create_app(root, load_on_startup=False)) as c:
        r = c.get("/readyz")
        assert r.status_code == 200, r.text
        ready = r.json()
        assert ready["models"] == [ADAPTIVE_MODEL]
        broken = {b["path"]: b["error"] for b in ready["broken"]}
        assert set(broken) == {str(cfg), str(altered / "g_s.onnx")}
        assert "not valid JSON" in broken[str(cfg)] and "sha256" in broken[str(altered / "g_s.onnx")]
        assert c.get("/v1/models").status_code == 200
        r = compress(c, sample_png, model=ADAPTIVE_MODEL)
        assert r.status_code == 200
        assert c.post("/v1/images:decompress", content=r.content).status_code == 200
        error(compress(c, sample_png, model="image-tiny-altered"), 503, "ModelUnavailable")


# ------------------------------------------------------------------------------- command line


def test_cli_parser():
    import argparse

    from splitinfer.sidecar.cli import add_parser, run
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command"))
    a = p.parse_args(["sidecar", "--host", "0.0.0.0", "--port", "9", "--models", "m",
                      "--max-upload-mb", "2.5", "--max-pixels", "1000", "--workers", "2"])
    assert (a.command, a.host, a.port, a.models, a.max_upload_mb, a.max_pixels, a.workers) == \
        ("sidecar", "0.0.0.0", 9, "m", 2.5, 1000, 2)
    assert a.func is run
    d = p.parse_args(["sidecar"])
    assert (d.host, d.port, d.workers) == ("127.0.0.1", 8080, 1)
    assert int(d.max_upload_mb * 2**20) == DEFAULT_MAX_UPLOAD_BYTES


def test_splitinfer_command_has_sidecar():
    """`splitinfer sidecar` (splitinfer/cli.py registers splitinfer.sidecar.cli.add_parser)."""
    from splitinfer.cli import build_parser
    a = build_parser().parse_args(["sidecar", "--port", "8081"])
    assert a.port == 8081 and a.func.__module__ == "splitinfer.sidecar.cli"
