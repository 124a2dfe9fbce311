"""The sidecar's state and the work behind the routes: the model repository, limits, reading
uploads into RGB arrays, and the API errors (every failure becomes an :class:`ApiError` with a
status and a stable code; the app turns it into ``{"error": {"code", "message"}}``)."""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import io
import logging
import os
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import anyio
import numpy as np

from ..codec import BitstreamError, Container, UnknownModel
from ..repository import ModelConfig, ModelRepository
from . import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES
from .telemetry import Metrics

log = logging.getLogger("splitinfer.sidecar")

TASK = "image-compression"
#: Seconds the list of image models is cached between re-reads of the repository.
CONFIG_TTL = 2.0
#: The codecs' padding grid: an image is edge-padded to multiples of 16 pixels (the transforms'
#: downsampling), so its cost is that of the padded size.
GRID = 16
#: Largest ratio of the longer image side to the shorter one.
MAX_ASPECT = 64
#: Requests of at least this many (padded) pixels give their memory back when they finish.
TRIM_PIXELS = 512 * 512
#: Image formats the sidecar decodes (Pillow plugin names); anything else is 415.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF", "PPM")


#: Leading bytes of the formats above: an upload that starts like one but does not open is a
#: broken image (400), not something else (415).
SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"),
              (b"GIF89a", "GIF"), (b"BM", "BMP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"))


def sniff(data: bytes) -> str | None:
    """The image format ``data`` starts like, or None."""
    for magic, name in SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


class ApiError(Exception):
    """An answer other than success: HTTP status, stable code, message."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def bitstream_error(e: BitstreamError) -> ApiError:
    """400 naming the BitstreamError subclass (UnknownModel: 404)."""
    name = type(e).__name__
    if isinstance(e, UnknownModel):
        return ApiError(404, "UnknownModel", str(e))
    return ApiError(400, name, f"bitstream rejected ({name}): {e}")


def has_adaptive(cfg: ModelConfig) -> bool:
    return "h_s_q" in cfg.raw.get("files", {})


def analysis_module():
    """``(splitinfer.image.analysis, None)``, or ``(None, why)`` when it cannot be imported."""
    try:
        from ..image import analysis
    except ImportError as e:
        return None, f"{type(e).__name__}: {e}"
    return analysis, None


def padded_pixels(width: int, height: int, grid: int = GRID) -> int:
    """Pixels of a width x height image padded to multiples of ``grid`` (what the codec runs on)."""
    return -(-width // grid) * grid * (-(-height // grid) * grid)


def busy(why: str, retry_after_s: int = 1) -> ApiError:
    return ApiError(503, "Busy", f"{why}; retry later", headers={"Retry-After": str(retry_after_s)})


def _malloc_trim():
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc
        return None


_TRIM = _malloc_trim()


def give_back_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; a no-op elsewhere)."""
    if _TRIM is not None:
        _TRIM(0)


def shrinking_run_options():
    """onnxruntime RunOptions that shrink the CPU memory arena after each run: a large image's
    buffers go back to the system instead of staying reserved for the next one."""
    import onnxruntime as ort
    ro = ort.RunOptions()
    ro.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    return ro


