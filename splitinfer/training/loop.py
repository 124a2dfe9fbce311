"""The epoch loop the image and adaptive trainers share: train an epoch, validate, add the wall
time, append the record to ``log.jsonl``, keep ``best.pt`` (lowest ``score``) and ``last.pt``.

A trainer provides ``out``, ``epoch``, ``best``, ``wall``, ``train_epoch() -> dict``,
``validate() -> dict`` and ``_save(name, record)``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np


def start_run(cfg) -> tuple[np.random.Generator, Path]:
    """What every training run does first: torch threads (``cfg.threads``), the torch and numpy
    seeds (``cfg.seed``) and the run folder (``cfg.out``). Returns (numpy generator, folder)."""
    import torch
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    return np.random.default_rng(cfg.seed), out


def fit_epochs(trainer, epochs: int, score: str, describe: Callable[[dict], str],
               extra: Callable[[], dict] | None = None) -> dict:
    """Run ``trainer`` up to ``epochs``; returns the last record. ``describe(val)`` is the
    progress line, ``extra()`` adds fields (e.g. the learning rate) to each record."""
    record: dict = {}
    with open(trainer.out / "log.jsonl", "a") as log:
        while trainer.epoch < epochs:
            t0 = time.time()
            train = trainer.train_epoch()
            val = trainer.validate()
            trainer.epoch += 1
            trainer.wall += time.time() - t0
            improved = val[score] < trainer.best
            trainer.best = min(trainer.best, val[score])
            record = {"epoch": trainer.epoch, **train, **val, **(extra() if extra else {}),
                      "wall_s": round(trainer.wall, 1)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            print(f"epoch {trainer.epoch}: {describe(val)} ({trainer.wall:.0f}s)", flush=True)
            if improved:
                trainer._save("best.pt", record)
            trainer._save("last.pt", record)
    return record


def cosine_lr(t: float, lr: float, min_lr: float) -> float:
    """Cosine annealing (Loshchilov & Hutter, SGDR) at progress ``t`` in [0, 1]: ``lr`` down to ``min_lr``."""
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def optimizer_step(loss, model, opt, aux_opt, clip: float = 1.0):
    """One step on ``loss`` (gradient norm clipped at ``clip``), then one step of the entropy
    bottleneck's quantile loss (CompressAI's ``aux_loss``); returns the aux loss."""
    import torch
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    opt.step()
    aux = model.entropy_bottleneck.aux_loss()
    aux_opt.zero_grad()
    aux.backward()
    aux_opt.step()
    return aux
