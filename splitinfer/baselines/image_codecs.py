"""JPEG and WebP anchors through Pillow, measured on the real file bytes.

Settings (Pillow defaults unless stated; recorded in every result as ``settings``):

- JPEG: libjpeg(-turbo) baseline, ``quality = q``, chroma subsampling 4:2:0 (Pillow's default for
  ``quality`` below "keep"), standard (non-optimized) Huffman tables, no progressive mode, no
  EXIF / ICC; the rate counts the whole JFIF file (headers and quantization / Huffman tables).
- WebP: libwebp lossy (VP8), ``quality = q``, ``method = 6`` (slowest, best compression), no
  alpha, no metadata; the rate counts the whole RIFF file.

Rates are ``8 * len(file bytes) / (H * W)`` bits per pixel; PSNR and MS-SSIM from
:mod:`splitinfer.metrics.image_quality` on the decoded RGB.
"""
from __future__ import annotations

import io
import time
from typing import Iterable, Sequence

import numpy as np

from ..metrics.image_quality import ms_ssim, psnr

CODECS = ("jpeg", "webp")
# Qualities whose mean Kodak rate spans about 0.1 (WebP) / 0.18 (JPEG) to 3 bpp. JPEG cannot go
# lower: below quality 3 every quantizer step is clamped at 255 (baseline), so q1 = q2.
DEFAULT_QUALITIES = {
    "jpeg": (1, 3, 5, 8, 10, 15, 20, 25, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95),
    "webp": (0, 1, 3, 5, 10, 15, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 95),
}
SETTINGS = {
    "jpeg": {"library": "Pillow", "format": "JPEG", "subsampling": "4:2:0", "optimize": False,
             "progressive": False},
    "webp": {"library": "Pillow", "format": "WEBP", "lossless": False, "method": 6},
}


def _check_codec(codec: str) -> str:
    c = codec.lower()
    if c not in CODECS:
        raise ValueError(f"unknown codec {codec!r}: use one of {', '.join(CODECS)}")
    return c


def encode(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    """uint8 (H, W, 3) -> the bytes of a JPEG or WebP file."""
    from PIL import Image
    c = _check_codec(codec)
    a = np.asarray(rgb)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {a.dtype} {a.shape}")
    if not 0 <= int(quality) <= 100:
        raise ValueError(f"quality must be in 0..100, got {quality}")
    im = Image.fromarray(np.ascontiguousarray(a), "RGB")
    buf = io.BytesIO()
    if c == "jpeg":
        im.save(buf, format="JPEG", quality=int(quality), subsampling="4:2:0")
    else:
        im.save(buf, format="WEBP", quality=int(quality), method=6, lossless=False)
    return buf.getvalue()


def decode(data: bytes) -> np.ndarray:
    """JPEG or WebP file bytes -> uint8 (H, W, 3)."""
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def measure(rgb: np.ndarray, codec: str, quality: int, with_ms_ssim: bool = True) -> dict:
    """One image at one quality: bytes, bpp, PSNR, MS-SSIM, encode / decode ms."""
    t0 = time.perf_counter()
    data = encode(rgb, codec, quality)
    t1 = time.perf_counter()
    out = decode(data)
    t2 = time.perf_counter()
    H, W = rgb.shape[:2]
    r = {"quality": int(quality), "bytes": len(data), "bpp": 8.0 * len(data) / (H * W),
         "psnr": psnr(rgb, out), "encode_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3}
    if with_ms_ssim:
        try:
            r["ms_ssim"] = ms_ssim(rgb, out)
        except ValueError:  # image too small for 5 scales
            r["ms_ssim"] = None
    return r


def sweep(images: Iterable[tuple[str, np.ndarray]], codec: str,
          qualities: Sequence[int] | None = None, with_ms_ssim: bool = True) -> list[dict]:
    """Every (name, image) at every quality: one record per pair, with ``image`` and pixels."""
    c = _check_codec(codec)
    qs = DEFAULT_QUALITIES[c] if qualities is None else qualities
    rows = []
    for name, rgb in images:
        for q in qs:
            r = measure(rgb, c, q, with_ms_ssim)
            rows.append({"image": name, "height": int(rgb.shape[0]), "width": int(rgb.shape[1]),
                         **r})
    return rows
