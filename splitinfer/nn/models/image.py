"""Factorized-prior image codec (Balle et al. 2018, "Variational image compression with a scale
hyperprior", the "factorized" baseline; Ballé et al., ICLR 2018, arXiv:1802.01436).

    y = g_a(x)             4 strided 5x5 convolutions with GDN, 16x down-sampling, M channels
    y_hat = round(y)       uniform noise while training
    x_hat = g_s(y_hat)     the mirror with transposed convolutions and inverse GDN

The learned fully factorized entropy model gives one static distribution per channel of y; these
are the "static" encoding distributions that the adaptive entropy bottleneck
(:mod:`splitinfer.nn.entropy_models.adaptive`) replaces per image.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ..entropy_models import EntropyBottleneck
from ..layers import GDN

DOWNSAMPLING = 16


def _conv(c_in: int, c_out: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 5, stride=2, padding=2)


def _deconv(c_in: int, c_out: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)


class AnalysisTransform(nn.Sequential):
    """g_a: x (B, 3, H, W) in [0, 1] -> y (B, M, H/16, W/16)."""

    def __init__(self, N: int, M: int):
        super().__init__(_conv(3, N), GDN(N), _conv(N, N), GDN(N), _conv(N, N), GDN(N),
                         _conv(N, M))


class SynthesisTransform(nn.Sequential):
    """g_s: y_hat (B, M, h, w) -> x_hat (B, 3, 16h, 16w)."""

    def __init__(self, N: int, M: int):
        super().__init__(_deconv(M, N), GDN(N, inverse=True), _deconv(N, N), GDN(N, inverse=True),
                         _deconv(N, N), GDN(N, inverse=True), _deconv(N, 3))


class FactorizedPrior(nn.Module):
    def __init__(self, N: int = 64, M: int = 96):
        super().__init__()
        self.N, self.M = N, M
        self.g_a = AnalysisTransform(N, M)
        self.g_s = SynthesisTransform(N, M)
        self.entropy_bottleneck = EntropyBottleneck(M)

    def forward(self, x: torch.Tensor) -> dict:
        y = self.g_a(x)
        B, C, h, w = y.shape
        y_tilde, likelihoods = self.entropy_bottleneck(y.reshape(B, C, h * w))
        y_tilde = y_tilde.reshape(B, C, h, w)
        return {"y": y, "y_hat": y_tilde, "x_hat": self.g_s(y_tilde),
                "likelihoods": likelihoods.reshape(B, C, h, w)}

    def rate_distortion(self, x: torch.Tensor, lmbda: float) -> dict:
        """Loss = rate (bits per pixel) + lambda * 255^2 * MSE, as in Ballé et al., ICLR 2018."""
        out = self(x)
        pixels = x.shape[0] * x.shape[2] * x.shape[3]
        bpp = -torch.log2(out["likelihoods"]).sum() / pixels
        mse = torch.mean((out["x_hat"] - x) ** 2)
        return {**out, "bpp": bpp, "mse": mse, "loss": bpp + lmbda * 255 ** 2 * mse}
