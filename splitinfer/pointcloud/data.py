"""ModelNet40 as shipped in ``--data`` folders: modelnet40_{train,test}.npz and classes.txt."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "modelnet40"


def resolve_data(data: str | Path | None) -> Path:
    """The ``--data`` folder, defaulting to ../shared/datasets/modelnet40 when it exists."""
    path = Path(data) if data else DEFAULT_DATA
    if not path.exists():
        raise FileNotFoundError(f"ModelNet40 not found at {path}: pass --data DIR")
    return path


def load_split(data: str | Path | None, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(points [N, 1024, 3] float32, labels [N] int64) of 'train' or 'test'."""
    with np.load(resolve_data(data) / f"modelnet40_{split}.npz") as f:
        return f["points"].astype(np.float32), f["labels"].astype(np.int64)


def load_classes(data: str | Path | None) -> list[str]:
    return (resolve_data(data) / "classes.txt").read_text().split()


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
