"""PointNet-style split classifier with a learned entropy bottleneck (Ulhaq & Bajić, "Learned point cloud compression for classification", IEEE MMSP 2023, arXiv:2308.05959).

edge:  points (B, 3, P) -> g_a (pointwise Conv1d+BN+ReLU) -> max pool -> gain (x10) -> y
       -> round -> y_hat (integer symbols, range-coded with the factorized model)
cloud: y_hat -> classifier (gain, Conv1d C->512, BN, ReLU, Conv1d 512->256, Dropout, ->40)
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..entropy_models import EntropyBottleneck
from ..layers import ChannelShuffle, Gain, pointwise, ste_round


@dataclass(frozen=True)
class EncoderSpec:
    widths: tuple[int, ...]
    groups: tuple[int, ...]
    shuffle_after: tuple[int, ...] = ()  # layer indices followed by a channel shuffle
    recon_widths: tuple[int, ...] = ()

    @property
    def channels(self) -> int:
        return self.widths[-1]

    def macs_per_point(self) -> int:
        return sum(a * b // g for a, b, g in zip(self.widths[:-1], self.widths[1:], self.groups))


ENCODER_SPECS = {
    "full": EncoderSpec((3, 64, 64, 64, 128, 1024), (1, 1, 1, 1, 1),
                        recon_widths=(1024, 256, 256, 512, 3072)),
    "lite": EncoderSpec((3, 8, 8, 16, 16, 32), (1, 1, 1, 2, 4), shuffle_after=(3,),
                        recon_widths=(32, 64, 64, 256, 3072)),
    "micro": EncoderSpec((3, 16), (1,), recon_widths=(16, 64, 64, 256, 3072)),
}


class PointEncoder(nn.Module):
    """g_a: pointwise layers (each Conv1d -> BN -> ReLU, the last included), then max pool."""

    def __init__(self, size: str):
        super().__init__()
        spec = ENCODER_SPECS[size]
        layers: list[nn.Module] = []
        for i, (a, b, g) in enumerate(zip(spec.widths[:-1], spec.widths[1:], spec.groups)):
            layers.append(pointwise(a, b, groups=g))
            if i in spec.shuffle_after:
                layers.append(ChannelShuffle(g))
        self.layers = nn.Sequential(*layers)

    def features(self, points: torch.Tensor) -> torch.Tensor:
        """Per-point features (B, C, P) before pooling."""
        return self.layers(points)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.features(points).amax(dim=2, keepdim=True)

    def critical_points(self, points: torch.Tensor) -> torch.Tensor:
        """Index of the point that sets each channel's max: the critical point set (B, C)."""
        return self.features(points).argmax(dim=2)


class Classifier(nn.Module):
    """Cloud-side classifier on y_hat (B, C, 1) -> logits (B, classes)."""

    def __init__(self, channels: int, classes: int = 40, dropout: float = 0.3):
        super().__init__()
        self.gain = Gain(channels, 0.1)  # undoes the encoder's x10 step (learned)
        self.net = nn.Sequential(pointwise(channels, 512), nn.Conv1d(512, 256, 1),
                                 nn.Dropout(dropout), nn.Conv1d(256, classes, 1))

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.net(self.gain(y_hat))[:, :, 0]


class Reconstruction(nn.Module):
    """Visualisation only: y_hat -> 1024 points, trained with Chamfer loss on a detached y_hat."""

    def __init__(self, size: str):
        super().__init__()
        widths = ENCODER_SPECS[size].recon_widths
        layers: list[nn.Module] = [Gain(widths[0], 0.1)]
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
            last = i == len(widths) - 2
            layers.append(pointwise(a, b, bn=False, relu=not last))
        self.net = nn.Sequential(*layers)

    def forward(self, y_hat: torch.Tensor) -> torch.Tensor:
        return self.net(y_hat).view(-1, 1024, 3)


def chamfer_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Symmetric Chamfer distance between point sets (B, N, 3) and (B, M, 3)."""
    d = torch.cdist(a, b)
    return (d.min(2).values ** 2).mean(1) + (d.min(1).values ** 2).mean(1)


class PointCloudCodec(nn.Module):
    """Encoder + gain + entropy bottleneck + classifier, trained on bits + lambda * CE."""

    def __init__(self, size: str, classes: int = 40, plain: bool = False):
        super().__init__()
        self.size = size
        self.plain = plain  # uncompressed baseline: classify y itself, no rate term
        spec = ENCODER_SPECS[size]
        self.encoder = PointEncoder(size)
        self.gain = Gain(spec.channels, 10.0)
        self.entropy_bottleneck = EntropyBottleneck(spec.channels)
        self.classifier = Classifier(spec.channels, classes)

    def analysis(self, points: torch.Tensor) -> torch.Tensor:
        """y = gain * maxpool(g_a(points)); points (B, P, 3) -> (B, C, 1)."""
        return self.gain(self.encoder(points.transpose(1, 2)))

    def encode_symbols(self, points: torch.Tensor) -> torch.Tensor:
        """What the exported edge encoder computes: integer symbols y_hat (B, C)."""
        return torch.round(self.analysis(points))[:, :, 0].to(torch.int32)

    def forward(self, points: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.head(self.encoder(points.transpose(1, 2)))

    def head(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """Everything after the max pool: gain, entropy bottleneck, classifier (a frozen trunk's
        cached features enter here)."""
        y = self.gain(pooled)
        if self.plain:
            return {"y": y, "logits": self.classifier(y), "bits": torch.zeros(len(y))}
        _, likelihoods = self.entropy_bottleneck(y)  # noisy proxy while training
        y_hat = ste_round(y) if self.training else torch.round(y)
        logits = self.classifier(y_hat)
        bits = -torch.log2(likelihoods).sum(dim=(1, 2))
        return {"y": y, "y_hat": y_hat, "likelihoods": likelihoods, "bits": bits, "logits": logits}

    def loss(self, out: dict[str, torch.Tensor], labels: torch.Tensor, lmbda: float):
        ce = F.cross_entropy(out["logits"], labels)
        rate = out["bits"].mean()
        return rate + lmbda * ce, rate, ce
