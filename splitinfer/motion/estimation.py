"""Motion between two frames, estimated on the pixels: a global affine, or a dense flow.

:func:`estimate_affine` -- robust pyramidal direct alignment (Lucas-Kanade style).

Gauss-Newton on the six affine parameters, minimising ``sum w(r) r^2`` with the residual
``r(P) = I1(M P) - I0(P)`` on grey levels, coarse to fine (a 2x pyramid down to ~24 px), with
symmetric (ESM-like) gradients ``(grad I0 + grad I1w) / 2`` and iteratively reweighted least squares:
Huber weights for the first iterations of a level, then Tukey's biweight (scale from the MAD), so
that independently moving objects (players) are treated as outliers and the camera motion wins.
Returns ``M`` in the centred pixel coordinates of :mod:`.warp`: ``I1(M P) ~= I0(P)``.

:func:`estimate_flow` -- dense backward optical flow by pyramidal iterative Lucas-Kanade (a
Gaussian-weighted 2x2 least-squares problem per pixel, Tikhonov-regularised, 5 iterations per level).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .warp import Geometry, predictable_mask, warp, warp_flow

__all__ = ["to_grey", "estimate_affine", "estimate_flow", "affine_to_flow"]


def to_grey(img: torch.Tensor) -> torch.Tensor:
    """(3, H, W) or (1, 3, H, W) RGB in [0, 1] -> (1, 1, H, W) float64 luma (BT.601)."""
    x = img if img.dim() == 4 else img[None]
    w = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    return (x.double() * w).sum(1, keepdim=True)


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=x.dtype) / 16.0
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), k.view(1, 1, 1, 5))
    return F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), k.view(1, 1, 5, 1))


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xp = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (xp[..., 1:-1, 2:] - xp[..., 1:-1, :-2]) / 2.0, (xp[..., 2:, 1:-1] - xp[..., :-2, 1:-1]) / 2.0


def _pyramid(x: torch.Tensor, min_size: int) -> list[torch.Tensor]:
    levels = [x]
    while min(levels[-1].shape[-2:]) // 2 >= min_size and all(n % 2 == 0 for n in levels[-1].shape[-2:]):
        levels.append(F.avg_pool2d(_blur(levels[-1]), 2))  # keeps the centre: X_coarse = X_fine / 2
    return levels[::-1]


def _align_level(I0: torch.Tensor, I1: torch.Tensor, M: np.ndarray, iters: int, tol: float) -> np.ndarray:
    H, W = I0.shape[-2:]
    geom = Geometry.image(H, W)
    s = max(H, W) / 2.0  # coordinate normalisation for conditioning
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    Xn, Yn = (xs - (W - 1) / 2.0) / s, (ys - (H - 1) / 2.0) / s
    g0x, g0y = _grad(I0)
    for it in range(iters):
        Minv = np.linalg.inv(M)
        I1w = warp(I1, Minv, geom, mode="bilinear")  # I1w(P) = I1(M P)
        valid = predictable_mask((H, W), Minv, geom, mode="bilinear")[0, 0]
        valid[:1] = valid[-1:] = False
        valid[:, :1] = valid[:, -1:] = False
        if valid.sum() < 64:
            break
        g1x, g1y = _grad(I1w)
        gx, gy = 0.5 * (g0x + g1x)[0, 0][valid], 0.5 * (g0y + g1y)[0, 0][valid]
        r = (I1w - I0)[0, 0][valid]
        X, Y = Xn[valid], Yn[valid]
        J = torch.stack([gx * X, gx * Y, gx, gy * X, gy * Y, gy], 1)
        sigma = 1.4826 * r.abs().median().clamp_min(1e-6)
        a = r.abs() / sigma
        if it < 3:
            w = torch.where(a <= 1.345, torch.ones_like(a), 1.345 / a)
        else:
            w = torch.where(a < 4.685, (1 - (a / 4.685) ** 2) ** 2, torch.zeros_like(a))
        A = J.T @ (J * w[:, None])
        b = J.T @ (w * r)
        A = A + 1e-6 * torch.diag(torch.diagonal(A)).clamp_min(1e-12) + 1e-9 * torch.eye(6, dtype=A.dtype)
        d = -torch.linalg.solve(A, b).numpy()
        # parameters act on normalised coordinates for the linear part, pixels for translation
        M = M.copy()
        M[0, 0] += d[0] / s; M[0, 1] += d[1] / s; M[0, 2] += d[2]
        M[1, 0] += d[3] / s; M[1, 1] += d[4] / s; M[1, 2] += d[5]
        # d is the displacement (px) the update causes at distance s from the centre
        if np.abs(d).max() < tol:
            break
    return M


def estimate_affine(frame0: torch.Tensor, frame1: torch.Tensor, iters: int = 30, min_size: int = 24,
                    tol: float = 1e-3, translation_only: bool = False) -> np.ndarray:
    """Global affine ``M`` (3x3, centred pixel coordinates) with ``frame1(M P) ~= frame0(P)``.

    ``frame0``/``frame1``: RGB (3, H, W) or (1, 3, H, W) in [0, 1], or grey (1, 1, H, W).
    ``translation_only`` fits the translation alone (still robust, still pyramidal)."""
    g0 = frame0 if frame0.dim() == 4 and frame0.shape[1] == 1 else to_grey(frame0)
    g1 = frame1 if frame1.dim() == 4 and frame1.shape[1] == 1 else to_grey(frame1)
    p0, p1 = _pyramid(_blur(g0.double()), min_size), _pyramid(_blur(g1.double()), min_size)
    M = np.eye(3)
    for lvl, (a, b) in enumerate(zip(p0, p1)):
        if lvl:
            M = M.copy()
            M[:2, 2] *= 2.0
        if translation_only:
            M = _align_translation(a, b, M, iters, tol)
        else:
            M = _align_level(a, b, M, iters, tol)
    return M


def _align_translation(I0, I1, M, iters, tol):
    H, W = I0.shape[-2:]
    geom = Geometry.image(H, W)
    g0x, g0y = _grad(I0)
    for it in range(iters):
        Minv = np.linalg.inv(M)
        I1w = warp(I1, Minv, geom, mode="bilinear")
        valid = predictable_mask((H, W), Minv, geom, mode="bilinear")[0, 0]
        if valid.sum() < 64:
            break
        g1x, g1y = _grad(I1w)
        gx, gy = 0.5 * (g0x + g1x)[0, 0][valid], 0.5 * (g0y + g1y)[0, 0][valid]
        r = (I1w - I0)[0, 0][valid]
        a = r.abs() / (1.4826 * r.abs().median().clamp_min(1e-6))
        w = torch.where(a < 4.685, (1 - (a / 4.685) ** 2) ** 2, torch.zeros_like(a)) if it >= 3 else \
            torch.where(a <= 1.345, torch.ones_like(a), 1.345 / a)
        J = torch.stack([gx, gy], 1)
        A = J.T @ (J * w[:, None]) + 1e-9 * torch.eye(2, dtype=J.dtype)
        d = -torch.linalg.solve(A, J.T @ (w * r)).numpy()
        M = M.copy()
        M[0, 2] += d[0]; M[1, 2] += d[1]
        if np.abs(d).max() < tol:
            break
    return M


# ------------------------------------------------------------------------------- dense flow
def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def estimate_flow(frame0: torch.Tensor, frame1: torch.Tensor, window_sigma: float = 5.0, iters: int = 5,
                  min_size: int = 24, reg: float = 1e-5) -> torch.Tensor:
    """Dense backward flow (1, 2, H, W), pixels, with ``frame1(q) ~= frame0(q + flow(q))``:
    pyramidal iterative Lucas-Kanade (Gaussian window ``window_sigma`` px at every level, Tikhonov
    ``reg`` on the 2x2 normal equations so that flat areas keep the coarser estimate)."""
    g0 = frame0 if frame0.dim() == 4 and frame0.shape[1] == 1 else to_grey(frame0)
    g1 = frame1 if frame1.dim() == 4 and frame1.shape[1] == 1 else to_grey(frame1)
    p0, p1 = _pyramid(_blur(g0.double()), min_size), _pyramid(_blur(g1.double()), min_size)
    flow = torch.zeros(1, 2, *p0[0].shape[-2:], dtype=torch.float64)
    for lvl, (I0, I1) in enumerate(zip(p0, p1)):
        if lvl:
            flow = 2.0 * F.interpolate(flow, size=I0.shape[-2:], mode="bilinear", align_corners=False)
        g1x, g1y = _grad(I1)
        for _ in range(iters):
            I0w = warp_flow(I0, flow, "bilinear", "border")
            g0x, g0y = _grad(I0w)
            gx, gy = 0.5 * (g0x + g1x), 0.5 * (g0y + g1y)
            r = I0w - I1
            S = _gauss(torch.cat([gx * gx, gx * gy, gy * gy, gx * r, gy * r], 1), window_sigma)
            axx, axy, ayy, bx, by = (S[:, i:i + 1] for i in range(5))
            axx, ayy = axx + reg, ayy + reg
            det = axx * ayy - axy * axy
            d = torch.cat([-(ayy * bx - axy * by) / det, -(axx * by - axy * bx) / det], 1)
            flow = flow + d.clamp(-2.0, 2.0)
    return flow


def affine_to_flow(M: np.ndarray, hw: tuple[int, int]) -> torch.Tensor:
    """The backward flow (1, 2, H, W) of an affine motion: ``frame1(q) = frame0(M^-1 q)``."""
    H, W = hw
    Minv = torch.from_numpy(np.linalg.inv(M))
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    X, Y = xs - (W - 1) / 2.0, ys - (H - 1) / 2.0
    sx = Minv[0, 0] * X + Minv[0, 1] * Y + Minv[0, 2]
    sy = Minv[1, 0] * X + Minv[1, 1] * Y + Minv[1, 2]
    return torch.stack([sx - X, sy - Y])[None]
