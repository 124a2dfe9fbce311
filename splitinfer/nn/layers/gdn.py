"""Generalized divisive normalization (Balle et al. 2016, "Density modeling of images using a
generalized normalization transformation"), the nonlinearity of the factorized-prior image codec.

    GDN:   y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)
    IGDN:  y_i = x_i * sqrt(beta_i + sum_j gamma_ij x_j^2)

beta and gamma are kept non-negative by the usual squared reparameterisation with a pedestal
(as in tensorflow-compression and CompressAI), so the layer exports to ONNX as plain ops.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

_PEDESTAL = 2.0 ** -36


class GDN(nn.Module):
    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_bound = (beta_min + _PEDESTAL) ** 0.5
        self.gamma_bound = _PEDESTAL ** 0.5
        self.beta = nn.Parameter(torch.sqrt(torch.ones(channels) + _PEDESTAL))
        self.gamma = nn.Parameter(torch.sqrt(gamma_init * torch.eye(channels) + _PEDESTAL))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta = torch.clamp(self.beta, min=self.beta_bound) ** 2 - _PEDESTAL
        gamma = torch.clamp(self.gamma, min=self.gamma_bound) ** 2 - _PEDESTAL
        C = x.shape[1]
        norm = F.conv2d(x * x, gamma.view(C, C, 1, 1), beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm
