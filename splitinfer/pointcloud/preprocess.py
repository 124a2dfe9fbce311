"""Edge preprocessing, identical in training, evaluation and streaming.

finite points -> [outlier removal] -> centre -> scale -> sample P points with a fixed seed.

How a model centres and scales belongs to the model: its config's ``"preprocess"`` dict, e.g.
``{"centre": "median", "scale": "quantile", "q": 0.9, "max_radius": 4.0, "outliers": null}``
(robust to stray points and to the coordinates of a real sensor). A config without it gets the
protocol the first models were trained with (PointNet's: mean, farthest point on the unit sphere),
computed exactly as before, so those models answer as they always did. ``ModelConfig.digest``
includes the dict, so an edge and a server agree on it.

Sensor frames: NaN or infinite points (holes of an organised depth image) are dropped and counted;
a frame is refused (``InvalidPointCloud``) only when fewer than ``min_points`` valid points remain,
or when its valid points cannot be scaled (they coincide, or one point dwarfs the rest under the
farthest-point protocol).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_POINTS = 8
"""Default least number of valid points a frame needs to be classified."""

LEGACY = {"centre": "mean", "scale": "max"}
ROBUST = {"centre": "median", "scale": "quantile", "q": 0.9, "max_radius": 4.0, "outliers": None}
"""The protocol of the scan-trained models: median centre, 90% quantile of the distances to it,
points beyond 4 such radii dropped (stray points), no statistical outlier removal."""

OUTLIER_DOMINANCE = 50.0
"""Farthest-point scaling refuses a cloud whose farthest point is this many times farther from the
mean than the median point: one stray point would squash the object into a dot."""


class InvalidPointCloud(ValueError):
    """The input cannot be a point cloud: wrong shape, empty, too few finite points, degenerate."""


@dataclass
class PreprocessResult:
    """The encoder's input and what preprocessing did to the frame."""
    points: np.ndarray   # (count, 3) float32
    valid: int           # finite points in the input
    dropped: int         # NaN / infinite points dropped
    removed: int = 0     # points removed as outliers (statistical or beyond max_radius)


