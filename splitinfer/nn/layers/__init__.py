"""Small building blocks shared by the point-cloud and image models."""
from __future__ import annotations

import torch
import torch.nn as nn


class Gain(nn.Module):
    """Learned per-channel gain, initialised to ones and multiplied by a fixed constant.

    Before quantization it sets the step size of every latent channel, i.e. the rate
    (the encoder's gain is ones x 10, the reconstruction network's ones x 1/10).
    """

    def __init__(self, channels: int, constant: float):
        super().__init__()
        self.constant = constant
        self.weight = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * (self.weight * self.constant)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: lets grouped convolutions exchange information."""

    def __init__(self, groups: int):
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, n = x.shape
        return x.view(b, self.groups, c // self.groups, n).transpose(1, 2).reshape(b, c, n)


def pointwise(c_in: int, c_out: int, groups: int = 1, bn: bool = True, relu: bool = True) -> nn.Sequential:
    """Pointwise (kernel 1) Conv1d, optionally followed by BatchNorm and ReLU."""
    layers: list[nn.Module] = [nn.Conv1d(c_in, c_out, 1, groups=groups, bias=not bn)]
    if bn:
        layers.append(nn.BatchNorm1d(c_out))
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class STERound(torch.autograd.Function):
    """Rounding with a straight-through gradient."""

    @staticmethod
    def forward(ctx, x):
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad):
        return grad


def ste_round(x: torch.Tensor) -> torch.Tensor:
    return STERound.apply(x)


from .gdn import GDN  # noqa: E402  (image codec nonlinearity)
