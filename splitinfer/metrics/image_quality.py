"""Image quality metrics on uint8 RGB (numpy only, no scipy): PSNR and MS-SSIM.

- :func:`psnr`: ``10 log10(255^2 / MSE)`` with the MSE over all pixels and all three channels
  (the convention of the learned-compression literature and CompressAI's evaluation).
- :func:`ms_ssim`: multi-scale SSIM of Wang, Simoncelli and Bovik (Asilomar 2003): 5 scales,
  an 11x11 Gaussian window with sigma 1.5 applied without padding ("valid"), K1 = 0.01,
  K2 = 0.03, dynamic range L = 255, 2x2 average pooling between scales, exponents
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Contrast-structure terms of scales 1-4 and the full
  SSIM of scale 5 are raised to their weights and multiplied. ``mode="rgb"`` (default) computes
  MS-SSIM per channel and averages the three (as pytorch_msssim / CompressAI do, negative terms
  clamped to 0); ``mode="luma"`` computes it on BT.601 luma Y = 0.299 R + 0.587 G + 0.114 B.
  Images need at least 161 pixels per side (the window must fit at the coarsest scale).
"""
from __future__ import annotations

import numpy as np

WEIGHTS = np.array([0.0448, 0.2856, 0.3001, 0.2363, 0.1333])
WINDOW, SIGMA = 11, 1.5
K1, K2, PEAK = 0.01, 0.03, 255.0


def _pair(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected (H, W) or (H, W, C) images, got {a.shape}")
    return a.astype(np.float64), b.astype(np.float64)


def mse(a, b) -> float:
    a, b = _pair(a, b)
    return float(np.mean((a - b) ** 2))


def psnr(a, b, peak: float = PEAK) -> float:
    """PSNR in dB over all pixels and channels; ``inf`` for identical images."""
    m = mse(a, b)
    return float("inf") if m == 0 else float(10.0 * np.log10(peak * peak / m))


def gaussian_window(size: int = WINDOW, sigma: float = SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian taps; the 2-D window is their outer product."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of x (H, W, ...) with g along axes 0 and 1."""
    n = len(g)
    H, W = x.shape[:2]
    rows = g[0] * x[:H - n + 1]
    for k in range(1, n):
        rows += g[k] * x[k:H - n + 1 + k]
    out = g[0] * rows[:, :W - n + 1]
    for k in range(1, n):
        out += g[k] * rows[:, k:W - n + 1 + k]
    return out


def ssim_terms(a: np.ndarray, b: np.ndarray, g: np.ndarray | None = None,
               peak: float = PEAK) -> tuple[np.ndarray, np.ndarray]:
    """(mean SSIM, mean contrast-structure) per channel of float (H, W, C) images at one scale."""
    g = gaussian_window() if g is None else g
    c1, c2 = (K1 * peak) ** 2, (K2 * peak) ** 2
    mu_a, mu_b = _filter_valid(a, g), _filter_valid(b, g)
    saa = _filter_valid(a * a, g) - mu_a * mu_a
    sbb = _filter_valid(b * b, g) - mu_b * mu_b
    sab = _filter_valid(a * b, g) - mu_a * mu_b
    cs = (2 * sab + c2) / (saa + sbb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1)
    return (lum * cs).mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def ssim(a, b, mode: str = "rgb") -> float:
    """Single-scale SSIM (same window and constants), channel mean or luma."""
    a, b = _prepare(a, b, mode)
    if min(a.shape[:2]) < WINDOW:
        raise ValueError(f"SSIM needs at least {WINDOW} pixels per side, got {a.shape[:2]}")
    return float(ssim_terms(a, b)[0].mean())


def _prepare(a, b, mode: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = _pair(a, b)
    if a.ndim == 2:
        return a[..., None], b[..., None]
    if mode == "rgb":
        return a, b
    if mode == "luma":
        if a.shape[2] != 3:
            raise ValueError("luma mode needs RGB images")
        w = np.array([0.299, 0.587, 0.114])
        return (a @ w)[..., None], (b @ w)[..., None]
    raise ValueError(f"unknown mode {mode!r}: use 'rgb' or 'luma'")


def _pool2(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling (an odd last row / column is dropped)."""
    H, W = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    x = x[:H, :W]
    return 0.25 * (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2])


def min_side(scales: int = len(WEIGHTS), window: int = WINDOW) -> int:
    """Smallest image side for which the window fits at the coarsest scale."""
    return (window - 1) * 2 ** (scales - 1) + 1


def ms_ssim(a, b, mode: str = "rgb", weights=WEIGHTS) -> float:
    """MS-SSIM in [0, 1] (1 for identical images). See the module docstring."""
    a, b = _prepare(a, b, mode)
    w = np.asarray(weights, np.float64)
    if min(a.shape[:2]) < min_side(len(w)):
        raise ValueError(f"MS-SSIM with {len(w)} scales needs at least {min_side(len(w))} pixels "
                         f"per side, got {a.shape[0]}x{a.shape[1]}")
    g = gaussian_window()
    terms = []
    for j in range(len(w)):
        s, cs = ssim_terms(a, b, g)
        terms.append(cs if j < len(w) - 1 else s)
        if j < len(w) - 1:
            a, b = _pool2(a), _pool2(b)
    t = np.maximum(np.stack(terms), 0.0)  # (scales, channels)
    return float(np.prod(t ** w[:, None], axis=0).mean())


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB, ``-10 log10(1 - MS-SSIM)``, as plotted in the compression literature."""
    return float("inf") if value >= 1 else float(-10.0 * np.log10(1.0 - value))
