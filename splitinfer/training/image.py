"""Train the factorized-prior image codec on BSDS500 (Ballé et al., "Variational image compression with a scale hyperprior", ICLR 2018).

Loss = bpp + lambda * 255^2 * MSE on random crops of BSDS500 train+test (flips), validated on
BSDS500 val (centre crops, rounding, exact bits from the likelihoods). Kodak is never used here.
An "epoch" is ``steps`` optimizer steps; ``last.pt`` resumes, ``best.pt`` keeps the best
validation loss, ``log.jsonl`` logs each epoch and the wall time is accumulated across resumes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..image.data import load_folder, random_crop, resolve
from ..nn.models import FactorizedPrior
from .loop import fit_epochs, optimizer_step, start_run


@dataclass
class ImageTrainConfig:
    lmbda: float = 0.0067
    N: int = 64
    M: int = 96
    data: str | None = None
    out: str = "runs/image"
    epochs: int = 20
    steps: int = 200
    batch_size: int = 8
    patch: int = 128
    lr: float = 3e-4
    aux_lr: float = 1e-3
    seed: int = 0
    warm_start: str | None = None
    threads: int | None = None
    val_images: int = 24
    val_patch: int = 256


def _crops(images: list[np.ndarray], n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    out = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        out[i] = random_crop(images[rng.integers(len(images))], size, rng)
    return torch.from_numpy(out).permute(0, 3, 1, 2).float() / 255


def _centre(im: np.ndarray, size: int) -> np.ndarray:
    y, x = (im.shape[0] - size) // 2, (im.shape[1] - size) // 2
    return im[y:y + size, x:x + size]


class ImageTrainer:
    def __init__(self, cfg: ImageTrainConfig):
        self.cfg = cfg
        self.rng, self.out = start_run(cfg)
        root = resolve(cfg.data, "bsds500")
        self.train_images = load_folder(root / "train") + load_folder(root / "test")
        val = load_folder(root / "val")[:cfg.val_images]
        self.val = torch.from_numpy(np.stack([_centre(v, cfg.val_patch) for v in val])
                                    ).permute(0, 3, 1, 2).float() / 255
        self.model = FactorizedPrior(cfg.N, cfg.M)
        if cfg.warm_start:
            state = torch.load(cfg.warm_start, map_location="cpu", weights_only=False)["model"]
            self.model.load_state_dict(state)
            print(f"warm start from {cfg.warm_start}")
        eb = self.model.entropy_bottleneck
        self.opt = torch.optim.Adam([p for n, p in self.model.named_parameters()
                                     if not n.endswith("quantiles")], lr=cfg.lr)
        self.aux_opt = torch.optim.Adam([eb.quantiles], lr=cfg.aux_lr)
        self.epoch, self.best, self.wall = 0, math.inf, 0.0
        if (self.out / "last.pt").exists():
            s = torch.load(self.out / "last.pt", map_location="cpu", weights_only=False)
            self.model.load_state_dict(s["model"])
            self.opt.load_state_dict(s["opt"])
            self.aux_opt.load_state_dict(s["aux_opt"])
            self.epoch, self.best, self.wall = s["epoch"], s["best"], s["wall"]
            self.rng.bit_generator.state = s["rng"]
            for group in self.opt.param_groups:  # a resumed run may change its learning rate
                group["lr"] = cfg.lr
            print(f"resumed at epoch {self.epoch}")

    def _save(self, name: str, record: dict | None = None) -> None:
        state = {"model": self.model.state_dict(), "opt": self.opt.state_dict(),
                 "aux_opt": self.aux_opt.state_dict(), "epoch": self.epoch, "best": self.best,
                 "wall": self.wall, "config": asdict(self.cfg), "rng": self.rng.bit_generator.state}
        torch.save(state, self.out / f"{name}.tmp")
        (self.out / f"{name}.tmp").replace(self.out / name)

    @torch.no_grad()
    def validate(self) -> dict:
        self.model.eval()
        bpp, mse = 0.0, 0.0
        for x in self.val.split(8):
            o = self.model.rate_distortion(x, self.cfg.lmbda)
            bpp += float(o["bpp"]) * len(x)
            mse += float(o["mse"]) * len(x)
        bpp, mse = bpp / len(self.val), mse / len(self.val)
        return {"val_bpp": bpp, "val_psnr": 10 * math.log10(1 / mse),
                "val_loss": bpp + self.cfg.lmbda * 255 ** 2 * mse}

    def train_epoch(self) -> dict:
        self.model.train()
        tot = {"loss": 0.0, "bpp": 0.0, "mse": 0.0, "aux": 0.0}
        bar = tqdm(range(self.cfg.steps), desc=f"epoch {self.epoch + 1}", leave=False,
                   disable=None, mininterval=2)
        for _ in bar:
            x = _crops(self.train_images, self.cfg.batch_size, self.cfg.patch, self.rng)
            o = self.model.rate_distortion(x, self.cfg.lmbda)
            if not torch.isfinite(o["loss"]):
                raise FloatingPointError(f"non-finite loss in epoch {self.epoch + 1}: resume "
                                         "from last.pt with a lower --lr")
            aux = optimizer_step(o["loss"], self.model, self.opt, self.aux_opt)
            for k, v in zip(tot, (o["loss"], o["bpp"], o["mse"], aux)):
                tot[k] += float(v.detach())
            bar.set_postfix(bpp=f"{float(o['bpp'].detach()):.3f}")
        return {k: v / self.cfg.steps for k, v in tot.items()}

    def fit(self) -> dict:
        return fit_epochs(self, self.cfg.epochs, "val_loss", lambda v: (
            f"val bpp {v['val_bpp']:.4f} psnr {v['val_psnr']:.2f} loss {v['val_loss']:.4f}"))


def train(cfg: ImageTrainConfig) -> dict:
    return ImageTrainer(cfg).fit()
