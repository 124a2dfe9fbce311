"""Learned fully factorized density model (Balle et al. 2018, "Variational image compression
with a scale hyperprior", appendix 6.1), in the form popularised by CompressAI's EntropyBottleneck.

Each channel c has its own non-parametric, monotone cumulative c_c(y); the likelihood of an
integer symbol is c_c(y + 1/2) - c_c(y - 1/2). ``quantiles`` track the tail_mass/2 and
1 - tail_mass/2 points of every channel (trained by ``aux_loss``); they bound the CDF tables that
the torch-free coder uses.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class LowerBound(torch.autograd.Function):
    """max(x, bound) whose gradient still flows when x is below the bound and pushes it up."""

    @staticmethod
    def forward(ctx, x, bound):
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad):
        x, bound = ctx.saved_tensors
        pass_through = (x >= bound) | (grad < 0)
        return pass_through.type_as(grad) * grad, None


class EntropyBottleneck(nn.Module):
    """Per-channel learned density for y of shape (B, C, N)."""

    def __init__(self, channels: int, filters=(3, 3, 3), init_scale: float = 10.0,
                 tail_mass: float = 1e-4, likelihood_bound: float = 1e-9):
        super().__init__()
        self.channels = channels
        self.tail_mass = tail_mass
        self.register_buffer("likelihood_bound", torch.tensor(likelihood_bound))
        dims = (1, *filters, 1)
        scale = init_scale ** (1 / (len(filters) + 1))
        self.matrices = nn.ParameterList()
        self.biases = nn.ParameterList()
        self.factors = nn.ParameterList()
        for i in range(len(filters) + 1):
            init = float(np.log(np.expm1(1 / scale / dims[i + 1])))
            self.matrices.append(nn.Parameter(torch.full((channels, dims[i + 1], dims[i]), init)))
            self.biases.append(nn.Parameter(torch.empty(channels, dims[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, dims[i + 1], 1)))
        q = torch.tensor([-init_scale, 0.0, init_scale])
        self.quantiles = nn.Parameter(q.repeat(channels, 1, 1))  # (C, 1, 3): low, median, high
        self.register_buffer("target", torch.tensor([-np.log(2 / tail_mass - 1), 0.0,
                                                     np.log(2 / tail_mass - 1)]))

    def logits_cumulative(self, x: torch.Tensor, stop_gradient: bool = False) -> torch.Tensor:
        """x: (C, 1, N) -> logits of the cumulative, (C, 1, N)."""
        logits = x
        for i, (matrix, bias) in enumerate(zip(self.matrices, self.biases)):
            if stop_gradient:
                matrix, bias = matrix.detach(), bias.detach()
            logits = torch.matmul(F.softplus(matrix), logits) + bias
            if i < len(self.factors):
                factor = self.factors[i].detach() if stop_gradient else self.factors[i]
                logits = logits + torch.tanh(factor) * torch.tanh(logits)
        return logits

    def aux_loss(self) -> torch.Tensor:
        """Drives ``quantiles`` to the tail_mass/2, median and 1 - tail_mass/2 points."""
        logits = self.logits_cumulative(self.quantiles, stop_gradient=True)
        return torch.abs(logits - self.target).sum()

    def likelihood(self, y: torch.Tensor) -> torch.Tensor:
        """P(round(y) = y) for integer-valued (or noisy) y of shape (B, C, N)."""
        B, C, N = y.shape
        v = y.permute(1, 0, 2).reshape(C, 1, B * N)
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper).detach()  # evaluate in the flat tail for precision
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))
        p = LowerBound.apply(p, self.likelihood_bound)
        return p.reshape(C, B, N).permute(1, 0, 2)

    def forward(self, y: torch.Tensor, training: bool | None = None):
        """Returns (y_tilde, likelihoods): additive uniform noise while training, rounding otherwise."""
        training = self.training if training is None else training
        y_tilde = y + torch.empty_like(y).uniform_(-0.5, 0.5) if training else torch.round(y)
        return y_tilde, self.likelihood(y_tilde)

    @torch.no_grad()
    def pmf_tables(self, max_length: int = 4096):
        """Integer support and probabilities per channel, from the learned quantiles.

        Returns (offsets [C] int, pmfs list of float arrays, tail [C]) where channel c covers the
        symbols offsets[c] .. offsets[c] + len(pmfs[c]) - 1 and tail[c] is the mass left outside.
        """
        q = self.quantiles.detach()[:, 0, :]
        low = torch.floor(q[:, 0]).long()
        high = torch.ceil(q[:, 2]).long()
        high = torch.maximum(high, low)
        high = torch.minimum(high, low + max_length - 1)
        length = int((high - low).max()) + 1
        v = low.view(-1, 1, 1).float() + torch.arange(length, dtype=torch.float32).view(1, 1, -1)
        lower = self.logits_cumulative(v - 0.5)
        upper = self.logits_cumulative(v + 0.5)
        sign = -torch.sign(lower + upper)
        p = torch.abs(torch.sigmoid(sign * upper) - torch.sigmoid(sign * lower))[:, 0].double()
        sizes = (high - low + 1).tolist()
        pmfs = [p[c, :n].numpy() for c, n in enumerate(sizes)]
        tails = np.array([max(0.0, 1.0 - float(x.sum())) for x in pmfs])
        return low.numpy().astype(np.int64), pmfs, tails
