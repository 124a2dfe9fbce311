"""Train the adaptive entropy bottleneck (learned compression of encoding distributions,
Ulhaq & Bajić, ICIP 2024, arXiv:2406.13059; :mod:`splitinfer.nn.entropy_models.adaptive`) on top of a frozen
factorized-prior image codec.

The base transforms are frozen, so the integer latents ``y_hat = round(g_a(x))`` of the training
data are computed once and cached (``<out>/latents.npz``, keyed by the base checkpoint's
sha256): ``crops_per_image`` random ``patch`` x ``patch`` crops (random flips) of every BSDS500
train+test image, and the whole (edge-padded) BSDS500 val images for validation. Kodak is never
used here.

Loss (bits per patch pixel) = (R_y + lambda_q R_q) / patch pixels with lambda_q = patch pixels /
(768 x 512); Adam with a cosine learning-rate decay, q's entropy model quantiles by its aux loss.
An "epoch" is ``steps`` optimizer steps; ``last.pt`` resumes, ``best.pt`` keeps the best
validation rate (R_y + R_q of every val image, each with its own q, in bits), ``log.jsonl``
logs each epoch; the wall time is accumulated across resumes (latent precomputation is recorded
apart, as ``precompute_s``).

Entry points: :func:`train_adaptive` (train, resumable), :func:`build_adaptive` (train and export
into a model version folder), and ``python -m splitinfer.training.adaptive BASE OUT``.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..codec import CdfTables
from ..image.data import image_files, load_rgb, random_crop, resolve
from ..nn.entropy_models.adaptive import (DEFAULT_FLOOR, AdaptiveEntropyBottleneck,
                                          static_prior_logits)
from ..repository import sha256
from .export_image import load_image_checkpoint
from .loop import cosine_lr, fit_epochs, optimizer_step, start_run

#: lambda_q's reference image size: a Kodak image (768 x 512 pixels).
TARGET_PIXELS = 768 * 512
BIN_CHOICES = (16, 32, 64, 128, 256)


@dataclass
class AdaptiveTrainConfig:
    base: str = ""                 # base FactorizedPrior checkpoint (frozen)
    out: str = "runs/adaptive"
    data: str | None = None        # BSDS500 root (train/, test/, val/); default ../shared
    bins: int | None = None        # B; None: the smallest of BIN_CHOICES covering `coverage`
    coverage: float = 0.99999      # fraction of training latents inside the window for auto B
    q_channels: int = 16
    width: int | None = 192        # hidden channels of h_a,q / h_s,q (None: M)
    layers: int = 3
    kernel: int = 15
    groups: int = 8
    transform: str = "p"
    floor: float = DEFAULT_FLOOR
    patch: int = 256
    crops_per_image: int = 8
    val_images: int = 100
    batch_size: int = 64
    steps: int = 250
    epochs: int = 20
    lr: float = 1e-3
    min_lr: float = 1e-5
    aux_lr: float = 1e-3
    lambda_q: float | None = None  # None: patch^2 / (768 * 512)
    seed: int = 0
    threads: int | None = 1
    warm_start: str | None = None  # an adaptive checkpoint whose h_a,q / h_s,q weights to start from


# ------------------------------------------------------------------------------ base model data


def static_tables(model) -> CdfTables:
    """The base model's static CdfTables, exactly as :func:`export_image` writes them."""
    with torch.no_grad():
        offsets, pmfs, tails = model.entropy_bottleneck.pmf_tables()
    return CdfTables.from_pmfs(offsets, pmfs, tails)


def window_centres(model) -> np.ndarray:
    """Integer bin-window centres: the static model's per-channel medians, rounded."""
    med = model.entropy_bottleneck.quantiles.detach()[:, 0, 1].numpy()
    return np.round(med).astype(np.int64)


