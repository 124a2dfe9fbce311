"""Draco input-compression baseline: real Draco bytes, decoded and classified by the plain PointNet."""
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("DracoPy")

from splitinfer.baselines.draco import evaluate_draco  # noqa: E402
from splitinfer.pointcloud.draco import draco_roundtrip  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / "models" / "plain-pointnet-p1024" / "1" / "model.onnx"


def test_roundtrip_error_shrinks_with_quantization_bits(sample):
    cloud = sample["points"][0]
    errors, sizes = [], []
    for q in (4, 8, 12):
        decoded, nbytes, _, _ = draco_roundtrip(cloud, q)
        # Draco reorders points: compare as sets (nearest decoded point of every input point)
        d = np.sqrt(((cloud[:, None] - decoded[None]) ** 2).sum(-1)).min(1)
        errors.append(d.max())
        sizes.append(nbytes)
    assert errors[0] > errors[1] > errors[2]
    assert sizes[0] < sizes[1] < sizes[2]


def test_baseline_rates_and_accuracy_on_the_sample(sample, tmp_path):
    np.savez(tmp_path / "s.npz", points=sample["points"][::3], labels=sample["labels"][::3])
    r = evaluate_draco(PLAIN, tmp_path / "s.npz", qbits=(3, 10), progress=False)
    low, high = r["settings"][:2]
    assert low["bits_mean"] < high["bits_mean"]
    assert high["accuracy"] > low["accuracy"]
    assert high["accuracy"] >= 0.5
