"""Edge preprocessing, identical in training, evaluation and streaming.

centre -> scale to the unit sphere -> sample P points with a fixed seed (PointNet's protocol).
"""
from __future__ import annotations

import numpy as np


class InvalidPointCloud(ValueError):
    """The input cannot be a point cloud: wrong shape, empty, NaN or infinite values."""


def validate(points: np.ndarray, name: str = "input") -> np.ndarray:
    """Check an (N, 3) cloud and return it as float32, or raise InvalidPointCloud naming ``name``."""
    a = np.asarray(points)
    if a.ndim != 2 or a.shape[1] != 3:
        raise InvalidPointCloud(f"{name}: expected points of shape (N, 3), got {a.shape}")
    if a.shape[0] == 0:
        raise InvalidPointCloud(f"{name}: the point cloud is empty")
    if not np.issubdtype(a.dtype, np.number):
        raise InvalidPointCloud(f"{name}: points must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise InvalidPointCloud(f"{name}: {int(bad.sum())} of {len(a)} points are NaN or infinite")
    return a


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale so the farthest point lies on the unit sphere."""
    centred = points - points.mean(axis=0, keepdims=True)
    radius = float(np.sqrt((centred ** 2).sum(axis=1)).max())
    return centred / radius if radius > 0 else centred


def sample(points: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points drawn without replacement (with replacement if the cloud is smaller)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(points), size=count, replace=len(points) < count)
    return points[idx]


def preprocess(points: np.ndarray, count: int, seed: int = 0, name: str = "input") -> np.ndarray:
    """validate -> normalize -> sample: the cloud the edge encoder sees, (count, 3) float32."""
    return sample(normalize(validate(points, name)), count, seed).astype(np.float32)


def preprocess_batch(clouds: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """preprocess for every cloud of an (N, P0, 3) array."""
    return np.stack([preprocess(c, count, seed, name=f"cloud {i}") for i, c in enumerate(clouds)])