def _as_array(points: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(points)
    if a.ndim != 2 or a.shape[1] != 3:
        raise InvalidPointCloud(f"{name}: expected points of shape (N, 3), got {a.shape}")
    if a.shape[0] == 0:
        raise InvalidPointCloud(f"{name}: the point cloud is empty")
    if not np.issubdtype(a.dtype, np.number):
        raise InvalidPointCloud(f"{name}: points must be numeric, got dtype {a.dtype}")
    return a


def validate(points: np.ndarray, name: str = "input") -> np.ndarray:
    """Check an (N, 3) cloud and return it as float32, or raise InvalidPointCloud naming ``name``
    (NaN or infinite points included: a file must hold a clean cloud)."""
    a = _as_array(points, name).astype(np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise InvalidPointCloud(f"{name}: {int(bad.sum())} of {len(a)} points are NaN or infinite")
    return a


def sensor_frame(points: np.ndarray, name: str = "input", min_points: int = MIN_POINTS) -> np.ndarray:
    """A cloud as a sensor delivers it, checked but kept whole: (N, 3), numeric, non-empty, with at
    least ``min_points`` finite points. NaN / infinite rows (the holes of an organised depth frame)
    stay in: the edge drops and counts them per frame (:func:`finite_points`)."""
    finite_points(points, name, min_points)
    a = _as_array(points, name)
    return a.astype(np.float32) if np.abs(a[np.isfinite(a)]).max(initial=0) < 1e38 else a.astype(np.float64)


def finite_points(points: np.ndarray, name: str = "input",
                  min_points: int = MIN_POINTS) -> tuple[np.ndarray, int]:
    """The finite rows of a sensor frame (N, 3) and how many were dropped. Coordinates beyond
    float32 are kept in float64. Raises InvalidPointCloud when fewer than ``min_points`` remain."""
    a = _as_array(points, name)
    a = a.astype(np.float32) if np.abs(a[np.isfinite(a)]).max(initial=0) < 1e38 else a.astype(np.float64)
    good = np.isfinite(a).all(axis=1)
    if a.dtype == np.float32:
        good &= np.isfinite(a.astype(np.float64)).all(axis=1)
    kept, dropped = a[good], int((~good).sum())
    if len(kept) < max(min_points, 1):
        raise InvalidPointCloud(f"{name}: {len(kept)} valid points (of {len(a)}; {dropped} NaN or "
                                f"infinite), at least {max(min_points, 1)} needed")
    return kept, dropped


def normalize(points: np.ndarray) -> np.ndarray:
    """Centre on the mean and scale so the farthest point lies on the unit sphere (float32, as the
    first models were trained). Falls back to float64 where float32 overflows (clouds at 1e20 and
    beyond); refuses coinciding points and clouds that one far point dominates."""
    with np.errstate(over="ignore", invalid="ignore"):
        centred = points - points.mean(axis=0, keepdims=True)
        dist = np.sqrt((centred ** 2).sum(axis=1))
        radius = float(dist.max())
    if not np.isfinite(radius):
        p64 = np.asarray(points, np.float64)
        centred = p64 - p64.mean(axis=0, keepdims=True)
        dist = np.sqrt((centred ** 2).sum(axis=1))
        radius = float(dist.max())
        centred = centred.astype(np.float32) if radius < 1e38 else centred
    if not radius > 0:
        raise InvalidPointCloud("all points coincide: the cloud has no extent to classify")
    if len(dist) > 2 and radius > OUTLIER_DOMINANCE * float(np.median(dist)):
        raise InvalidPointCloud(f"one point lies {radius / float(np.median(dist)):.3g} times farther "
                                "from the centre than the median point: a stray point would squash "
                                "the object (remove it, or use a model with robust preprocessing)")
    return (centred / radius).astype(np.float32)


def statistical_outliers(points: np.ndarray, k: int = 8, std_ratio: float = 2.0) -> np.ndarray:
    """Mask of statistical outliers (Rusu et al., KI 2008): points whose mean distance to their
    ``k`` nearest neighbours exceeds the mean of that distance by ``std_ratio`` standard deviations."""
    n = len(points)
    if n <= k + 1:
        return np.zeros(n, bool)
    mean_knn = np.empty(n)
    for i in range(0, n, 512):  # (512, n) distance blocks
        block = points[i:i + 512]
        d2 = ((block[:, None, :] - points[None, :, :]) ** 2).sum(-1)
        nearest = np.partition(d2, k, axis=1)[:, 1:k + 1]  # skip the point itself
        mean_knn[i:i + 512] = np.sqrt(nearest).mean(axis=1)
    return mean_knn > mean_knn.mean() + std_ratio * mean_knn.std()


def robust_normalize(points: np.ndarray, spec: dict) -> tuple[np.ndarray, int]:
    """Centre and scale by ``spec`` in float64; returns (float32 cloud, points removed)."""
    p = np.asarray(points, np.float64)
    removed = 0
    scale = np.abs(p).max()
    if scale > 1e150:  # squared distances stay finite in float64
        p = p / scale
    out = spec.get("outliers")
    if out:
        bad = statistical_outliers(p / max(np.ptp(p, axis=0).max(), 1e-300), int(out.get("k", 8)),
                                   float(out.get("std_ratio", 2.0)))
        if bad.sum() < len(p) - 1:
            p, removed = p[~bad], int(bad.sum())
    centre = np.median(p, axis=0) if spec.get("centre") == "median" else p.mean(axis=0)
    centred = p - centre
    dist = np.sqrt((centred ** 2).sum(axis=1))
    if spec.get("scale") == "quantile":
        radius = float(np.quantile(dist, float(spec.get("q", 0.9))))
    else:
        radius = float(dist.max())
    if not radius > 0:
        radius = float(dist.max())
    if not radius > 0:
        raise InvalidPointCloud("all points coincide: the cloud has no extent to classify")
    centred /= radius
    limit = spec.get("max_radius")
    if limit:
        far = dist / radius > float(limit)
        centred, removed = centred[~far], removed + int(far.sum())
    return centred.astype(np.float32), removed


def sample(points: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """``count`` points drawn without replacement (with replacement if the cloud is smaller)."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(points), size=count, replace=len(points) < count)
    return points[idx]


def preprocess(points: np.ndarray, count: int, seed: int = 0, name: str = "input",
               spec: dict | None = None, min_points: int = MIN_POINTS,
               return_stats: bool = False) -> np.ndarray | PreprocessResult:
    """The cloud the edge encoder sees, (count, 3) float32: finite points -> centre and scale by
    the model's ``spec`` (None: mean / farthest point) -> ``count`` points with ``seed``.
    With ``return_stats`` a PreprocessResult that also counts the dropped and removed points."""
    if spec is None or spec == LEGACY:
        kept, dropped = finite_points(points, name, min_points)
        try:
            x, removed = normalize(kept), 0
        except InvalidPointCloud as e:
            raise InvalidPointCloud(f"{name}: {e}") from None
    else:
        kept, dropped = finite_points(points, name, min_points)
        try:
            x, removed = robust_normalize(kept, spec)
        except InvalidPointCloud as e:
            raise InvalidPointCloud(f"{name}: {e}") from None
    x = sample(x, count, seed).astype(np.float32)
    if return_stats:
        return PreprocessResult(x, valid=len(kept), dropped=dropped, removed=removed)
    return x


def preprocess_batch(clouds, count: int, seed: int = 0, spec: dict | None = None) -> np.ndarray:
    """preprocess for every cloud of an (N, P0, 3) array or a list of (Ni, 3) clouds."""
    return np.stack([preprocess(c, count, seed, name=f"cloud {i}", spec=spec)
                     for i, c in enumerate(clouds)])
