#!/usr/bin/env python
"""Validation figures of a point-cloud checkpoint, with the trainer's own ``validate()`` (the same
validation split and eval path, no training), e.g. to compare a shipped model rebuilt by
``splitinfer train recover`` with a new run's ``log.jsonl``.

usage: python scripts/validate_checkpoint.py CKPT --size full --points 1024 --lmbda 4000 --data DIR
"""
from __future__ import annotations

import argparse
import json
import tempfile

from splitinfer.training.pointcloud import TrainConfig, Trainer


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint")
    ap.add_argument("--size", required=True, choices=["full", "lite", "micro"])
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--lmbda", type=float, required=True)
    ap.add_argument("--data", required=True, help="ModelNet40 folder")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as out:  # the trainer wants a run folder; nothing is kept
        t = Trainer(TrainConfig(size=a.size, points=a.points, lmbda=a.lmbda, data=a.data, out=out,
                                warm_start=a.checkpoint, freeze_encoder=True, augment=False, threads=1))
        print(json.dumps(t.validate()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
