#!/usr/bin/env python
"""Package the plain PointNet (cloud-only baseline) as a repository model the server can serve.

    .venv/bin/python scripts/make_plain_model.py [--onnx runs/plain-full-p1024/plain.onnx]
        [--name plain-pointnet-p1024] [--models models] [--data ../shared/datasets/modelnet40/modelnet40_test.npz]

Writes ``<models>/<name>/<version>/model.onnx`` (a copy) and its ``config.json``: task
``pointcloud-input-classification``, files {"classifier": "model.onnx"}, the file's sha256, the
class names of ``splitinfer/data/sample_modelnet40.npz`` (the ModelNet40 order), and, when the
exporter's metadata (``<onnx>.json``) or a Draco baseline result (``--draco-json``) exist, what
they say. With ``--data``, the uncompressed (raw float32) test accuracy is measured and recorded
as ``metrics.test_accuracy`` (torch-free: onnxruntime).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.pointcloud.input_model import package_plain  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--onnx", default=str(ROOT / "runs" / "plain-full-p1024" / "plain.onnx"))
    p.add_argument("--name", default="plain-pointnet-p1024")
    p.add_argument("--models", default=str(ROOT / "models"))
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--points", type=int, default=1024)
    p.add_argument("--data", help="labelled test npz: measure the raw-input accuracy")
    p.add_argument("--draco-json", default=str(ROOT / "results" / "pointcloud" / "draco.json"),
                   help="a `splitinfer baseline draco` result to copy the rate-accuracy from")
    a = p.parse_args(argv)
    out = package_plain(Path(a.onnx), a.name, Path(a.models), a.version, a.points,
                        Path(a.data) if a.data else None, Path(a.draco_json) if a.draco_json else None)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
