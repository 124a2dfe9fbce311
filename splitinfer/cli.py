"""The ``splitinfer`` command: one subcommand per job, each importing only what it needs
(so the edge and cloud commands never import torch)."""
from __future__ import annotations

import argparse
import sys


def _train_pointcloud(a: argparse.Namespace) -> int:
    from .training.pointcloud import TrainConfig, train
    cfg = TrainConfig(size=a.size, points=a.points, lmbda=a.lmbda, data=a.data, out=a.out,
                      epochs=a.epochs, batch_size=a.batch_size, lr=a.lr, patience=a.patience,
                      val_fraction=a.val_fraction, seed=a.seed, warm_start=a.warm_start,
                      freeze_encoder=a.freeze_encoder, feature_cache=a.feature_cache,
                      augment=not a.no_augment, plain=a.plain, max_batches=a.max_batches, threads=a.threads)
    train(cfg)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splitinfer", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train a model (needs torch)").add_subparsers(dest="task", required=True)
    t = tr.add_parser("pointcloud", help="train a point-cloud codec on ModelNet40")
    t.add_argument("--size", choices=["full", "lite", "micro"], required=True)
    t.add_argument("--points", type=int, default=1024)
    t.add_argument("--lmbda", type=float, required=True, help="weight of cross-entropy vs bits")
    t.add_argument("--data", help="ModelNet40 folder (default ../shared/datasets/modelnet40)")
    t.add_argument("--out", required=True, help="run folder: checkpoints and log.jsonl")
    t.add_argument("--epochs", type=int, default=500)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--patience", type=int, default=15, help="early stopping patience (epochs)")
    t.add_argument("--val-fraction", type=float, default=0.1)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--warm-start", help="checkpoint to initialise from (another model)")
    t.add_argument("--freeze-encoder", action="store_true", help="train gain, entropy model and classifier only")
    t.add_argument("--feature-cache", help="with --freeze-encoder: cache of pooled trunk features")
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--plain", action="store_true",
                   help="uncompressed PointNet (no quantization, no rate): the input-compression baselines' classifier")
    t.add_argument("--max-batches", type=int, help="cap batches per epoch (smoke runs)")
    t.add_argument("--threads", type=int)
    t.set_defaults(func=_train_pointcloud)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
