"""Train the point-cloud codec: loss = bits + lambda * cross-entropy (Ulhaq & Bajić, MMSP 2023).

Two modes share one loop:
- end to end: encoder, gain, entropy bottleneck and classifier all learn (random P-point subset
  of every cloud each epoch, anisotropic scale augmentation);
- ``freeze_encoder``: a warm-started encoder trunk is frozen and its max-pooled features are cached
  for a few random subsets, so a new rate point (gain, entropy model, classifier) trains in minutes.

Every epoch is logged to ``log.jsonl``; ``last.pt`` allows resuming; ``best.pt`` holds the best
validation loss; the wall time is accumulated across resumes. With ``ema`` the weights that are
validated and kept in ``best.pt`` are an exponential moving average of the trained ones. With
``teacher`` part of the cross-entropy gives way to distillation from a shipped model (distill.py).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..nn.models import PointCloudCodec
from ..pointcloud import data as mn40
from ..pointcloud.preprocess import normalize, preprocess, preprocess_batch
from ..pointcloud.scans import scan, scan_set
from .distill import distillation_loss, teacher_logits
from .loop import cosine_lr, optimizer_step, start_run


@dataclass
class TrainConfig:
    size: str = "micro"
    points: int = 1024
    lmbda: float = 1000.0
    data: str | None = None
    out: str = "runs/pointcloud"
    epochs: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    aux_lr: float = 0.05
    patience: int = 15
    val_fraction: float = 0.1
    seed: int = 0
    warm_start: str | None = None
    freeze_encoder: bool = False
    feature_views: int = 4
    plain: bool = False  # no quantization, no rate: the uncompressed PointNet baseline
    feature_cache: str | None = None  # .pt file shared by rate points of one frozen trunk
    augment: bool = True
    bootstrap: bool = False  # training subsets drawn with replacement (see _subset)
    jitter: float = 0.0  # std of per-point Gaussian noise (PointNet: 0.01, clipped at 5 sigma)
    bn_batches: int = 64  # batches that re-estimate BatchNorm statistics before each validation
    bf16: bool = False  # trunk forward/backward in bfloat16 autocast (about 2x faster on CPU)
    cosine: bool = False  # lr follows a cosine from ``lr`` to 1% of it over ``epochs`` (no plateau rule)
    ema: float = 0.0  # per-step decay of a moving average of the weights, validated and saved (0: off)
    teacher: str | None = None  # a shipped model whose soft targets are distilled (see distill.py)
    teacher_models: str = "models"  # the model repository that holds ``teacher``
    kd_alpha: float = 0.5  # weight of the distillation term against the hard-label cross-entropy
    kd_temperature: float = 4.0
    scans: float = 0.0  # fraction of training views that are simulated scans (scans.py)
    preprocess: dict | None = None  # the model's preprocessing (preprocess.py); None: mean / max radius
    max_batches: int | None = None  # cap per epoch (smoke tests)
    threads: int | None = None
    extra: dict = field(default_factory=dict)


def _subset(points: np.ndarray, count: int, rng: np.random.Generator, augment: bool,
            bootstrap: bool = False, jitter: float = 0.0) -> np.ndarray:
    """Random ``count``-point subset of every cloud, optionally anisotropically scaled and jittered
    (per-point Gaussian noise of std ``jitter``, clipped at 5 std, as in PointNet), renormalised.

    ``bootstrap`` draws with replacement instead: with ModelNet40's 1024-point clouds and P=1024 a
    subset is the whole cloud every epoch, while a bootstrap sample keeps about 63% of the points,
    close to the thesis's random 1024 of 2048."""
    n = points.shape[1]
    if bootstrap:
        idx = rng.integers(0, n, size=(len(points), count))
    else:
        idx = np.argsort(rng.random((len(points), n)), axis=1)[:, :count]
    out = np.take_along_axis(points, idx[:, :, None], axis=1)
    if augment:
        out = out * rng.uniform(0.8, 1.25, size=(len(points), 1, 3)).astype(np.float32)
        if jitter:
            out = out + np.clip(rng.normal(0, jitter, out.shape), -5 * jitter, 5 * jitter)
        out = np.stack([normalize(c) for c in out])
    return out.astype(np.float32)


