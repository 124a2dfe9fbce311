"""Labelled point-cloud datasets: ModelNet40 and a user's own scans, for ``--data DIR``.

A dataset is a folder with ``classes.txt`` (one class name per line; a label is an index into it)
and, for each split (``train``, ``test``), either

- one array file: ``train.npz`` (or ModelNet40's ``modelnet40_train.npz``) with ``points``
  float [N, P0, 3] and ``labels`` int [N]; or
- a folder of class subfolders: ``train/<class>/<cloud>.{npy,ply,pcd,xyz,off,obj,...}``, one
  object per file (any number of points; meshes are sampled). Every cloud is resampled to
  ``CLOUD_POINTS`` points (seeded) so the split is one array; ``classes.txt`` may then be left
  out, the subfolder names, sorted, being the classes.

Only ``train`` is needed to fine-tune (a validation split is carved from it); ``test`` is for the
final numbers.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import DATASETS

DEFAULT_DATA = DATASETS / "modelnet40"
CLOUD_POINTS = 1024


def resolve_data(data: str | Path | None) -> Path:
    """The ``--data`` folder, defaulting to ../shared/datasets/modelnet40 when it exists."""
    path = Path(data) if data else DEFAULT_DATA
    if not path.exists():
        raise FileNotFoundError(f"dataset not found at {path}: pass --data DIR")
    return path


def _resample(points: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return points[rng.choice(len(points), count, replace=len(points) < count)]


def _load_folder(folder: Path, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    from .io import SUFFIXES, read_file
    clouds, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(f for f in (folder / name).glob("*") if f.suffix.lower() in SUFFIXES) \
            if (folder / name).is_dir() else []
        for f in files:
            for cloud in read_file(f):
                clouds.append(_resample(cloud.points, CLOUD_POINTS, len(clouds)))
                labels.append(c)
    unknown = sorted(d.name for d in folder.iterdir() if d.is_dir() and d.name not in classes)
    if unknown:
        raise ValueError(f"{folder}: class folders not in classes.txt: {', '.join(unknown)}")
    if not clouds:
        raise FileNotFoundError(f"{folder}: no point-cloud files in its class subfolders")
    return np.stack(clouds).astype(np.float32), np.array(labels, np.int64)


def load_split(data: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(points [N, P0, 3] float32, labels [N] int64) of 'train' or 'test'."""
    root = resolve_data(data)
    for name in (f"{split}.npz", f"modelnet40_{split}.npz"):
        if (root / name).exists():
            with np.load(root / name) as f:
                return f["points"].astype(np.float32), f["labels"].astype(np.int64)
    if (root / split).is_dir():
        return _load_folder(root / split, load_classes(root))
    raise FileNotFoundError(f"{root}: no {split}.npz, modelnet40_{split}.npz or {split}/ folder")


def load_classes(data: str | Path | None) -> list[str]:
    """classes.txt, or the sorted class subfolders of train/."""
    root = resolve_data(data)
    if (root / "classes.txt").exists():
        return (root / "classes.txt").read_text().split()
    if (root / "train").is_dir():
        return sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    raise FileNotFoundError(f"{root}: no classes.txt")


def train_val_split(labels: np.ndarray, val_fraction: float, seed: int = 0):
    """Indices (train, val): a stratified validation split carved from the training set."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = int(round(len(idx) * val_fraction))
        val.extend(idx[:n_val])
        train.extend(idx[n_val:])
    return np.sort(np.array(train)), np.sort(np.array(val))
