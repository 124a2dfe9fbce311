"""The sidecar under hostile clients: the cost of a request bounded from headers (padded pixels,
aspect ratio, a container's declared shape), work in flight bounded (503 Busy with Retry-After),
memory given back after large requests, slow and concurrent uploads bounded (408, 503), and
startup failures as one error line."""
from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402
from image_fixtures import image_repo  # noqa: E402,F401
from PIL import Image  # noqa: E402

from splitinfer.codec import Container, PayloadKind  # noqa: E402
from splitinfer.repository import ModelRepository  # noqa: E402
from splitinfer.sidecar.app import create_app  # noqa: E402
from splitinfer.sidecar.process import SidecarProcess  # noqa: E402
from splitinfer.sidecar.service import ApiError, Sidecar  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 256 * 192
IMAGE_MODEL = "image-factorized-q1"  # a shipped codec: real memory and time per pixel


def png(h: int, w: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def forged(model: str, h: int, w: int, root=None) -> bytes:
    """A container of ``model`` (a name in the repository at ``root``, default the shipped one)
    declaring an h x w image with an empty latent payload (25 bytes for 2048 x 2048: the range
    decoder reads zeros, the most probable symbols)."""
    digest = ModelRepository(root).config(model).digest
    return Container(digest, PayloadKind.IMAGE_LATENT, (h, w), (b"",)).pack()


@pytest.fixture(scope="module")
def client(image_repo):
    app = create_app(image_repo, max_upload_bytes=200_000, max_pixels=MAX_PIXELS)
    with TestClient(app) as c:
        for _ in range(600):
            if c.get("/readyz").status_code == 200:
                break
        yield c


def _code(r):
    return r.json()["error"]["code"]


def test_the_pixel_limit_counts_the_padding(client):
    # 1 x 49,152 pixels is within 256 x 192 = 49,152, but the codec pads it to 16 x 49,152
    r = client.post("/v1/images:compress", files={"file": ("a.png", png(1, MAX_PIXELS))})
    assert r.status_code == 413 and _code(r) in ("TooManyPixels", "AspectRatioTooLarge"), r.text
    r = client.post("/v1/images:compress", files={"file": ("a.png", png(17, 16 * 11))})  # pads to 32 x 176
    assert r.status_code == 200, r.text
    r = client.post("/v1/images:compress", files={"file": ("a.png", png(190, 250))})     # pads to 192 x 256
    assert r.status_code == 200, r.text
    r = client.post("/v1/images:compress", files={"file": ("a.png", png(185, 257))})     # pads to 192 x 272
    assert r.status_code == 413 and "padded" in r.json()["error"]["message"]


def test_elongated_images_are_refused(client):
    r = client.post("/v1/images:analyze", files={"file": ("a.png", png(16, 16 * 65))})
    assert r.status_code == 413 and _code(r) == "AspectRatioTooLarge", r.text


def test_a_container_declaring_a_costly_shape_is_refused_from_its_header(client, image_repo):
    model = client.get("/v1/models").json()["default"]
    for h, w in ((1, MAX_PIXELS), (4, 4096), (193, 256)):
        t0 = time.perf_counter()
        r = client.post("/v1/images:decompress", content=forged(model, h, w, image_repo))
        assert r.status_code == 413, (h, w, r.status_code, r.text)
        assert time.perf_counter() - t0 < 2.0


def test_work_in_flight_is_bounded_busy_with_retry_after(image_repo):
    """Admission: a request that does not fit waits up to queue_timeout_s, then 503 Busy."""
    from splitinfer.repository import ModelRepository
    sc = Sidecar(ModelRepository(image_repo), max_pixels=MAX_PIXELS, concurrency=1,
                 max_inflight_pixels=MAX_PIXELS, queue_timeout_s=0.2, max_waiting=1)

    async def go():
        order = []
        async with sc.admit(MAX_PIXELS):
            with pytest.raises(ApiError) as e:         # waits 0.2 s, then Busy
                async with sc.admit(16 * 16):
                    pass
            assert e.value.status == 503 and e.value.headers["Retry-After"]
            waiter = asyncio.ensure_future(_hold(sc, 16 * 16, order))
            await asyncio.sleep(0.05)
            with pytest.raises(ApiError) as e:         # one already waits: Busy at once
                async with sc.admit(16 * 16):
                    pass
            assert e.value.status == 503
            order.append("released")
        await waiter
        assert order == ["released", "admitted"]
        assert sc.inflight_pixels == 0 and sc.waiting == 0
    asyncio.run(go())


async def _hold(sc, pixels, order):
    async with sc.admit(pixels):
        order.append("admitted")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _sidecar_process(tmp_path_factory, extra):
    """The sidecar process over the shipped image codecs, 1024 x 1024 at most."""
    cfg = ROOT / "models" / IMAGE_MODEL / "1" / "config.json"
    if not cfg.exists():
        pytest.skip(f"no shipped {IMAGE_MODEL}")
    repo = tmp_path_factory.mktemp("images")
    (repo / IMAGE_MODEL).symlink_to(cfg.parent.parent)
    tmp = tmp_path_factory.mktemp("sidecar")
    return SidecarProcess(repo, extra=["--max-pixels", str(1024 * 1024), "--concurrency", "1", *extra],
                          log=tmp / "sidecar.log")


@pytest.fixture(scope="module")
def real_sidecar(tmp_path_factory):
    with _sidecar_process(tmp_path_factory, []) as proc:
        yield proc


@pytest.fixture(scope="module")
def upload_sidecar(tmp_path_factory):
    with _sidecar_process(tmp_path_factory, ["--body-timeout-s", "1.5", "--max-uploads", "2"]) as proc:
        yield proc


def _post(url, body, ctype="application/octet-stream", timeout=120):
    req = urllib.request.Request(url, data=body, headers={"Content-Type": ctype}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_memory_is_given_back_after_a_large_request(real_sidecar):
    pid = real_sidecar.proc.pid
    base = _rss_mb(pid)
    data = forged(IMAGE_MODEL, 1024, 1024)
    for _ in range(2):
        status, body, _ = _post(real_sidecar.url + "/v1/images:decompress", data)
        assert status == 200, body[:300]
    time.sleep(0.5)
    held = _rss_mb(pid) - base
    assert held < 250, f"{held:.0f} MB still held after two 1024 x 1024 decodes"


def _raw_request(port: int, head: bytes, body: bytes = b"", wait_s: float = 10.0):
    """Send a request head and part of a body, then read the answer (or time out)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=wait_s)
    s.sendall(head + body)
    return s


def _status(s: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split()[1]) if data else 0


def test_a_slow_body_is_408(upload_sidecar):
    port = upload_sidecar.port
    head = (b"POST /v1/images:decompress HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
            b"\r\nContent-Length: 100000\r\n\r\n")
    t0 = time.monotonic()
    s = _raw_request(port, head, b"SPLT")
    assert _status(s) == 408
    assert time.monotonic() - t0 < 6


def test_concurrent_uploads_are_bounded(upload_sidecar):
    port = upload_sidecar.port
    head = (b"POST /v1/images:decompress HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream"
            b"\r\nContent-Length: 100000\r\n\r\n")
    slow = [_raw_request(port, head, b"SPLT") for _ in range(2)]
    time.sleep(0.3)
    third = _raw_request(port, head, b"SPLT")
    assert _status(third) == 503
    assert sorted(_status(s) for s in slow) == [408, 408]


def test_a_streamed_body_over_the_limit_is_413_before_it_ends(upload_sidecar):
    """Chunked, no Content-Length: refused once the bytes received pass the cap."""
    port = upload_sidecar.port
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"POST /v1/images:decompress HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
              b"Content-Type: application/octet-stream\r\n\r\n")
    chunk = b"\0" * 65536
    status = 0
    try:
        for _ in range(2000):  # up to 128 MiB, far over the 20 MiB limit
            s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    except OSError:  # the server answered and closed
        pass
    status = _status(s)
    assert status == 413


def _sidecar_cmd(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "splitinfer.sidecar", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)


def test_startup_failures_are_one_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for args, want in ((["--port", str(port)], "cannot listen"),
                           (["--models", str(tmp_path / "nope")], "no such folder"),
                           (["--max-pixels", "0"], "--max-pixels")):
            r = _sidecar_cmd(*args)
            assert r.returncode == 2, r.stderr[-2000:]
            assert "Traceback" not in r.stderr
            lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
            assert len(lines) == 1 and want in lines[0], r.stderr[-2000:]