def _views(points: np.ndarray, count: int, rng: np.random.Generator, spec: dict | None,
           scans: float, augment: bool) -> np.ndarray:
    """One training view of every cloud, through the model's preprocessing ``spec``: a simulated
    scan with probability ``scans``, else the complete cloud (anisotropically scaled when
    ``augment``); then ``count`` points sampled as at the edge (a fresh seed per view)."""
    out = np.empty((len(points), count, 3), np.float32)
    for i, c in enumerate(points):
        if rng.random() < scans:
            c = scan(c, rng)
        elif augment:
            c = c * rng.uniform(0.8, 1.25, size=(1, 3)).astype(np.float32)
        out[i] = preprocess(c, count, int(rng.integers(2 ** 31)), spec=spec)
    return out


VAL_SCAN_SEED = 1
"""Seed of the validation split's scans (the benchmark's test scans default to seed 0)."""


def _fixed_subset(points: np.ndarray, count: int, seed: int, spec: dict | None = None) -> np.ndarray:
    """The evaluation subset: the same preprocessing the torch-free pipeline applies."""
    return preprocess_batch(points, count, seed, spec=spec)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.rng, self.out = start_run(cfg)
        points, labels = mn40.load_split(cfg.data, "train")
        tr, va = mn40.train_val_split(labels, cfg.val_fraction, cfg.seed)
        self.train_points, self.train_labels = points[tr], labels[tr]
        self.val_points = _fixed_subset(points[va], cfg.points, seed=0, spec=cfg.preprocess)
        self.val_labels = labels[va]
        self.val_clean = len(va)  # the first val_clean validation clouds are clean, the rest scans
        if cfg.scans:  # validate on the clean clouds and on one scan of each
            scans = _fixed_subset(scan_set(points[va], VAL_SCAN_SEED), cfg.points, 0, cfg.preprocess)
            self.val_points = np.concatenate([self.val_points, scans])
            self.val_labels = np.concatenate([self.val_labels, labels[va]])
        self.classes = mn40.load_classes(cfg.data)
        self.model = PointCloudCodec(cfg.size, len(self.classes), plain=cfg.plain)
        if cfg.warm_start:
            state = torch.load(cfg.warm_start, map_location="cpu", weights_only=False)["model"]
            own = self.model.state_dict()
            skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
            if skipped:  # another label set (fine-tuning on one's own classes): a fresh last layer
                print(f"warm start: {', '.join(skipped)} re-initialised (shapes differ)")
            state = {k: v for k, v in state.items() if k not in skipped}
            missing = self.model.load_state_dict(state, strict=False)
            print(f"warm start from {cfg.warm_start}: {missing}")
        eb = self.model.entropy_bottleneck
        trained = [n for n, _ in self.model.named_parameters()
                   if not (cfg.freeze_encoder and n.startswith("encoder."))]
        params = dict(self.model.named_parameters())
        main = [params[n] for n in trained if not n.endswith("quantiles")]
        self.opt = torch.optim.Adam(main, lr=cfg.lr)
        self.aux_opt = torch.optim.Adam([eb.quantiles], lr=cfg.aux_lr)
        self.sched = torch.optim.lr_scheduler.ReduceLROnPlateau(self.opt, factor=0.5, patience=5)
        self.epoch, self.best, self.stale = 0, math.inf, 0
        self.features = None
        self.val_features = None
        self.ema = WeightAverage(self.model, trained, cfg.ema) if cfg.ema else None
        self.wall = 0.0
        self.teacher = None  # with cfg.teacher: its logits (N, classes) for every training cloud
        if (self.out / "last.pt").exists():
            self._resume(self.out / "last.pt")

    # -- checkpoints -------------------------------------------------------------------------
    def _state(self) -> dict:
        return {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "aux_opt": self.aux_opt.state_dict(), "sched": self.sched.state_dict(),
                "epoch": self.epoch, "best": self.best, "stale": self.stale, "wall": self.wall,
                "config": asdict(self.cfg), "classes": self.classes,
                "rng": self.rng.bit_generator.state,
                "ema": self.ema.state_dict() if self.ema else None}

    def _resume(self, path: Path) -> None:
        s = torch.load(path, map_location="cpu", weights_only=False)
        self.model.load_state_dict(s["model"])
        self.opt.load_state_dict(s["opt"])
        self.aux_opt.load_state_dict(s["aux_opt"])
        self.sched.load_state_dict(s["sched"])
        self.epoch, self.best, self.stale, self.wall = s["epoch"], s["best"], s["stale"], s["wall"]
        self.rng.bit_generator.state = s["rng"]
        if self.ema and s.get("ema"):
            self.ema.load_state_dict(s["ema"])
        print(f"resumed {path} at epoch {self.epoch}")

    def _save(self, name: str) -> None:
        tmp = self.out / f"{name}.tmp"
        torch.save(self._state(), tmp)
        tmp.replace(self.out / name)

    # -- data ---------------------------------------------------------------------------------
    def _cache_features(self) -> None:
        """Frozen trunk: max-pooled features of ``feature_views`` random subsets of every cloud.
        Building the cache counts in the wall time of the run that builds it (not of those that
        load it)."""
        cache = Path(self.cfg.feature_cache) if self.cfg.feature_cache else None
        if cache and cache.exists():
            self.features = torch.load(cache)
            return
        t0 = time.time()
        enc = self.model.encoder.eval()
        views = []
        with torch.no_grad():
            for _ in tqdm(range(self.cfg.feature_views), desc="caching features", disable=None):
                pts = self._sample(self.train_points)
                feats = [enc(torch.from_numpy(pts[i:i + 256]).transpose(1, 2))
                         for i in range(0, len(pts), 256)]
                views.append(torch.cat(feats))
        self.features = views
        if cache:
            torch.save(views, cache)
        self.wall += time.time() - t0

    def _sample(self, clouds: np.ndarray) -> np.ndarray:
        """This epoch's training view of ``clouds``: subset and augmentation as configured."""
        c = self.cfg
        if c.scans or c.preprocess:
            return _views(clouds, c.points, self.rng, c.preprocess, c.scans, c.augment)
        return _subset(clouds, c.points, self.rng, c.augment, c.bootstrap, c.jitter)

    def _batches(self, limit: int | None = None):
        """One epoch of (x, clouds) batches in a fresh random order, ``clouds`` being the indices
        into the training clouds. With ``limit`` (at most that many batches) only the clouds those
        batches use are sampled."""
        n, bs = len(self.train_labels), self.cfg.batch_size
        order = self.rng.permutation(n)
        batches = min([n // bs] + [c for c in (self.cfg.max_batches, limit) if c])
        if self.features is not None:
            source, rows = self.features[self.epoch % len(self.features)], order
        elif limit:
            rows = order[:batches * bs]
            source = torch.from_numpy(self._sample(self.train_points[rows]))
            rows = np.arange(len(rows))
        else:
            source = torch.from_numpy(self._sample(self.train_points))
            rows = order
        for k in range(batches):
            batch = slice(k * bs, (k + 1) * bs)
            yield source[rows[batch]], order[batch]

    def _forward(self, x: torch.Tensor, bf16: bool | None = None) -> dict:
        """Points through the whole model, or cached trunk features through its head.

        With ``bf16`` only the trunk runs in bfloat16; the gain, the entropy model's likelihoods
        and the classifier stay in float32 (validation and export are float32 throughout)."""
        if self.features is not None:
            return self.model.head(x)
        bf16 = self.cfg.bf16 and self.model.training if bf16 is None else bf16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            pooled = self.model.encoder(x.transpose(1, 2))
        return self.model.head(pooled.float())

    # -- loop ---------------------------------------------------------------------------------
    @torch.no_grad()
    def recalibrate_batchnorm(self) -> None:
        """Precise BatchNorm (Wu & Johnson 2021): replace the running statistics by plain averages
        over ``bn_batches`` training batches of the final weights.

        The exponential moving average lags the weights; at low rates, where the gain and the
        classifier move fast, the lag alone cost 40 points of validation accuracy (batch
        statistics 66%, running statistics 28%). A frozen trunk keeps its own statistics."""
        if not self.cfg.bn_batches:
            return
        self.model.train()
        if self.cfg.freeze_encoder:
            self.model.encoder.eval()
        norms = {m: m.momentum for m in self.model.modules()
                 if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training}
        for bn in norms:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average
        for x, _ in self._batches(limit=self.cfg.bn_batches):
            self._forward(x, bf16=False)  # float32, as validation and export
        for bn, momentum in norms.items():
            bn.momentum = momentum

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        if self.cfg.freeze_encoder and self.val_features is None:  # the frozen trunk's val features
            self.val_features = torch.cat([
                self.model.encoder(torch.from_numpy(self.val_points[i:i + 256]).transpose(1, 2))
                for i in range(0, len(self.val_labels), 256)])
        logits, bits = [], []
        for i in range(0, len(self.val_labels), 256):
            if self.val_features is not None:  # the head alone, whether or not train features are cached
                out = self.model.head(self.val_features[i:i + 256])
            else:
                out = self.model(torch.from_numpy(self.val_points[i:i + 256]))
            logits.append(out["logits"])
            bits.append(out["bits"])
        logits, bits = torch.cat(logits), torch.cat(bits)
        labels = torch.from_numpy(self.val_labels)
        ce = F.cross_entropy(logits, labels).item()
        rate = bits.mean().item()
        correct = (logits.argmax(1) == labels).float()
        out = {"val_loss": rate + self.cfg.lmbda * ce, "val_bits": rate, "val_ce": ce,
               "val_accuracy": correct.mean().item()}
        if len(labels) > self.val_clean:
            out["val_accuracy_clean"] = correct[:self.val_clean].mean().item()
            out["val_accuracy_scan"] = correct[self.val_clean:].mean().item()
        return out

    def train_epoch(self) -> dict:
        self.model.train()
        if self.cfg.freeze_encoder:
            self.model.encoder.eval()
        totals = {"loss": 0.0, "bits": 0.0, "ce": 0.0, "aux": 0.0}
        n = 0
        steps = len(self.train_labels) // self.cfg.batch_size
        if self.cfg.max_batches:
            steps = min(steps, self.cfg.max_batches)
        bar = tqdm(self._batches(), total=steps, desc=f"epoch {self.epoch + 1}", leave=False,
                   disable=None, mininterval=2)
        for x, clouds in bar:
            out = self._forward(x)
            loss, rate, ce = self.model.loss(out, torch.from_numpy(self.train_labels[clouds]), self.cfg.lmbda)
            if self.teacher is not None:
                kd = distillation_loss(out["logits"], self.teacher[clouds], self.cfg.kd_temperature)
                loss = rate + self.cfg.lmbda * ((1 - self.cfg.kd_alpha) * ce + self.cfg.kd_alpha * kd)
            aux = optimizer_step(loss, self.model, self.opt, self.aux_opt)
            if self.ema:
                self.ema.update(self.model)
            for k, v in zip(totals, (loss, rate, ce, aux)):
                totals[k] += float(v.detach())
            n += 1
            bar.set_postfix(bits=f"{float(rate.detach()):.1f}", ce=f"{float(ce.detach()):.3f}")
        return {k: v / max(n, 1) for k, v in totals.items()}

    def lr_at(self, epoch: int) -> float:
        """The cosine schedule per epoch, from ``lr`` at the first down to ``lr / 100`` at the last."""
        return cosine_lr(epoch / max(self.cfg.epochs - 1, 1), self.cfg.lr, self.cfg.lr / 100)

    def _load_teacher(self) -> None:
        """The teacher's logits, computed when there are epochs to train (not for a finished run
        that is only resumed); the time counts in the wall."""
        t0 = time.time()
        self.teacher = torch.from_numpy(teacher_logits(self.cfg.teacher, self.train_points,
                                                       self.cfg.teacher_models, threads=self.cfg.threads))
        self.wall += time.time() - t0

    def fit(self) -> dict:
        if self.cfg.freeze_encoder:
            self._cache_features()
        if self.cfg.teacher and self.teacher is None and self.epoch < self.cfg.epochs:
            self._load_teacher()
        log = open(self.out / "log.jsonl", "a")
        record: dict = {}
        while self.epoch < self.cfg.epochs and self.stale < self.cfg.patience:
            t0 = time.time()
            if self.cfg.cosine:
                for g in self.opt.param_groups:
                    g["lr"] = self.lr_at(self.epoch)
            train = self.train_epoch()
            raw = self.ema.swap(self.model) if self.ema else None  # validate the average
            self.recalibrate_batchnorm()
            val = self.validate()
            self.epoch += 1
            self.wall += time.time() - t0
            if not self.cfg.cosine:
                self.sched.step(val["val_loss"])
            improved = val["val_loss"] < self.best
            self.best = min(self.best, val["val_loss"])
            self.stale = 0 if improved else self.stale + 1
            record = {"epoch": self.epoch, **train, **val, "lr": self.opt.param_groups[0]["lr"],
                      "wall_s": round(self.wall, 1)}
            log.write(json.dumps(record) + "\n")
            log.flush()
            scan_acc = f" (clean {val['val_accuracy_clean']:.4f} scan {val['val_accuracy_scan']:.4f})" \
                if "val_accuracy_scan" in val else ""
            print(f"epoch {self.epoch}: bits {val['val_bits']:.1f} acc {val['val_accuracy']:.4f}{scan_acc} "
                  f"loss {val['val_loss']:.2f} ({self.wall:.0f}s)", flush=True)
            if improved:
                self._save("best.pt")
            if raw is not None:  # training goes on from the trained weights
                self.ema.swap(self.model, raw)
            self._save("last.pt")
        return record


class WeightAverage:
    """Polyak averaging (Polyak & Juditsky 1992) as an exponential moving average of the weights:
    after every step ``avg = decay * avg + (1 - decay) * w`` for each parameter in ``names``. The
    average is what gets validated (after precise BatchNorm on its own weights) and saved as best."""

    def __init__(self, model: torch.nn.Module, names: list[str], decay: float):
        self.decay = decay
        params = dict(model.named_parameters())
        self.avg = {n: params[n].detach().clone() for n in names}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for n, p in model.named_parameters():
            if n in self.avg:
                self.avg[n].lerp_(p, 1 - self.decay)

    @torch.no_grad()
    def swap(self, model: torch.nn.Module, weights: dict | None = None) -> dict:
        """Load ``weights`` (default: the average) into ``model``; returns the weights it replaced."""
        weights = self.avg if weights is None else weights
        params = dict(model.named_parameters())
        replaced = {n: params[n].detach().clone() for n in weights}
        for n, w in weights.items():
            params[n].copy_(w)
        return replaced

    def state_dict(self) -> dict:
        return {"decay": self.decay, "avg": self.avg}

    def load_state_dict(self, state: dict) -> None:
        self.avg = {n: w.clone() for n, w in state["avg"].items()}


def train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).fit()
