"""Affine motions and the warping of images, feature tensors and masks.

Conventions (used everywhere in :mod:`splitinfer.motion`):

* A motion is a 3x3 matrix ``M`` acting on *centred image coordinates* ``P = (X, Y, 1)``: pixel
  units, ``X`` to the right, ``Y`` down, origin at the image centre ``((W-1)/2, (H-1)/2)`` with
  pixel ``i`` centred at coordinate ``i``. The moved image is ``I1(M P) = I0(P)``.
* A tensor's :class:`Geometry` says where its elements sit in the image: element ``(i, j)`` is
  centred at image pixel ``(y, x) = (stride_y * i + offset_y, stride_x * j + offset_x)``. The motion
  of the tensor is the image motion conjugated by that map, so the translation is divided by the
  stride and the rotation / scale / shear are about the image centre, wherever it falls in the
  tensor (for TF-"SAME" padded networks it is not the tensor's own centre).
* Warping samples every channel with the same grid (``grid_sample``, bicubic by default, zeros
  outside). The *predictable mask* is the warped all-ones tensor: elements whose interpolation
  support lies inside the reference tensor give exactly 1 (cubic weights sum to 1); elements that
  touch the outside give something else. ``mask = |warp(ones) - 1| <= MASK_TOL``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

MASK_TOL = 1e-3

__all__ = ["MASK_TOL", "Geometry", "affine_matrix", "warp", "predictable_mask", "warp_image_crop", "warp_flow",
           "flow_mask", "flow_to_tensor"]


@dataclass(frozen=True)
class Geometry:
    """Where the elements of a (h, w) tensor lie in an image of size ``image_hw``."""

    stride: tuple[float, float] = (1.0, 1.0)  # (y, x)
    offset: tuple[float, float] = (0.0, 0.0)  # (y, x): image pixel of element (0, 0)
    image_hw: tuple[int, int] = (224, 224)

    @classmethod
    def image(cls, h: int, w: int) -> "Geometry":
        return cls((1.0, 1.0), (0.0, 0.0), (int(h), int(w)))

    def tensor_to_centred(self) -> np.ndarray:
        """3x3 map from tensor indices (j, i, 1) to centred image coordinates (X, Y, 1)."""
        (sy, sx), (oy, ox), (h, w) = self.stride, self.offset, self.image_hw
        return np.array([[sx, 0.0, ox - (w - 1) / 2.0],
                         [0.0, sy, oy - (h - 1) / 2.0],
                         [0.0, 0.0, 1.0]])


def affine_matrix(tx: float = 0.0, ty: float = 0.0, rot_deg: float = 0.0, sx: float = 1.0,
                  sy: float = 1.0, shear_deg: float = 0.0) -> np.ndarray:
    """``M = T(tx, ty) R(rot) H(shear) S(sx, sy)`` in centred pixel coordinates (float64).

    ``rot_deg`` > 0 turns clockwise on screen (y points down); ``shear_deg`` is a horizontal
    shear ``X' = X + tan(shear) Y``; ``sx``/``sy`` scale about the centre.
    """
    c, s = math.cos(math.radians(rot_deg)), math.sin(math.radians(rot_deg))
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    H = np.array([[1.0, math.tan(math.radians(shear_deg)), 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    S = np.diag([sx, sy, 1.0])
    T = np.array([[1.0, 0.0, tx], [0.0, 1.0, ty], [0.0, 0.0, 1.0]])
    return T @ R @ H @ S


def _as_batch(M: np.ndarray | torch.Tensor | Sequence) -> np.ndarray:
    M = np.asarray(M.detach().cpu().numpy() if isinstance(M, torch.Tensor) else M, dtype=np.float64)
    if M.ndim == 2:
        M = M[None]
    if M.shape[1:] != (3, 3):
        raise ValueError(f"motion matrices must be 3x3, got {M.shape}")
    return M


def _grid(M: np.ndarray, geom: Geometry, hw: tuple[int, int], device, dtype) -> torch.Tensor:
    """Sampling grid (B, h, w, 2) for ``grid_sample(..., align_corners=True)``: for every output
    element, the position in the reference tensor that moves onto it."""
    h, w = hw
    G = geom.tensor_to_centred()
    # output index -> centred -> (inverse motion) -> centred source -> source index
    maps = np.linalg.inv(G)[None] @ np.linalg.inv(M) @ G[None]  # (B, 3, 3)
    jj, ii = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([jj.ravel(), ii.ravel(), np.ones(h * w)])  # (3, h*w)
    src = maps @ pts  # (B, 3, h*w)
    gx = 2.0 * src[:, 0] / max(w - 1, 1) - 1.0
    gy = 2.0 * src[:, 1] / max(h - 1, 1) - 1.0
    grid = np.stack([gx, gy], axis=-1).reshape(len(M), h, w, 2)
    return torch.from_numpy(grid).to(device=device, dtype=dtype)


def warp(x: torch.Tensor, M, geom: Geometry | None = None, mode: str = "bicubic") -> torch.Tensor:
    """Warp ``x`` (B or 1, C, h, w) by the image motion(s) ``M`` (3x3 or B x 3x3).

    ``geom`` places ``x`` in the image (default: ``x`` *is* the image). A single tensor with several
    motions is broadcast (one output per motion). Outside the reference: zeros.
    """
    Mb = _as_batch(M)
    if geom is None:
        geom = Geometry.image(x.shape[-2], x.shape[-1])
    if x.dim() != 4:
        raise ValueError("x must be (B, C, h, w)")
    B = len(Mb)
    if x.shape[0] == 1 and B > 1:
        x = x.expand(B, -1, -1, -1)
    elif x.shape[0] != B:
        raise ValueError(f"{x.shape[0]} tensors for {B} motions")
    grid = _grid(Mb, geom, (x.shape[-2], x.shape[-1]), x.device, x.dtype)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=True)


def predictable_mask(hw: tuple[int, int], M, geom: Geometry | None = None, mode: str = "bicubic",
                     tol: float = MASK_TOL) -> torch.Tensor:
    """Boolean (B, 1, h, w): the elements of the moved tensor that the warp can predict, i.e. where
    the warped all-ones tensor is 1 (within ``tol``)."""
    ones = torch.ones(1, 1, *hw, dtype=torch.float64)
    g = geom if geom is not None else Geometry.image(*hw)
    return (warp(ones, M, g, mode=mode) - 1.0).abs() <= tol


def warp_image_crop(canvas: torch.Tensor, M, crop_hw: tuple[int, int]) -> torch.Tensor:
    """Move a (1, 3, H, W) canvas by ``M`` about its centre (bicubic, clamped to [0, 1]) and cut the
    central ``crop_hw`` window: the moved camera view, with real content up to the crop borders.

    The crop's centre must coincide with the canvas centre (``(H - h)`` and ``(W - w)`` even), so
    ``M`` is the same motion in the crop's centred coordinates.
    """
    H, W = canvas.shape[-2:]
    h, w = crop_hw
    if (H - h) % 2 or (W - w) % 2 or h > H or w > W:
        raise ValueError(f"crop {crop_hw} must be centred in canvas {(H, W)}")
    top, left = (H - h) // 2, (W - w) // 2
    # only compute the crop: geometry of the crop inside the canvas' centred frame
    geom = Geometry((1.0, 1.0), (float(top), float(left)), (H, W))
    Mb = _as_batch(M)
    grid = _grid(Mb, geom, (h, w), canvas.device, canvas.dtype)
    # the grid holds source indices relative to the crop's corner: shift and renormalise to the canvas
    grid = grid.clone()
    grid[..., 0] = ((grid[..., 0] + 1.0) * (w - 1) / 2.0 + left) * 2.0 / (W - 1) - 1.0
    grid[..., 1] = ((grid[..., 1] + 1.0) * (h - 1) / 2.0 + top) * 2.0 / (H - 1) - 1.0
    src = canvas.expand(len(Mb), -1, -1, -1)
    return F.grid_sample(src, grid, mode="bicubic", padding_mode="zeros", align_corners=True).clamp_(0.0, 1.0)


# ------------------------------------------------------------------------- dense (flow) warps
def warp_flow(x: torch.Tensor, flow: torch.Tensor, mode: str = "bicubic", padding: str = "zeros") -> torch.Tensor:
    """Backward warp by a dense displacement: ``out(u) = x(u + flow(u))``; ``flow`` (B, 2, h, w)
    in index units of ``x`` (x component first); output size = the flow's size."""
    h, w = flow.shape[-2:]
    H, W = x.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    f = flow.double()
    gx = 2.0 * (xs + f[:, 0]) / max(W - 1, 1) - 1.0
    gy = 2.0 * (ys + f[:, 1]) / max(H - 1, 1) - 1.0
    grid = torch.stack([gx, gy], -1).to(x.dtype)
    if x.shape[0] == 1 and flow.shape[0] > 1:
        x = x.expand(flow.shape[0], -1, -1, -1)
    return F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=True)


