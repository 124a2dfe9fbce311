"""Test images: Kodak (default ``../shared/datasets/kodak``), or the shipped sample.

A test image becomes a square *canvas* (default 384 px) whose central ``crop`` (224 px) is the
reference view; a motion moves the canvas about its centre and the central crop of the result is
the moved view, so real picture content (not black) comes in at the borders, as with a camera.
Canvas: the image's central square, resized to the canvas size when at least that large (Kodak's
512 px -> 384: the reference view is the central 299 px of the image resized to 224), otherwise
kept at its scale and reflect-padded (the shipped 224 px sample).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["SAMPLE_DIR", "sample_paths", "default_data_dir", "default_video_dir", "load_image",
           "make_canvas", "centre_crop", "list_images"]

from ..data import DATASETS  # noqa: E402

SAMPLE_DIR = Path(__file__).resolve().parent / "sample"


def _shared_candidates(rel: str) -> list[Path]:
    return [DATASETS / rel, Path.cwd() / ".." / "shared" / "datasets" / rel]


def default_data_dir() -> Path | None:
    """``../shared/datasets/kodak`` when it exists (relative to the project root or the cwd)."""
    return next((p.resolve() for p in _shared_candidates("kodak") if p.is_dir()), None)


def default_video_dir() -> Path | None:
    return next((p.resolve() for p in _shared_candidates("video/basketballpass") if p.is_dir()), None)


def sample_paths() -> list[Path]:
    return sorted(SAMPLE_DIR.glob("*.png"))


def list_images(folder: str | Path | None) -> list[Path]:
    """Image files of ``folder`` (sorted), or the shipped sample when ``folder`` is None."""
    if folder is None:
        return sample_paths()
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff"}
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in exts)
    if not files:
        raise FileNotFoundError(f"no images in {folder}")
    return files


def load_image(path: str | Path) -> torch.Tensor:
    """RGB image -> float32 (3, H, W) in [0, 1]."""
    from PIL import Image
    with Image.open(path) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(a.copy()).permute(2, 0, 1).contiguous()


def make_canvas(img: torch.Tensor, canvas: int = 384) -> torch.Tensor:
    """(3, H, W) -> (1, 3, canvas, canvas): central square, resized down to ``canvas`` (antialiased
    bicubic) when larger, reflect-padded when smaller."""
    _, H, W = img.shape
    s = min(H, W)
    top, left = (H - s) // 2, (W - s) // 2
    x = img[None, :, top:top + s, left:left + s]
    if s > canvas:
        x = F.interpolate(x, size=(canvas, canvas), mode="bicubic", align_corners=False, antialias=True)
    elif s < canvas:
        p0 = (canvas - s) // 2
        p1 = canvas - s - p0
        while x.shape[-1] < canvas:  # reflect padding cannot exceed the size: grow in steps
            a = min(p0, x.shape[-1] - 1)
            b = min(p1, x.shape[-1] - 1)
            x = F.pad(x, (a, b, a, b), mode="reflect")
            p0, p1 = p0 - a, p1 - b
    return x.clamp(0.0, 1.0).contiguous()


def centre_crop(x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    H, W = x.shape[-2:]
    h, w = hw
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]