def tables_digest(tables: CdfTables) -> str:
    import hashlib
    h = hashlib.sha256()
    for a in (tables.offsets, tables.lengths, tables.freqs):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def choose_bins(latents: np.ndarray, centres: np.ndarray, coverage: float = 0.99999,
                choices=BIN_CHOICES, min_bins: int = 16) -> tuple[int, dict]:
    """The smallest B whose windows [centre - B/2, centre + B/2) hold >= ``coverage`` of the
    latent values (N, C, n); returns (B, {B: fraction inside})."""
    dev = latents.astype(np.int64) - centres.reshape(1, -1, 1)
    inside = {}
    for B in choices:
        if B < min_bins:
            continue
        inside[B] = float(np.mean((dev >= -B // 2) & (dev < B // 2)))
        if inside[B] >= coverage:
            return B, inside
    return max(choices), inside


def _pad16(im: np.ndarray) -> np.ndarray:
    H, W = im.shape[:2]
    return np.pad(im, ((0, -H % 16), (0, -W % 16), (0, 0)), mode="edge")


@torch.no_grad()
def _latents(model, images: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i:i + batch])).permute(0, 3, 1, 2).float() / 255
        y = torch.round(model.g_a(x)).to(torch.int16)
        out.extend(y.flatten(2).numpy())
    return out


def compute_latents(model, data: str | Path | None, patch: int, crops_per_image: int,
                    val_images: int, seed: int = 0, progress: bool = True) -> dict:
    """Integer latents of the frozen g_a: ``train`` (N, C, (patch/16)^2) from random crops with
    flips of BSDS500 train+test, ``val`` one (C, n) array per (padded) BSDS500 val image."""
    root = resolve(data, "bsds500")
    rng = np.random.default_rng(seed)
    files = image_files(root / "train") + image_files(root / "test")
    train = []
    for f in tqdm(files, desc="latents (train crops)", disable=None if progress else True,
                  mininterval=5, leave=False):
        im = load_rgb(f)
        if im.shape[0] < patch or im.shape[1] < patch:
            im = _pad16(np.pad(im, ((0, max(0, patch - im.shape[0])),
                                    (0, max(0, patch - im.shape[1])), (0, 0)), mode="edge"))
        crops = []
        for _ in range(crops_per_image):
            crops.append(random_crop(im, patch, rng))
        train.extend(_latents(model, crops))
    val = []
    for f in image_files(root / "val")[:val_images]:
        val.extend(_latents(model, [_pad16(load_rgb(f))], batch=1))
    return {"train": np.stack(train), "val": val}


def _cache(model, base_sha: str, cfg: AdaptiveTrainConfig, out: Path) -> tuple[dict, float]:
    """Latents from ``out/latents.npz`` when they match the base and data settings."""
    path = out / "latents.npz"
    key = json.dumps({"base": base_sha, "patch": cfg.patch, "crops": cfg.crops_per_image,
                      "val": cfg.val_images, "seed": cfg.seed, "data": cfg.data}, sort_keys=True)
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) == key:
                val_n = z["val_n"]
                val_flat = z["val"]
                val = np.split(val_flat, np.cumsum(val_n)[:-1], axis=1)
                return {"train": z["train"], "val": val}, float(z["seconds"])
    t0 = time.time()
    lat = compute_latents(model, cfg.data, cfg.patch, cfg.crops_per_image, cfg.val_images,
                          cfg.seed)
    seconds = time.time() - t0
    val_n = np.array([v.shape[1] for v in lat["val"]])
    train, val = lat["train"], np.concatenate(lat["val"], axis=1)
    if max(np.abs(train).max(initial=0), np.abs(val).max(initial=0)) < 128:
        train, val = train.astype(np.int8), val.astype(np.int8)  # half the cache
    tmp = out / "latents.tmp.npz"
    np.savez(tmp, key=np.array(key), train=train, val=val, val_n=val_n,
             seconds=np.array(seconds))
    tmp.replace(path)
    return lat, seconds


def static_bits(flat: np.ndarray, tables: CdfTables) -> float:
    """Code length (bits) of latents (C, n) under CdfTables, escapes included."""
    return float(tables.information_bits_batch(np.asarray(flat).T).sum())