def flow_mask(flow: torch.Tensor, src_hw: tuple[int, int], mode: str = "bicubic", tol: float = MASK_TOL) -> torch.Tensor:
    """Predictable mask (B, 1, h, w) of :func:`warp_flow`: the flow-warped all-ones tensor is 1."""
    ones = torch.ones(1, 1, *src_hw, dtype=torch.float64)
    return (warp_flow(ones, flow, mode) - 1.0).abs() <= tol


def flow_to_tensor(flow_px: torch.Tensor, geom: Geometry, hw: tuple[int, int]) -> torch.Tensor:
    """An image's backward flow (B, 2, H, W), pixels, as the flow of a tensor with geometry ``geom``
    and size ``hw``: smoothed over the stride (Gaussian, sigma = stride / 2), sampled at the
    element centres, divided by the stride. (B, 2, h, w), tensor index units."""
    (sy, sx), (oy, ox) = geom.stride, geom.offset
    f = flow_px.double()
    s = max(sy, sx)
    if s > 1:
        r = max(1, int(1.5 * s + 0.5))
        t = torch.arange(-r, r + 1, dtype=torch.float64)
        k = torch.exp(-0.5 * (t / (s / 2.0)) ** 2)
        k = (k / k.sum())
        c = f.shape[1]
        f = F.conv2d(F.pad(f, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        f = F.conv2d(F.pad(f, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    h, w = hw
    H, W = f.shape[-2:]
    ys = sy * torch.arange(h, dtype=torch.float64) + oy
    xs = sx * torch.arange(w, dtype=torch.float64) + ox
    gy, gx = torch.meshgrid(2.0 * ys / (H - 1) - 1.0, 2.0 * xs / (W - 1) - 1.0, indexing="ij")
    grid = torch.stack([gx, gy], -1)[None].expand(f.shape[0], -1, -1, -1)
    ft = F.grid_sample(f, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return torch.cat([ft[:, :1] / sx, ft[:, 1:] / sy], 1)
