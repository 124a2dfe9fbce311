"""Prediction error of a feature tensor: NRMSE over the predictable elements."""
from __future__ import annotations

import math

import torch

__all__ = ["nrmse", "nrmse_to_psnr"]


def nrmse(pred: torch.Tensor, actual: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample ``sqrt(MSE over predictable elements) / (max - min of the actual tensor)``.

    ``pred``, ``actual``: (B, C, h, w). ``mask``: boolean (B or 1, 1 or C, h, w), broadcast over
    channels; ``None`` means every element. The range is taken over the whole actual tensor (all
    channels and positions) of each sample. Returns float64 (B,); NaN where the mask is empty.
    """
    if pred.shape != actual.shape:
        raise ValueError(f"shapes differ: {tuple(pred.shape)} vs {tuple(actual.shape)}")
    pred, actual = pred.double(), actual.double()
    err = (pred - actual) ** 2
    if mask is None:
        mse = err.flatten(1).mean(1)
    else:
        m = mask.to(torch.float64).expand_as(err)
        n = m.flatten(1).sum(1)
        mse = (err * m).flatten(1).sum(1) / n  # 0/0 -> NaN for an empty mask
    flat = actual.flatten(1)
    rng = flat.amax(1) - flat.amin(1)
    return mse.sqrt() / rng


def nrmse_to_psnr(v: float) -> float:
    """The PSNR (dB) an image with this NRMSE would have: ``-20 log10(NRMSE)``."""
    return float("inf") if v <= 0 else -20.0 * math.log10(v)
