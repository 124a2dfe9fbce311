"""Adaptive entropy bottleneck: learned compression of the encoding distributions themselves
(Ulhaq & Bajić, "Learned compression of encoding distributions", IEEE ICIP 2024, arXiv:2406.13059; thesis talk slides
9-19).

The fully factorized entropy model of the base codec (:class:`~.factorized.EntropyBottleneck`)
codes every channel of ``y_hat`` with one *static* distribution learned over the training set.
Per image these are mismatched (the amortization gap). This module measures each image's ideal
per-channel distribution ``p``, compresses it into a small quantized latent ``q`` (the side
information, rate ``R_q``) and reconstructs ``p_hat`` from ``q_hat``; ``y_hat`` is then coded
with ``p_hat`` (rate ``R_y`` = cross-entropy of ``p`` against ``p_hat``)::

    y_hat --HistogramKDE--> p (C x B) --h_a,q--> q --round--> q_hat --h_s,q--> p_hat (C x B)
                                                  |
                                                  +-- factorized EntropyBottleneck (R_q)

    loss = R_y + lambda_q * R_q      (the base transforms are frozen, so no distortion term)

with ``lambda_q`` = training patch pixels / (768 x 512): ``R_y`` on a patch is about
patch/image times the rate of a Kodak-sized image, while ``R_q`` is paid once per image.

* :class:`HistogramKDE` - triangular kernel density estimate with bin width 1 and bandwidth 1
  over ``B`` bins centred on each channel's (rounded) median of the static model. The forward
  pass returns the *hard* histogram of ``round(y)`` (exactly what the coder sees, values outside
  the window are left out and cost escapes); the backward pass is the gradient of the soft
  triangular-kernel estimate ``sum_i max(0, 1 - |y_i - b|) / n``.
* :class:`DistributionAnalysis` (h_a,q) - 1D convolutions along the bin axis (kernel 15,
  groups 8, stride 2), channel shuffles and ReLU, C x B -> Cq x B/2^layers.
* :class:`DistributionSynthesis` (h_s,q) - the mirror with transposed convolutions, a softmax
  over the bins and a probability floor, Cq x B/2^layers -> p_hat (C x B). The logits are the
  sum of a learned per-channel prior (initialised to the log of the static distributions, so
  that q = 0 reproduces the static model) and the transposed-conv output.
* :class:`AdaptiveEntropyBottleneck` - the three plus q's own factorized entropy model.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .factorized import EntropyBottleneck

#: Lower bound of every bin of p_hat (the 16-bit tables cannot code less than 2^-16 anyway).
DEFAULT_FLOOR = 2.0 ** -16


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(N, C, L) -> (N, C, L) with the channels of the ``groups`` groups interleaved
    (ShuffleNet), so that the next grouped convolution mixes information across groups."""
    n, c, length = x.shape
    return x.reshape(n, groups, c // groups, length).transpose(1, 2).reshape(n, c, length)


class _HistogramFunction(torch.autograd.Function):
    """Hard histogram forward, soft triangular-kernel gradient backward."""

    @staticmethod
    def forward(ctx, y, low, bins: int):
        # y: (N, C, n) float; low: (C,) long, first bin of each channel's window
        N, C, n = y.shape
        idx = torch.round(y).long() - low.view(1, C, 1)
        inside = (idx >= 0) & (idx < bins)
        flat = (torch.arange(N * C, device=y.device).view(N, C, 1) * bins
                + idx.clamp(0, bins - 1))
        counts = torch.zeros(N * C * bins, dtype=y.dtype, device=y.device)
        counts.index_add_(0, flat[inside], torch.ones_like(y)[inside])
        ctx.save_for_backward(y, low)
        ctx.bins = bins
        return counts.view(N, C, bins) / n

    @staticmethod
    def backward(ctx, grad):
        y, low = ctx.saved_tensors
        bins = ctx.bins
        N, C, n = y.shape
        # p_b = 1/n sum_i k(y_i - b), k(t) = max(0, 1 - |t|): dk/dy = -sign(y - b) on |y - b| < 1.
        # y lies in (floor(y), floor(y) + 1): only bins floor(y) (slope -1) and floor(y) + 1
        # (slope +1) have a non-zero kernel derivative.
        rel = y - low.view(1, C, 1).to(y.dtype)
        b0 = torch.floor(rel).long()
        g = torch.zeros_like(y)
        for b, slope in ((b0, -1.0), (b0 + 1, 1.0)):
            ok = (b >= 0) & (b < bins)
            gb = torch.gather(grad, 2, b.clamp(0, bins - 1))
            g = g + torch.where(ok, slope * gb, torch.zeros_like(gb))
        return g / n, None, None


class HistogramKDE(nn.Module):
    """Per-channel distribution ``p`` (N, C, B) of ``y`` (N, C, n) on the integer bins
    ``centres[c] - B/2 .. centres[c] + B/2 - 1`` (bin width 1, triangular kernel of bandwidth 1).

    ``p`` is normalised by ``n``: the mass of values outside the window (coded as escapes) is
    ``1 - p.sum(-1)``. Forward = hard histogram of ``round(y)``; backward = gradient of the soft
    kernel density estimate.
    """

    def __init__(self, centres, bins: int):
        super().__init__()
        centres = torch.as_tensor(np.asarray(centres), dtype=torch.long).view(-1)
        self.bins = int(bins)
        self.register_buffer("low", centres - self.bins // 2)

    @property
    def channels(self) -> int:
        return int(self.low.numel())

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if y.dim() == 4:
            y = y.flatten(2)
        return _HistogramFunction.apply(y, self.low, self.bins)


def _check_groups(channels: int, groups: int, what: str) -> None:
    if channels % groups:
        raise ValueError(f"{what} ({channels}) must be a multiple of groups ({groups})")


class DistributionAnalysis(nn.Module):
    """h_a,q: p (N, C, B) -> q (N, Cq, B / 2^layers), un-quantized.

    ``layers`` grouped strided 1D convolutions along the bin axis (kernel 15, groups 8, stride 2);
    every hidden layer is followed by a channel shuffle and a ReLU. ``transform`` maps p to the
    input features: "p" (as in the paper), "sqrt" or "log" (log of p + 1/n-ish offset).
    """

    def __init__(self, channels: int, q_channels: int, width: int | None = None,
                 layers: int = 3, kernel: int = 15, groups: int = 8, transform: str = "p"):
        super().__init__()
        width = width or channels
        for c, what in ((channels, "channels"), (q_channels, "q_channels"), (width, "width")):
            _check_groups(c, groups, what)
        if transform not in ("p", "sqrt", "log"):
            raise ValueError(f"unknown input transform {transform!r}")
        self.groups, self.transform = groups, transform
        dims = [channels] + [width] * (layers - 1) + [q_channels]
        self.convs = nn.ModuleList(
            nn.Conv1d(dims[i], dims[i + 1], kernel, stride=2, padding=kernel // 2, groups=groups)
            for i in range(layers))

    def features(self, p: torch.Tensor) -> torch.Tensor:
        if self.transform == "sqrt":
            return torch.sqrt(p + 1e-8)
        if self.transform == "log":
            return torch.log2(p + 2.0 ** -12) / 12 + 1
        return p * 4

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        x = self.features(p)
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(channel_shuffle(x, self.groups))
        return x


class DistributionSynthesis(nn.Module):
    """h_s,q: q_hat (N, Cq, B / 2^layers) -> p_hat (N, C, B), every bin >= ``floor``.

    The mirror of :class:`DistributionAnalysis` with transposed convolutions (kernel 15,
    groups 8, stride 2, channel shuffles, ReLU); the logits are ``prior + h_s,q(q_hat)`` and
    ``p_hat = floor + (1 - B floor) softmax(logits)`` over the bins.
    """

    def __init__(self, channels: int, q_channels: int, bins: int, width: int | None = None,
                 layers: int = 3, kernel: int = 15, groups: int = 8,
                 prior_logits: torch.Tensor | None = None, floor: float = DEFAULT_FLOOR):
        super().__init__()
        width = width or channels
        for c, what in ((channels, "channels"), (q_channels, "q_channels"), (width, "width")):
            _check_groups(c, groups, what)
        if bins % (2 ** layers):
            raise ValueError(f"bins ({bins}) must be a multiple of 2^layers ({2 ** layers})")
        self.groups, self.bins, self.floor = groups, bins, float(floor)
        dims = [q_channels] + [width] * (layers - 1) + [channels]
        self.convs = nn.ModuleList(
            nn.ConvTranspose1d(dims[i], dims[i + 1], kernel, stride=2, padding=kernel // 2,
                               output_padding=1, groups=groups)
            for i in range(layers))
        nn.init.zeros_(self.convs[-1].weight)  # start at the prior (the static distributions)
        nn.init.zeros_(self.convs[-1].bias)
        if prior_logits is None:
            prior_logits = torch.zeros(channels, bins)
        self.prior = nn.Parameter(torch.as_tensor(prior_logits, dtype=torch.float32).clone())

    def logits(self, q_hat: torch.Tensor) -> torch.Tensor:
        x = q_hat
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.relu(channel_shuffle(x, self.groups))
        return self.prior.unsqueeze(0) + x

    def forward(self, q_hat: torch.Tensor) -> torch.Tensor:
        p = torch.softmax(self.logits(q_hat), dim=-1)
        return self.floor + (1.0 - self.bins * self.floor) * p


def static_prior_logits(tables, low: np.ndarray, bins: int) -> torch.Tensor:
    """Log-probabilities (C, B) of the static CdfTables on each channel's bin window (bins
    outside the static support share the escape mass), clipped at 2^-20."""
    C = tables.channels
    total = float(tables.total)
    out = np.empty((C, bins))
    for c in range(C):
        v = int(low[c]) + np.arange(bins)
        j = v - int(tables.offsets[c])
        L = int(tables.lengths[c])
        inr = (j >= 0) & (j < L)
        p = np.empty(bins)
        p[inr] = tables.freqs[c, j[inr]] / total
        n_out = int((~inr).sum())
        if n_out:
            p[~inr] = tables.freqs[c, L] / total / n_out
        out[c] = np.log(np.maximum(p, 2.0 ** -20))
    return torch.from_numpy(out).float()


class AdaptiveEntropyBottleneck(nn.Module):
    """Histogram module + h_a,q + q's factorized entropy model + h_s,q (see module docstring).

    ``centres`` (C,) are the integer bin-window centres (rounded medians of the static model),
    ``bins`` = B, ``q_channels`` = Cq; q has shape (N, Cq, B / 2^layers).
    """

    def __init__(self, centres, bins: int = 64, q_channels: int = 16, width: int | None = None,
                 layers: int = 3, kernel: int = 15, groups: int = 8,
                 prior_logits: torch.Tensor | None = None, floor: float = DEFAULT_FLOOR,
                 transform: str = "p"):
        super().__init__()
        centres = np.asarray(centres).astype(np.int64).ravel()
        C = centres.size
        self.channels, self.bins, self.q_channels = C, int(bins), int(q_channels)
        self.q_length = self.bins // 2 ** layers
        self.histogram = HistogramKDE(centres, bins)
        self.h_a = DistributionAnalysis(C, q_channels, width, layers, kernel, groups, transform)
        self.h_s = DistributionSynthesis(C, q_channels, bins, width, layers, kernel, groups,
                                         prior_logits, floor)
        self.entropy_bottleneck = EntropyBottleneck(q_channels)

    @property
    def low(self) -> torch.Tensor:
        return self.histogram.low

    def forward(self, y: torch.Tensor, training: bool | None = None) -> dict:
        """y: (N, C, h, w) or (N, C, n) latents (integer y_hat for a frozen base).

        Returns p, q_hat (noisy while training, rounded otherwise), p_hat, and per item:
        ``R_y`` = sum_c n * sum_b p_cb * -log2 p_hat_cb (bits of the in-window symbols),
        ``R_q`` = -sum log2 P(q_hat) (bits), ``escapes`` = out-of-window symbols.
        """
        y = y.flatten(2) if y.dim() == 4 else y
        n = y.shape[-1]
        p = self.histogram(y)
        q = self.h_a(p)
        q_hat, likelihoods = self.entropy_bottleneck(q, training=training)
        p_hat = self.h_s(q_hat)
        R_y = -(n * p * torch.log2(p_hat)).sum(dim=(1, 2))
        R_q = -torch.log2(likelihoods).sum(dim=(1, 2))
        escapes = n * (1.0 - p.sum(-1)).sum(-1)
        return {"p": p, "q": q, "q_hat": q_hat, "p_hat": p_hat, "R_y": R_y, "R_q": R_q,
                "escapes": escapes}

    def param_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def macs(self) -> int:
        """Multiply-accumulates of h_a,q + h_s,q for one image (independent of its size)."""
        total, length = 0, self.bins
        for conv in self.h_a.convs:
            length = math.ceil(length / 2)
            total += conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] * length
        for conv in self.h_s.convs:
            total += conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] * length
            length *= 2
        return total
