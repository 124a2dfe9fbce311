"""Synthetic motions of still images: one-parameter sweeps and random 6-parameter affines.

For each test image and motion ``M``: features of the reference view and of the moved view
(:func:`~.warp.warp_image_crop`); prediction = reference tensor warped by ``M`` in the layer's
geometry; NRMSE over the predictable mask. The zero-motion prediction (the reference tensor itself,
same mask) is recorded alongside as a baseline.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from .extractors import FeatureExtractor
from .images import centre_crop
from .metrics import nrmse
from .warp import affine_matrix, predictable_mask, warp, warp_image_crop

__all__ = ["SweepSpec", "full_sweeps", "quick_sweeps", "RANDOM_RANGES", "random_affines", "evaluate_motions",
           "run_sweeps", "run_random"]


@dataclass(frozen=True)
class SweepSpec:
    name: str
    param: str  # keyword of affine_matrix
    values: tuple[float, ...]
    unit: str = ""


def full_sweeps() -> list[SweepSpec]:
    return [
        SweepSpec("translation", "tx", tuple(float(v) for v in range(-30, 31)), "px"),  # odd and even
        SweepSpec("rotation", "rot_deg", tuple(float(v) for v in range(-10, 11)), "deg"),
        SweepSpec("scale", "sx", tuple(float(v) for v in np.exp(np.linspace(math.log(0.8), math.log(1.25), 21))), ""),
        SweepSpec("shear", "shear_deg", tuple(float(v) for v in range(-10, 11)), "deg"),
    ]


def quick_sweeps() -> list[SweepSpec]:
    return [
        SweepSpec("translation", "tx", (-30.0, -15.0, -5.0, 0.0, 5.0, 15.0, 30.0), "px"),
        SweepSpec("rotation", "rot_deg", (-10.0, -5.0, 0.0, 5.0, 10.0), "deg"),
        SweepSpec("scale", "sx", (0.8, 0.9, 1.0, 1.1, 1.25), ""),
        SweepSpec("shear", "shear_deg", (-10.0, -5.0, 0.0, 5.0, 10.0), "deg"),
    ]


@dataclass(frozen=True)
class RandomRanges:
    translation: float = 32.0  # px, each of tx, ty uniform in +-
    scale: tuple[float, float] = (0.95, 1.05)  # each of sx, sy
    shear_deg: float = 5.0
    rot_deg: float = 10.0


RANDOM_RANGES = RandomRanges()


def random_affines(n: int, seed: int = 0, ranges: RandomRanges = RANDOM_RANGES) -> tuple[np.ndarray, np.ndarray]:
    """``n`` random 6-parameter affines (tx, ty, rot, sx, sy, shear uniform in ``ranges``).
    Returns (params (n, 6) in that order, matrices (n, 3, 3))."""
    rng = np.random.default_rng(seed)
    t, r = ranges.translation, ranges
    P = np.stack([rng.uniform(-t, t, n), rng.uniform(-t, t, n), rng.uniform(-r.rot_deg, r.rot_deg, n),
                  rng.uniform(*r.scale, n), rng.uniform(*r.scale, n), rng.uniform(-r.shear_deg, r.shear_deg, n)], 1)
    M = np.stack([affine_matrix(tx=p[0], ty=p[1], rot_deg=p[2], sx=p[3], sy=p[4], shear_deg=p[5]) for p in P])
    return P, M


@dataclass
class _Acc:
    warped: dict[str, list] = field(default_factory=dict)
    zero: dict[str, list] = field(default_factory=dict)
    frac: dict[str, list] = field(default_factory=dict)

    def add(self, key: str, w, z, f):
        self.warped.setdefault(key, []).append(w)
        self.zero.setdefault(key, []).append(z)
        self.frac.setdefault(key, []).append(f)

    def result(self) -> dict[str, dict[str, np.ndarray]]:
        return {k: {"warped": np.concatenate(self.warped[k]), "zero": np.concatenate(self.zero[k]),
                    "mask_fraction": np.concatenate(self.frac[k])} for k in self.warped}


def evaluate_motions(extractor: FeatureExtractor, canvas: torch.Tensor, motions: np.ndarray,
                     crop: int = 224, batch: int = 16, pbar: tqdm | None = None) -> dict[str, dict[str, np.ndarray]]:
    """NRMSE of the warped (and of the zero-motion) prediction for each motion of one canvas.

    Returns {layer: {"warped": (n,), "zero": (n,), "mask_fraction": (n,)}}."""
    hw = (crop, crop)
    ref = extractor(centre_crop(canvas, hw))
    geoms = {n: extractor.geometry(n, hw) for n in extractor.names}
    acc = _Acc()
    motions = np.asarray(motions, dtype=np.float64).reshape(-1, 3, 3)
    for s in range(0, len(motions), batch):
        Mb = motions[s:s + batch]
        with torch.no_grad():
            feats = extractor(warp_image_crop(canvas, Mb, hw))
            for n in extractor.names:
                act, g = feats[n], geoms[n]
                mask = predictable_mask(tuple(act.shape[-2:]), Mb, g)
                pred = warp(ref[n], Mb, g)
                acc.add(n, nrmse(pred, act, mask).numpy(),
                        nrmse(ref[n].expand_as(act), act, mask).numpy(),
                        mask.flatten(1).double().mean(1).numpy())
        if pbar is not None:
            pbar.update(len(Mb))
    return acc.result()


def _sig(v: np.ndarray, digits: int = 4) -> list[float]:
    return [float(f"{x:.{digits}g}") for x in v.tolist()]


def _stats(v: np.ndarray) -> dict[str, float]:
    v = v[np.isfinite(v)]
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "median": float("nan"), "p95": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "n": int(len(v))}


def run_sweeps(extractor: FeatureExtractor, canvases: list[torch.Tensor], sweeps: list[SweepSpec],
               crop: int = 224, batch: int = 16, progress: bool = True) -> dict:
    """Every sweep on every canvas. Returns {sweep: {param, unit, values, layers: {layer: {mean,
    std (over images), zero_mean, mask_fraction}}}}."""
    total = sum(len(sw.values) for sw in sweeps) * len(canvases)
    out = {}
    with tqdm(total=total, desc="sweeps", unit="view", disable=not progress) as pbar:
        for sw in sweeps:
            Ms = np.stack([affine_matrix(**{sw.param: v}) for v in sw.values])
            per_img = [evaluate_motions(extractor, c, Ms, crop, batch, pbar) for c in canvases]
            layers = {}
            for n in extractor.names:
                W = np.stack([r[n]["warped"] for r in per_img])  # (images, values)
                Z = np.stack([r[n]["zero"] for r in per_img])
                F_ = np.stack([r[n]["mask_fraction"] for r in per_img])
                layers[n] = {"mean": np.nanmean(W, 0).tolist(), "std": np.nanstd(W, 0).tolist(),
                             "zero_mean": np.nanmean(Z, 0).tolist(), "mask_fraction": F_.mean(0).tolist()}
            out[sw.name] = {"param": sw.param, "unit": sw.unit, "values": list(sw.values), "layers": layers}
    return out


def run_random(extractor: FeatureExtractor, canvases: list[torch.Tensor], n_draws: int, seed: int = 0,
               crop: int = 224, batch: int = 16, progress: bool = True) -> dict:
    """``n_draws`` random affines, draw ``k`` applied to canvas ``k % len(canvases)``. Every draw
    is scored at every layer. Returns {ranges, params, layers: {layer: {values, zero_values, stats,
    zero_stats, mask_fraction_mean}}}."""
    P, M = random_affines(n_draws, seed)
    idx = np.arange(n_draws) % len(canvases)
    res = {n: {"warped": np.full(n_draws, np.nan), "zero": np.full(n_draws, np.nan), "frac": np.full(n_draws, np.nan)}
           for n in extractor.names}
    with tqdm(total=n_draws, desc="random affine", unit="view", disable=not progress) as pbar:
        for ci, c in enumerate(canvases):
            sel = np.flatnonzero(idx == ci)
            if not len(sel):
                continue
            r = evaluate_motions(extractor, c, M[sel], crop, batch, pbar)
            for n in extractor.names:
                res[n]["warped"][sel] = r[n]["warped"]
                res[n]["zero"][sel] = r[n]["zero"]
                res[n]["frac"][sel] = r[n]["mask_fraction"]
    r0 = RANDOM_RANGES
    return {
        "ranges": {"translation_px": r0.translation, "scale": list(r0.scale), "shear_deg": r0.shear_deg,
                   "rotation_deg": r0.rot_deg},
        "param_names": ["tx", "ty", "rot_deg", "sx", "sy", "shear_deg"],
        "params": P.round(6).tolist(), "image_index": idx.tolist(),
        "layers": {n: {"values": _sig(res[n]["warped"]), "zero_values": _sig(res[n]["zero"]),
                       "stats": _stats(res[n]["warped"]), "zero_stats": _stats(res[n]["zero"]),
                       "mask_fraction_mean": float(np.nanmean(res[n]["frac"]))} for n in extractor.names},
    }
