"""Shared image-codec fixtures: a tiny model repository exported from a randomly initialised
``FactorizedPrior(N=8, M=8)`` through the real export path (ONNX + CDF tables + config.json),
one model with a (randomly initialised) adaptive entropy bottleneck exported by the real
``export_adaptive`` and one without.

Use from a test module::

    from image_fixtures import image_repo, SAMPLE_IMAGES  # noqa: F401  (pytest fixture)

``image_repo`` is session-scoped: the export (torch) runs once per test session. Tests that need
it are skipped where torch is not installed. ``build_image_repo(root)`` does the same outside
pytest (e.g. for a process that serves the repository).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = sorted((ROOT / "splitinfer" / "data" / "images").glob("*.png"))

#: The models of the tiny repository: (name, quality). Only the first is exported; the others
#: are copies with their own name and quality (the weights do not matter to the tests). The
#: first (the default: lowest quality) also gets an adaptive entropy bottleneck.
TINY_MODELS = (("image-tiny-q1", 1), ("image-tiny-q2", 2))
ADAPTIVE_MODEL, STATIC_MODEL = TINY_MODELS[0][0], TINY_MODELS[1][0]


def export_tiny_codec(root: Path, name: str = "image-tiny-q1", quality: int = 1,
                      seed: int = 0) -> Path:
    """Export a random FactorizedPrior(N=8, M=8) as ``root/name/1``; returns the version folder."""
    import torch
    from dataclasses import asdict

    from splitinfer.nn.models import FactorizedPrior
    from splitinfer.training.export_image import export_image
    from splitinfer.training.image import ImageTrainConfig

    torch.manual_seed(seed)
    model = FactorizedPrior(N=8, M=8).eval()
    ckpt = Path(root) / f".{name}.pt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": asdict(ImageTrainConfig(N=8, M=8)),
                "epoch": 0, "wall": 0.0, "rng": None}, ckpt)
    out = export_image(ckpt, name, quality, models=root, version=1, recipe="test fixture")
    ckpt.unlink()
    return out


def export_tiny_adaptive(version_dir: Path, bins: int = 16, seed: int = 0) -> Path:
    """Add a random adaptive entropy bottleneck (h_a_q, h_s_q, q_tables) to an exported tiny
    codec with the real :func:`export_adaptive`; returns the version folder."""
    import torch
    from dataclasses import asdict

    import numpy as np

    from splitinfer.codec import CdfTables
    from splitinfer.nn.entropy_models.adaptive import (AdaptiveEntropyBottleneck,
                                                       static_prior_logits)
    from splitinfer.training.adaptive import AdaptiveTrainConfig, tables_digest
    from splitinfer.training.export_adaptive import export_adaptive

    version_dir = Path(version_dir)
    cfg = json.loads((version_dir / "config.json").read_text())
    static = CdfTables.load(version_dir / cfg["files"]["tables"])
    centres = np.round(np.asarray(cfg["medians"])).astype(np.int64)
    tcfg = AdaptiveTrainConfig(bins=bins, q_channels=8, layers=2, kernel=5, groups=4)
    torch.manual_seed(seed)
    model = AdaptiveEntropyBottleneck(
        centres, bins, tcfg.q_channels, tcfg.width, tcfg.layers, tcfg.kernel, tcfg.groups,
        static_prior_logits(static, centres - bins // 2, bins), tcfg.floor, tcfg.transform).eval()
    ckpt = version_dir.parent / ".adaptive.pt"
    torch.save({"model": model.state_dict(), "config": asdict(tcfg), "bins": bins,
                "centres": centres.tolist(), "epoch": 0, "wall": 0.0, "lambda_q": 1.0,
                "base_sha256": "test-fixture", "static_tables_sha256": tables_digest(static),
                "channels": int(centres.size), "record": None}, ckpt)
    out = export_adaptive(ckpt, version_dir)
    ckpt.unlink()
    return out


def build_image_repo(root: str | Path) -> Path:
    """A model repository at ``root`` holding the TINY_MODELS (the first with an adaptive
    entropy bottleneck); returns ``root``."""
    root = Path(root)
    (first, q0), *rest = TINY_MODELS
    src = export_tiny_codec(root, first, q0)
    for name, quality in rest:
        dst = root / name / "1"
        shutil.copytree(src, dst)
        cfg = json.loads((dst / "config.json").read_text())
        cfg.update(name=name, quality=quality)
        (dst / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    export_tiny_adaptive(src)
    return root


@pytest.fixture(scope="session")
def image_repo(tmp_path_factory) -> Path:
    """Root of a tiny image-compression model repository (exported once per session)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    return build_image_repo(tmp_path_factory.mktemp("imgmodels"))
