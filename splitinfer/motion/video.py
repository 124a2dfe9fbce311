"""Real video: predict each frame's feature tensors from the previous frame's.

For every pair of frames (t, t+gap), consecutive by default, the motion is estimated on the
frames (:mod:`.estimation`):

* ``affine``: one global 6-parameter affine (camera motion), the reference tensor warped with it in
  the layer's geometry, as in the still-image sweeps;
* ``flow``: dense optical flow (pyramidal Lucas-Kanade), smoothed and sampled at the tensor's
  element centres and divided by the stride (:func:`~.warp.flow_to_tensor`), the reference tensor
  warped backwards with it (bicubic);
* ``zero``: the previous tensor as it is (zero-motion prediction).

Each warped prediction is scored with NRMSE on its own predictable mask, and the zero-motion
prediction on the *same* mask (fair comparison) and on the whole tensor. The frames' own layer,
``input`` (stride 1), is included for reference. Frames are used at their full size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .estimation import estimate_affine, estimate_flow
from .extractors import FeatureExtractor
from .images import load_image, make_canvas, sample_paths
from .metrics import nrmse
from .warp import Geometry, affine_matrix, flow_mask, flow_to_tensor, predictable_mask, warp, warp_flow, warp_image_crop

__all__ = ["load_frames", "synthetic_frames", "frame_features", "analyse_video"]


def load_frames(folder: str | Path, limit: int | None = None) -> list[torch.Tensor]:
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    if limit:
        files = files[:limit]
    if len(files) < 2:
        raise FileNotFoundError(f"need at least 2 frames in {folder}")
    return [load_image(f) for f in files]


def synthetic_frames(n: int = 6) -> list[torch.Tensor]:
    """A fallback 'video' when no real one is at hand: the shipped sample image under a smooth
    camera motion (2.5 px/frame pan, 0.4 deg/frame rotation, 0.5 %/frame zoom)."""
    canvas = make_canvas(load_image(sample_paths()[0]))
    Ms = np.stack([affine_matrix(tx=2.5 * k, ty=-0.8 * k, rot_deg=0.4 * k, sx=1 + 0.005 * k, sy=1 + 0.005 * k)
                   for k in range(n)])
    return list(warp_image_crop(canvas, Ms, (224, 224)))


def frame_features(extractor: FeatureExtractor, frames: list[torch.Tensor], batch: int = 4,
                   progress: bool = True) -> list[dict[str, torch.Tensor]]:
    feats: list[dict[str, torch.Tensor]] = []
    for s in tqdm(range(0, len(frames), batch), desc="video features", disable=not progress):
        f = extractor(torch.stack(frames[s:s + batch]))
        feats += [{n: v[i:i + 1] for n, v in f.items()} for i in range(len(frames[s:s + batch]))]
    return feats


def _summ(v: list[float]) -> dict[str, float]:
    a = np.asarray(v, dtype=np.float64)
    return {"mean": float(np.nanmean(a)), "median": float(np.nanmedian(a)), "max": float(np.nanmax(a))}


def analyse_video(extractor: FeatureExtractor, frames: list[torch.Tensor], gap: int = 1, flow_sigma: float = 5.0,
                  progress: bool = True, batch: int = 4,
                  feats: list[dict[str, torch.Tensor]] | None = None) -> dict:
    """Score the affine, flow and zero-motion predictions of every layer for every frame pair
    (t, t + gap). ``feats``: the frames' features when already computed (see :func:`frame_features`)."""
    H, W = frames[0].shape[-2:]
    hw = (H, W)
    if feats is None:
        feats = frame_features(extractor, frames, batch, progress)
    layers = ["input"] + extractor.names
    geoms = {"input": Geometry.image(H, W)} | {n: extractor.geometry(n, hw) for n in extractor.names}
    keys = ["affine", "zero_affine_mask", "flow", "zero_flow_mask", "zero_all", "affine_mask_fraction",
            "flow_mask_fraction"]
    per = {n: {k: [] for k in keys} for n in layers}
    motions = []
    if not 1 <= gap < len(frames):
        raise ValueError(f"gap {gap} needs more than {gap} frames")
    for t in tqdm(range(len(frames) - gap), desc=f"video pairs (gap {gap})", disable=not progress):
        f0, f1 = frames[t][None], frames[t + gap][None]
        M = estimate_affine(f0, f1)
        flow = estimate_flow(f0, f1, window_sigma=flow_sigma)
        mag = flow.norm(dim=1)
        motions.append({"pair": [t, t + gap], "affine": np.round(M[:2], 6).tolist(),
                        "flow_mean_px": float(mag.mean()), "flow_p95_px": float(torch.quantile(mag.flatten(), 0.95))})
        for n in layers:
            ref, act = (f0, f1) if n == "input" else (feats[t][n], feats[t + gap][n])
            g, thw = geoms[n], tuple(act.shape[-2:])
            with torch.no_grad():
                ma = predictable_mask(thw, M, g)
                pa = warp(ref, M, g)
                ft = flow_to_tensor(flow, g, thw)
                mf = flow_mask(ft, tuple(ref.shape[-2:]))
                pf = warp_flow(ref, ft)
                r = per[n]
                r["affine"].append(float(nrmse(pa, act, ma)))
                r["zero_affine_mask"].append(float(nrmse(ref, act, ma)))
                r["flow"].append(float(nrmse(pf, act, mf)))
                r["zero_flow_mask"].append(float(nrmse(ref, act, mf)))
                r["zero_all"].append(float(nrmse(ref, act, None)))
                r["affine_mask_fraction"].append(float(ma.double().mean()))
                r["flow_mask_fraction"].append(float(mf.double().mean()))
    out_layers = {}
    for n in layers:
        r = per[n]
        out_layers[n] = {
            "stride": list(geoms[n].stride), "offset": list(geoms[n].offset),
            "per_pair": r,
            "summary": {k: _summ(r[k]) for k in ("affine", "zero_affine_mask", "flow", "zero_flow_mask", "zero_all")},
            "affine_beats_zero_fraction": float(np.mean(np.asarray(r["affine"]) < np.asarray(r["zero_affine_mask"]))),
            "flow_beats_zero_fraction": float(np.mean(np.asarray(r["flow"]) < np.asarray(r["zero_flow_mask"]))),
        }
        s = out_layers[n]["summary"]
        out_layers[n]["affine_beats_zero_on_mean"] = s["affine"]["mean"] < s["zero_affine_mask"]["mean"]
        out_layers[n]["flow_beats_zero_on_mean"] = s["flow"]["mean"] < s["zero_flow_mask"]["mean"]
    return {"frame_hw": [H, W], "n_frames": len(frames), "gap": gap, "flow_window_sigma": flow_sigma, "motions": motions,
            "layers": out_layers}
