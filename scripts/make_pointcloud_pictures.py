#!/usr/bin/env python
"""Critical-point and reconstruction pictures for one test cloud of a few classes
(:func:`splitinfer.training.reconstruction.make_pictures`): results/pointcloud/critical_points.png,
reconstruction.png and pictures.json. Runs nice'd and single-threaded.

usage: python scripts/make_pointcloud_pictures.py [--models full=full-p1024-l4000 ...]
       [--classes airplane chair guitar lamp] [--epochs full=12 lite=30 micro=30]
       [--train-limit 4000] [--target-points 256] [--retrain] [--data DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _pairs(items: list[str] | None, cast=str) -> dict:
    out = {}
    for it in items or []:
        k, v = it.split("=", 1)
        out[k] = cast(v)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", help="size=model name (default: the base model of each size)")
    ap.add_argument("--sizes", nargs="*", default=["full", "lite", "micro"],
                    help="sizes to train reconstructions for now (others: reuse what exists)")
    ap.add_argument("--classes", nargs="*", default=["airplane", "chair", "guitar", "lamp"])
    ap.add_argument("--epochs", nargs="*", help="size=epochs for the reconstruction training")
    ap.add_argument("--train-limit", type=int, default=4000,
                    help="train the reconstruction on N train clouds (0: all 9,843)")
    ap.add_argument("--target-points", type=int, default=256,
                    help="target points per cloud in the training Chamfer loss (validation uses all)")
    ap.add_argument("--retrain", action="store_true", help="retrain existing reconstruction checkpoints")
    ap.add_argument("--data", help="ModelNet40 folder (default ../shared/datasets/modelnet40)")
    ap.add_argument("--out", default=str(ROOT / "results" / "pointcloud"))
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    a = ap.parse_args()
    os.nice(10)
    import torch
    torch.set_num_threads(1)
    from splitinfer.training.reconstruction import make_pictures
    return make_pictures(a.out, a.runs, _pairs(a.models), a.sizes, a.classes, _pairs(a.epochs, int),
                         a.train_limit or None, a.target_points, a.retrain, a.data)


if __name__ == "__main__":
    sys.exit(main())
