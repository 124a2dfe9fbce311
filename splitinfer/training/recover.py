"""Warm start from an exported model: rebuild a torch ``PointCloudCodec`` from ``models/<name>/<v>/``.

Training runs (``runs/``) are not part of the repository, but every shipped model is; this turns
one back into a checkpoint that ``splitinfer train pointcloud --warm-start`` accepts.

The export folds every BatchNorm into its convolution (eval mode) and ships the entropy model
only as quantized CDF tables, so three things are rebuilt:

1. each fused convolution ``(W, b)`` becomes the conv ``W`` plus a BatchNorm whose running
   statistics are the measured per-channel mean and variance of ``W x`` over training clouds,
   with the affine ``gamma = sqrt(var + eps)``, ``beta = mean + b``: eval mode computes the
   exported function exactly, train mode (batch statistics) very nearly;
2. the gains are read back (exported multiplier / the layer's constant);
3. the entropy bottleneck (Balle et al. 2018) is refitted to the latents y of the training clouds:
   bits of ``y + U(-1/2, 1/2)`` plus the quantile loss, with every other parameter frozen.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from onnx import load, numpy_helper
from tqdm import tqdm

from ..nn.layers import Gain
from ..nn.models import PointCloudCodec
from ..pointcloud import data as mn40
from ..pointcloud.preprocess import preprocess_batch
from .loop import optimizer_step


def _graph_parameters(path: Path) -> tuple[list[tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """(weight, bias) of every Conv node and the constant of every Mul node, in graph order."""
    graph = load(str(path)).graph
    init = {t.name: numpy_helper.to_array(t).copy() for t in graph.initializer}
    convs, muls = [], []
    for node in graph.node:
        if node.op_type == "Conv":
            convs.append((init[node.input[1]], init[node.input[2]]))
        elif node.op_type == "Mul":
            muls += [init[i] for i in node.input if i in init]
    return convs, muls


def _load_exported(model: PointCloudCodec, folder: Path) -> list[tuple[nn.Conv1d, nn.BatchNorm1d, np.ndarray]]:
    """Copy the exported weights into ``model``; returns the (conv, bn, fused bias) triples whose
    BatchNorm still needs statistics. Until then each BN is the identity plus the fused bias."""
    enc_convs, enc_muls = _graph_parameters(folder / "encoder.onnx")
    cls_convs, cls_muls = _graph_parameters(folder / "classifier.onnx")
    blocks = [m for m in model.encoder.layers if isinstance(m, nn.Sequential)]
    head = model.classifier.net
    pending = []
    for block, (w, b) in zip(blocks + [head[0]], enc_convs + cls_convs[:1]):
        conv, bn = block[0], block[1]
        conv.weight.data.copy_(torch.from_numpy(w))
        bn.running_mean.zero_()
        bn.running_var.fill_(1.0 - bn.eps)
        bn.weight.data.fill_(1.0)
        bn.bias.data.copy_(torch.from_numpy(b))
        pending.append((conv, bn, b))
    for conv, (w, b) in zip([head[1], head[3]], cls_convs[1:]):
        conv.weight.data.copy_(torch.from_numpy(w))
        conv.bias.data.copy_(torch.from_numpy(b))
    gains: list[tuple[Gain, np.ndarray]] = [(model.gain, enc_muls[-1]), (model.classifier.gain, cls_muls[-1])]
    for gain, value in gains:
        gain.weight.data.copy_(torch.from_numpy(value.reshape(1, -1, 1) / gain.constant))
    if len(enc_convs) != len(blocks) or len(cls_convs) != 3:
        raise ValueError(f"{folder}: the graphs do not match a {model.size} codec")
    return pending


@torch.no_grad()
def _fit_batchnorm(model: PointCloudCodec, pending, points: np.ndarray) -> torch.Tensor:
    """Measure mean/var of every fused conv's output W x and move them into its BatchNorm.
    Returns the latents y of ``points`` from the same pass (the function does not change)."""
    sums = {conv: [0.0, 0.0, 0] for conv, _, _ in pending}

    def hook(conv, _inp, out):  # per-batch moments in float32, accumulated in float64
        s, n = sums[conv], out.shape[0] * out.shape[2]
        s[0] = s[0] + out.mean(dim=(0, 2)).double() * n
        s[1] = s[1] + (out * out).mean(dim=(0, 2)).double() * n
        s[2] += n

    handles = [conv.register_forward_hook(hook) for conv in sums]
    model.eval()
    latents = []
    for i in range(0, len(points), 256):
        y = model.analysis(torch.from_numpy(points[i:i + 256]))
        model.classifier(torch.round(y))  # the classifier's fused conv sees y_hat
        latents.append(y)
    for h in handles:
        h.remove()
    for conv, bn, b in pending:
        s1, s2, n = sums[conv]
        mean = s1 / n
        var = (s2 / n - mean ** 2).clamp_min(0)
        bn.running_mean.copy_(mean.float())
        bn.running_var.copy_(var.float())
        bn.weight.data.copy_(torch.sqrt(var + bn.eps).float())
        bn.bias.data.copy_(mean.float() + torch.from_numpy(b))
    return torch.cat(latents)


def _fit_entropy_model(model: PointCloudCodec, y: torch.Tensor, steps: int, seed: int) -> float:
    """Refit the factorized density to the latents ``y``; returns the mean estimated bits of y_hat."""
    torch.manual_seed(seed)
    eb = model.entropy_bottleneck
    with torch.no_grad():  # start the quantiles at the data's range
        lo, hi = y.amin(dim=(0, 2)), y.amax(dim=(0, 2))
        eb.quantiles.data[:, 0, 0] = lo - 1
        eb.quantiles.data[:, 0, 1] = (lo + hi) / 2
        eb.quantiles.data[:, 0, 2] = hi + 1
    main = [p for n, p in eb.named_parameters() if n != "quantiles"]
    opt = torch.optim.Adam(main, lr=1e-2)
    aux_opt = torch.optim.Adam([eb.quantiles], lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    rng = np.random.default_rng(seed)
    eb.train()
    for _ in tqdm(range(steps), desc="entropy model", disable=None, mininterval=2):
        batch = y[torch.from_numpy(rng.integers(0, len(y), 256))]
        _, likelihoods = eb(batch)
        rate = -torch.log2(likelihoods).sum(dim=(1, 2)).mean()
        optimizer_step(rate, model, opt, aux_opt, clip=math.inf)  # no clipping
        sched.step()
    for _ in range(2000):  # settle the quantiles on the final density
        aux = eb.aux_loss()
        aux_opt.zero_grad()
        aux.backward()
        aux_opt.step()
    eb.eval()
    with torch.no_grad():
        return float(-torch.log2(eb.likelihood(torch.round(y))).sum(dim=(1, 2)).mean())


def recover_checkpoint(folder: str | Path, clouds: np.ndarray, out: str | Path,
                       steps: int = 3000, seed: int = 0) -> dict:
    """Rebuild the torch codec of the exported model in ``folder`` and save it as ``out``, a
    checkpoint with ``model``, ``config``, ``classes``, ``epoch`` and ``wall`` like the trainer's
    (``wall``: the source's training time, warm-start chain included, plus this rebuild).
    BatchNorm statistics and the entropy model are measured on ``clouds`` (N, P0, 3), training
    clouds preprocessed here as at the edge. Returns what was measured."""
    t0 = time.time()
    folder = Path(folder)
    cfg = json.loads((folder / "config.json").read_text())
    if cfg.get("task") != "pointcloud-classification":
        raise ValueError(f"{folder}: not a point-cloud codec")
    model = PointCloudCodec(cfg["size"], len(cfg["classes"]))
    pending = _load_exported(model, folder)
    x = preprocess_batch(clouds, cfg["points"], seed=0)
    y = _fit_batchnorm(model, pending, x)
    bits = _fit_entropy_model(model, y, steps, seed)
    train_cfg = {"size": cfg["size"], "points": cfg["points"], "lmbda": cfg["lmbda"],
                 "val_fraction": 0.1, "seed": 0, "warm_start": None, "freeze_encoder": False,
                 "recovered_from": str(folder)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the wall time carries the source's whole training chain, so later runs report it
    chain = cfg.get("training", {}).get("wall_time_with_warm_start_s") or 0.0
    torch.save({"model": model.state_dict(), "config": train_cfg, "classes": cfg["classes"],
                "epoch": 0, "wall": chain + time.time() - t0}, out)
    return {"model": cfg["name"], "estimated_bits": bits,
            "shipped_estimated_bits_test": cfg.get("metrics", {}).get("estimated_bits_mean")}


def training_clouds(data: str | Path | None, count: int = 4096, seed: int = 0) -> np.ndarray:
    """``count`` random clouds of the ModelNet40 train split, the validation split left out."""
    points, labels = mn40.load_split(data, "train")
    train, _ = mn40.train_val_split(labels, 0.1, 0)
    return points[np.random.default_rng(seed).permutation(train)[:count]]
