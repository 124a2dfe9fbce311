"""Make the bundled sample ``splitinfer/data/sample_modelnet40.npz`` from the ModelNet40 test split.

The first three test clouds of each of the 40 classes (120 clouds), float32 [120, 1024, 3], with
their labels, names and the class list. Used by the demo, the edge image and the tests, so that a
fresh clone works without ../shared.

    python scripts/make_sample.py [--data ../shared/datasets/modelnet40] [--per-class 3]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.data import DATASETS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DATASETS / "modelnet40"), help="ModelNet40 folder (default ../shared/datasets/modelnet40)")
    p.add_argument("--per-class", type=int, default=3)
    p.add_argument("--out", default=str(ROOT / "splitinfer" / "data" / "sample_modelnet40.npz"))
    a = p.parse_args()
    data = Path(a.data)
    with np.load(data / "modelnet40_test.npz") as f:
        points, labels, names = f["points"], f["labels"], f["names"]
    classes = (data / "classes.txt").read_text().split()
    idx = np.concatenate([np.flatnonzero(labels == c)[: a.per_class] for c in range(len(classes))])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, points=points[idx].astype(np.float32), labels=labels[idx].astype(np.int64),
                        names=names[idx].astype(str), classes=np.array(classes))
    print(f"{out}: {len(idx)} clouds, {out.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