def ideal_bits(flat: np.ndarray) -> float:
    """sum_c n H(histogram of channel c): the rate with each image's exact distributions."""
    total = 0.0
    for row in np.asarray(flat):
        _, counts = np.unique(row, return_counts=True)
        total += float(-(counts * np.log2(counts / row.size)).sum())
    return total


# ------------------------------------------------------------------------------ trainer


class AdaptiveTrainer:
    def __init__(self, cfg: AdaptiveTrainConfig, progress: bool = True):
        self.cfg = cfg
        self.progress = progress
        self.rng, self.out = start_run(cfg)
        self.base, base_state = load_image_checkpoint(cfg.base)
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.base_sha = sha256(Path(cfg.base))
        self.static = static_tables(self.base)
        self.centres = window_centres(self.base)
        lat, self.precompute_s = _cache(self.base, self.base_sha, cfg, self.out)
        self.train_lat = lat["train"]
        self.val_lat = lat["val"]
        if cfg.bins:
            self.bins, self.coverage = int(cfg.bins), None
        else:
            self.bins, self.coverage = choose_bins(self.train_lat, self.centres, cfg.coverage)
        self.lambda_q = (cfg.lambda_q if cfg.lambda_q is not None
                         else cfg.patch * cfg.patch / TARGET_PIXELS)
        low = self.centres - self.bins // 2
        self.model = AdaptiveEntropyBottleneck(
            self.centres, self.bins, cfg.q_channels, cfg.width, cfg.layers, cfg.kernel,
            cfg.groups, static_prior_logits(self.static, low, self.bins), cfg.floor,
            cfg.transform)
        if cfg.warm_start:
            s = torch.load(cfg.warm_start, map_location="cpu", weights_only=False)["model"]
            own = self.model.state_dict()
            keep = {k: v for k, v in s.items()
                    if k in own and own[k].shape == v.shape and not k.startswith("histogram")}
            self.model.load_state_dict(keep, strict=False)
            print(f"warm start from {cfg.warm_start} ({len(keep)} tensors)")
        eb = self.model.entropy_bottleneck
        self.opt = torch.optim.Adam([p for n, p in self.model.named_parameters()
                                     if not n.endswith("quantiles")], lr=cfg.lr)
        self.aux_opt = torch.optim.Adam([eb.quantiles], lr=cfg.aux_lr)
        self.epoch, self.best, self.wall = 0, math.inf, 0.0
        self.val_static, self.val_ideal = self._val_references()
        if (self.out / "last.pt").exists():
            s = torch.load(self.out / "last.pt", map_location="cpu", weights_only=False)
            if s.get("base_sha256") != self.base_sha or s.get("bins") != self.bins:
                raise ValueError(f"{self.out / 'last.pt'} was trained on another base checkpoint "
                                 "or B: use a new out dir (or warm_start from it)")
            self.model.load_state_dict(s["model"])
            self.opt.load_state_dict(s["opt"])
            self.aux_opt.load_state_dict(s["aux_opt"])
            self.epoch, self.best, self.wall = s["epoch"], s["best"], s["wall"]
            self.rng.bit_generator.state = s["rng"]
            print(f"resumed at epoch {self.epoch}")

    def _val_references(self) -> tuple[float, float]:
        return (sum(static_bits(v, self.static) for v in self.val_lat),
                sum(ideal_bits(v) for v in self.val_lat))

    def _save(self, name: str, record: dict | None = None) -> None:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "aux_opt": self.aux_opt.state_dict(), "epoch": self.epoch, "best": self.best,
                 "wall": self.wall, "precompute_s": self.precompute_s, "config": asdict(self.cfg),
                 "rng": self.rng.bit_generator.state, "bins": self.bins,
                 "centres": self.centres.tolist(), "lambda_q": self.lambda_q,
                 "coverage": self.coverage, "base_sha256": self.base_sha,
                 "static_tables_sha256": tables_digest(self.static),
                 "channels": int(self.centres.size), "record": record}
        torch.save(state, self.out / f"{name}.tmp")
        (self.out / f"{name}.tmp").replace(self.out / name)

    def lr_at(self, step: int) -> float:
        total = max(1, self.cfg.epochs * self.cfg.steps)
        return cosine_lr(step / total, self.cfg.lr, self.cfg.min_lr)

    @torch.no_grad()
    def validate(self) -> dict:
        """Rates of the BSDS500 val images, each with its own q (rounded): bits and savings."""
        self.model.eval()
        groups: dict[int, list[np.ndarray]] = {}
        for v in self.val_lat:
            groups.setdefault(v.shape[1], []).append(v)
        r_y = r_q = esc = 0.0
        for arrs in groups.values():
            o = self.model(torch.from_numpy(np.stack(arrs).astype(np.float32)), training=False)
            r_y += float(o["R_y"].sum())
            r_q += float(o["R_q"].sum())
            esc += float(o["escapes"].sum())
        adaptive = r_y + r_q
        gap = self.val_ideal - self.val_static
        return {"val_R_y": r_y, "val_R_q": r_q, "val_adaptive_bits": adaptive,
                "val_static_bits": self.val_static, "val_ideal_bits": self.val_ideal,
                "val_side_bits_per_image": r_q / len(self.val_lat), "val_escapes": esc,
                "val_saving": adaptive / self.val_static - 1,
                "val_ideal_saving": self.val_ideal / self.val_static - 1,
                "val_gap_captured": (adaptive - self.val_static) / gap if gap else 0.0}

    def train_epoch(self) -> dict:
        self.model.train()
        cfg = self.cfg
        tot = {"loss": 0.0, "R_y": 0.0, "R_q": 0.0, "aux": 0.0}
        bar = tqdm(range(cfg.steps), desc=f"epoch {self.epoch + 1}", leave=False,
                   disable=None if self.progress else True, mininterval=2)
        pixels = cfg.patch * cfg.patch
        for i in bar:
            step = self.epoch * cfg.steps + i
            for g in self.opt.param_groups:
                g["lr"] = self.lr_at(step)
            idx = self.rng.integers(len(self.train_lat), size=cfg.batch_size)
            y = torch.from_numpy(self.train_lat[idx].astype(np.float32))
            o = self.model(y, training=True)
            loss = (o["R_y"] + self.lambda_q * o["R_q"]).mean() / pixels
            aux = optimizer_step(loss, self.model, self.opt, self.aux_opt)
            for k, v in zip(tot, (loss, o["R_y"].mean(), o["R_q"].mean(), aux)):
                tot[k] += float(v.detach())
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}")
        return {k: v / cfg.steps for k, v in tot.items()}

    def fit(self) -> dict:
        if self.epoch == 0 and not (self.out / "best.pt").exists():
            v0 = self.validate()
            print(f"static {v0['val_static_bits']:.0f} bits, ideal saving "
                  f"{100 * v0['val_ideal_saving']:.2f}%, B={self.bins}, "
                  f"{self.model.param_count()} params", flush=True)
        return fit_epochs(
            self, self.cfg.epochs, "val_adaptive_bits",
            lambda v: (f"val saving {100 * v['val_saving']:.2f}% (ideal "
                       f"{100 * v['val_ideal_saving']:.2f}%, gap {100 * v['val_gap_captured']:.0f}%)"
                       f", side {v['val_side_bits_per_image']:.0f} bits"),
            extra=lambda: {"lr": self.lr_at(self.epoch * self.cfg.steps)})


def train_adaptive(base_checkpoint: str | Path, out_dir: str | Path, progress: bool = True,
                   **overrides) -> dict:
    """Train (or resume) the adaptive entropy bottleneck of a frozen base checkpoint into
    ``out_dir`` (``best.pt``, ``last.pt``, ``log.jsonl``, ``latents.npz``). ``overrides`` are
    :class:`AdaptiveTrainConfig` fields. Returns the last epoch's record."""
    cfg = AdaptiveTrainConfig(base=str(base_checkpoint), out=str(out_dir), **overrides)
    return AdaptiveTrainer(cfg, progress).fit()