def psnr(a: np.ndarray, b: np.ndarray) -> float | None:
    """PSNR in dB of two uint8 images (None when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return None if mse == 0 else 10.0 * np.log10(255.0 ** 2 / mse)


def encode_png(rgb: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


@dataclass
class Sidecar:
    """Everything the routes share (one per app, at ``app.state.sidecar``)."""
    repo: ModelRepository
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    concurrency: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    metrics: Metrics = field(default_factory=Metrics)
    #: Padded pixels of the images being coded at once (default: max_pixels, one full-size image); a request
    #: that does not fit waits up to queue_timeout_s, then gets 503 with Retry-After.
    max_inflight_pixels: int | None = None
    queue_timeout_s: float = 5.0
    #: Requests waiting for room at once (more: 503 at once).
    max_waiting: int | None = None
    ready: bool = False
    load_error: str | None = None
    loaded: list[str] = field(default_factory=list)
    broken: list[dict[str, str]] = field(default_factory=list)   # [{"path", "error"}]

    def __post_init__(self):
        self.limiter = anyio.CapacityLimiter(self.concurrency)
        self.max_inflight_pixels = int(self.max_inflight_pixels or self.max_pixels)
        self.max_waiting = int(self.max_waiting or 4 * self.concurrency)
        self.inflight_pixels = 0
        self.waiting = 0
        self._room: asyncio.Condition | None = None
        self._load_lock = threading.Lock()
        self._config_lock = threading.Lock()
        self._configs: list[ModelConfig] | None = None
        self._configs_at = 0.0
        self._codecs: dict[tuple[str, int], Any] = {}

    # -- models ----------------------------------------------------------------------------------
    def configs(self, refresh: bool = False) -> list[ModelConfig]:
        """Newest version of each image model, lowest quality first (the repository is re-read
        at most every CONFIG_TTL seconds: requests do not glob and parse every config.json)."""
        now = time.monotonic()
        with self._config_lock:
            if refresh or self._configs is None or now - self._configs_at > CONFIG_TTL:
                newest: dict[str, ModelConfig] = {}
                for c in self.repo.list(TASK):
                    if c.name not in newest or c.version > newest[c.name].version:
                        newest[c.name] = c
                self._configs = sorted(newest.values(),
                                       key=lambda c: (c.raw.get("quality", 0), c.name))
                self._configs_at = now
            return self._configs

    def default_model(self) -> str:
        configs = self.configs()
        if not configs:
            raise ApiError(503, "NoModels", f"no {TASK} models in {self.repo.root}")
        return configs[0].name

    def config(self, name: str | None) -> ModelConfig:
        name = name or self.default_model()
        for refresh in (False, True):  # a model added since the last read is found
            for c in self.configs(refresh):
                if c.name == name:
                    return c
        known = ", ".join(c.name for c in self.configs()) or "none"
        raise ApiError(404, "UnknownModel", f"unknown image model {name!r} (known: {known})")

    def codec(self, name: str | None, adaptive: bool = False):
        """The loaded ImageCodec (404 unknown, 409 adaptive asked of a model without it)."""
        return self._codec(self.config(name), adaptive)

    def codec_for(self, container: Container, adaptive: bool = False):
        """The codec of the model version that made ``container``: found by the model digest it
        carries (a version-1 container: by the model name; 404 when there is none)."""
        if container.version == 1:
            return self.codec(container.model_id, adaptive)
        failure = ApiError(404, "UnknownModel", f"no image model with digest "
                                                f"{container.digest_hex} in {self.repo.root}: the "
                                                "bitstream was made by a model this server does "
                                                "not have")
        digest = container.digest_hex
        cached = [c for c in self.configs() if c.digest.startswith(digest)]
        for cfg in cached or self.repo.by_digest(digest, TASK):  # the same files, any name
            try:
                return self._codec(cfg, adaptive)
            except ApiError as e:  # a broken copy: try the next
                failure = e
        raise failure

    def _codec(self, cfg: ModelConfig, adaptive: bool = False):
        if adaptive and not has_adaptive(cfg):
            raise ApiError(409, "AdaptiveUnavailable", f"model {cfg.name!r} ships no adaptive "
                                                       "entropy bottleneck; use adaptive=false")
        key = (cfg.name, cfg.version)
        codec = self._codecs.get(key)
        if codec is None:
            try:
                codec = self._codecs[key] = self.repo.load(cfg.name, cfg.version)
                if hasattr(codec, "run_options"):
                    codec.run_options = shrinking_run_options()
            except UnknownModel as e:
                raise ApiError(404, "UnknownModel", str(e)) from None
            except (OSError, ValueError, KeyError) as e:
                raise ApiError(503, "ModelUnavailable", f"model {cfg.name!r} failed to load: "
                                                        f"{type(e).__name__}: {e}") from None
        return codec

    def load_all(self) -> None:
        """Load every image model and code one tiny image with each (readiness)."""
        with self._load_lock:
            try:
                loaded = []
                tiny = np.full((16, 16, 3), 128, np.uint8)
                for cfg in self.configs(refresh=True):
                    try:
                        codec = self.codec(cfg.name)
                    except ApiError:  # a broken model (in repo.errors): the others serve
                        continue
                    codec.decompress(codec.compress(tiny))
                    loaded.append(cfg.name)
                broken = [{"path": p, "error": m} for p, m in self.repo.errors]
                for b in broken:
                    if b not in self.broken:
                        log.error("error: %s: %s", b["path"], b["error"])
                self.broken = broken
                if not loaded:
                    raise RuntimeError(f"no {TASK} models in {self.repo.root}"
                                       + (f" ({len(broken)} broken)" if broken else ""))
                self.loaded, self.load_error, self.ready = loaded, None, True
                self.metrics.models.set(len(loaded))
                self.metrics.ready.set(1)
                log.info("sidecar ready: %s", ", ".join(loaded))
            except Exception as e:  # noqa: BLE001 - reported by /readyz
                why = f"{type(e).__name__}: {e}"
                if why != self.load_error:  # once per distinct reason, not per probe
                    log.warning("sidecar not ready: %s", why)
                self.ready, self.load_error = False, why
                self.metrics.ready.set(0)

    # -- work ------------------------------------------------------------------------------------
    @asynccontextmanager
    async def admit(self, pixels: int):
        """Room for coding an image of ``pixels`` padded pixels: waits while the images in
        flight would exceed max_inflight_pixels (at most queue_timeout_s, at most max_waiting
        requests), else 503 Busy with Retry-After. A large request gives its memory back when
        it leaves."""
        cost = min(max(int(pixels), 1), self.max_inflight_pixels)
        if self._room is None:
            self._room = asyncio.Condition()
        room = self._room
        if self.inflight_pixels + cost > self.max_inflight_pixels:
            if self.waiting >= self.max_waiting:
                raise busy(f"{self.waiting} requests are already waiting for the codec")
            self.waiting += 1
            try:
                async with room:
                    await asyncio.wait_for(room.wait_for(
                        lambda: self.inflight_pixels + cost <= self.max_inflight_pixels),
                        self.queue_timeout_s)
            except asyncio.TimeoutError:
                raise busy(f"the codec is busy with {self.inflight_pixels} pixels "
                           f"(limit {self.max_inflight_pixels})") from None
            finally:
                self.waiting -= 1
        self.inflight_pixels += cost
        try:
            yield
        finally:
            self.inflight_pixels -= cost
            async with room:
                room.notify_all()
            if cost >= TRIM_PIXELS:
                await anyio.to_thread.run_sync(give_back_memory)

    async def run(self, op: str, model: str, fn: Callable[..., Any], *args) -> Any:
        """Run CPU-heavy codec work in a worker thread (at most ``concurrency`` at once)."""
        def timed():
            t = time.perf_counter()
            try:
                return fn(*args)
            finally:
                self.metrics.codec_seconds.labels(op, model).observe(time.perf_counter() - t)
        return await anyio.to_thread.run_sync(timed, limiter=self.limiter)

    def check_upload(self, data: bytes) -> None:
        if len(data) > self.max_upload_bytes:
            raise too_large(len(data), self.max_upload_bytes)
        if not data:
            raise ApiError(400, "EmptyUpload", "the upload is empty")

    def check_pixels(self, width: int, height: int) -> int:
        """The padded pixel count of a width x height image (its cost); 413 when it is over
        max_pixels or more elongated than MAX_ASPECT, 400 for an empty one. Called on headers,
        before anything of that size is allocated."""
        if width < 1 or height < 1:
            raise ApiError(400, "UnreadableImage", f"image of {width}x{height} holds no pixels")
        if max(width, height) > MAX_ASPECT * min(width, height):
            raise ApiError(413, "AspectRatioTooLarge", f"image of {width}x{height} is more elongated "
                                                       f"than {MAX_ASPECT}:1")
        padded = padded_pixels(width, height)
        if padded > self.max_pixels:
            raise ApiError(413, "TooManyPixels", f"image of {width}x{height} = {width * height} "
                                                 f"pixels ({padded} once padded to multiples of "
                                                 f"{GRID}) exceeds this server's limit of "
                                                 f"{self.max_pixels} pixels")
        return padded

    def image_pixels(self, data: bytes) -> int:
        """The padded pixel count of an upload, from its header alone (the checks of read_image
        before decoding)."""
        return self._open(data, lambda im: self.check_pixels(*im.size))

    def read_image(self, data: bytes) -> np.ndarray:
        """Upload bytes -> uint8 (H, W, 3). 415 not an image, 413 too many pixels, 400 unreadable."""
        return self._open(data, self._decode)

    def _open(self, data: bytes, then: Callable[[Any], Any]) -> Any:
        from PIL import Image, UnidentifiedImageError
        self.check_upload(data)
        try:
            im = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except UnidentifiedImageError:
            if sniff(data):
                raise ApiError(400, "UnreadableImage", f"the upload starts like a {sniff(data)} "
                                                       "image but cannot be read (truncated or "
                                                       "corrupt)") from None
            raise ApiError(415, "NotAnImage", "the upload is not an image in a format this "
                                              f"server reads ({', '.join(IMAGE_FORMATS)})") from None
        except Image.DecompressionBombError as e:
            raise ApiError(413, "TooManyPixels", str(e)) from None
        except (OSError, ValueError, SyntaxError, EOFError) as e:
            raise ApiError(400, "UnreadableImage", f"cannot read the image header: {e}") from None
        with im:
            return then(im)

    def _decode(self, im) -> np.ndarray:
        from PIL import Image, ImageOps
        self.check_pixels(*im.size)
        fmt = im.format
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: keep the top byte
                im = Image.fromarray((np.asarray(im, np.uint32) >> 8).astype(np.uint8), "L")
            rgb = np.asarray(im.convert("RGB"), np.uint8)
        except Image.DecompressionBombError as e:
            raise ApiError(413, "TooManyPixels", str(e)) from None
        except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError) as e:
            msg = str(e) or type(e).__name__
            raise ApiError(400, "UnreadableImage", f"cannot decode the {fmt} image "
                                                   f"(truncated or corrupt): {msg}") from None
        if rgb.ndim != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
            raise ApiError(400, "UnreadableImage", f"image of shape {rgb.shape} holds no pixels")
        return np.ascontiguousarray(rgb)

    def parse_bitstream(self, data: bytes) -> Container:
        self.check_upload(data)
        try:
            c = Container.unpack(data)
        except BitstreamError as e:
            raise bitstream_error(e) from None
        if len(c.shape) == 2:
            self.check_pixels(c.shape[1], c.shape[0])
        return c

    def container_pixels(self, c: Container) -> int:
        return self.check_pixels(c.shape[1], c.shape[0]) if len(c.shape) == 2 else 1


def too_large(size: int | None, limit: int) -> ApiError:
    got = f"{size} bytes" if size is not None else "more"
    return ApiError(413, "PayloadTooLarge", f"upload of {got} exceeds this server's limit of "
                                            f"{limit} bytes ({limit / 2**20:.1f} MiB)")


def static_dir() -> Path:
    return Path(__file__).resolve().parent / "static"
