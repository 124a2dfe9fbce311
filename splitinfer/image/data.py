"""Image folders as shipped in ``--data``: BSDS500 (train/val/test JPEGs) and Kodak (24 PNGs)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import DATASETS as SHARED  # noqa: E402
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")


def resolve(data: str | Path | None, default: str) -> Path:
    """The ``--data`` folder, defaulting to ../shared/datasets/<default> when it exists."""
    path = Path(data) if data else SHARED / default
    if not path.exists():
        raise FileNotFoundError(f"image data not found at {path}: pass --data DIR")
    return path


def image_files(folder: str | Path) -> list[Path]:
    """Image files of ``folder`` (or the single file ``folder``), sorted by name."""
    folder = Path(folder)
    if folder.is_file():
        return [folder]
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(SUFFIXES)}) in {folder}")
    return files


def load_rgb(path: str | Path) -> np.ndarray:
    """uint8 array (H, W, 3)."""
    from PIL import Image
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def load_folder(folder: str | Path) -> list[np.ndarray]:
    return [load_rgb(p) for p in image_files(folder)]


def random_crop(im: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` x ``size`` crop of ``im`` (H, W, 3), flipped left-right and up-down
    with probability 1/2 each (the training augmentation of the image codecs)."""
    y = rng.integers(im.shape[0] - size + 1)
    x = rng.integers(im.shape[1] - size + 1)
    c = im[y:y + size, x:x + size]
    if rng.random() < 0.5:
        c = c[:, ::-1]
    if rng.random() < 0.5:
        c = c[::-1]
    return np.ascontiguousarray(c)
