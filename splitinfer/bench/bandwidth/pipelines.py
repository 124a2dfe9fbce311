"""What the benchmark measures: the pipelines (edge-only, cloud-only raw and Draco, split low and
high rate point per size) planned from the shipped models, and the repository the server runs."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from . import ROOT

DRACO_QBITS = (4, 6, 11)
DEFAULT_PLAIN_ONNX = ROOT / "models" / "plain-pointnet-p1024" / "1" / "model.onnx"


def accuracy_of(cfg) -> float | None:
    """A model's measured accuracy, from its config."""
    m = cfg.raw.get("metrics") or {}
    return m.get("accuracy", m.get("test_accuracy"))


def bits_of(cfg) -> float | None:
    """A model's mean coded bits per cloud, from its config."""
    return (cfg.raw.get("metrics") or {}).get("bits_mean")


def plan_pipelines(repo, plain: str | None, qbits=DRACO_QBITS, sizes=("full", "lite", "micro"),
                   points: int = 1024) -> list[dict]:
    """Edge-only per size (its most accurate model), cloud-only raw and Draco (if a plain model
    is served), split low and high rate point per size (by bits_mean), from what is shipped."""
    configs = [c for c in repo.list("pointcloud-classification") if int(c.raw.get("points", 0)) == points
               and bits_of(c) is not None]
    out = []
    for size in sizes:
        of = sorted((c for c in configs if c.raw.get("size") == size), key=bits_of)
        if not of:
            continue
        best = max(of, key=lambda c: (accuracy_of(c) or 0, -bits_of(c)))
        out.append({"id": f"edge-{size}", "kind": "edge", "size": size, "model": best.name,
                    "label": f"edge-only {size} ({best.name})", "accuracy_config": accuracy_of(best)})
    if plain:
        pc = repo.config(plain)
        out.append({"id": "cloud-raw", "kind": "cloud", "input": "raw", "model": plain,
                    "label": "cloud-only raw float32", "accuracy_config": accuracy_of(pc)})
        draco = {d["quantization_bits"]: d["accuracy"] for d in (pc.raw.get("metrics") or {}).get("draco", [])}
        for q in qbits:
            out.append({"id": f"cloud-draco-q{q}", "kind": "cloud", "input": "draco", "qbits": int(q),
                        "model": plain, "label": f"cloud-only Draco q={q}", "accuracy_config": draco.get(q)})
    for size in sizes:
        of = sorted((c for c in configs if c.raw.get("size") == size), key=bits_of)
        if not of:
            continue
        points_ = [("low", of[0])] + ([("high", of[-1])] if len(of) > 1 else [])
        for which, c in points_:
            out.append({"id": f"split-{size}-{which}", "kind": "split", "size": size, "model": c.name,
                        "label": f"split {size} {which} ({c.name}, {bits_of(c):.0f} bits)",
                        "bits_config": bits_of(c), "accuracy_config": accuracy_of(c)})
    return out


def prepare_repository(models_dir: str | None, plain_onnx: str | None) -> tuple[str, str | None, str | None]:
    """(models dir to serve, plain model name, note): the repository as is when it has a plain
    model; otherwise a temporary one with links to its codecs and the plain ONNX packaged."""
    from splitinfer.pointcloud.input_model import TASK, package_plain
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(models_dir)
    plains = [c for c in repo.list(TASK)]
    if plains:
        return str(repo.root), plains[0].name, None
    onnx = Path(plain_onnx) if plain_onnx else DEFAULT_PLAIN_ONNX
    if not onnx.exists():
        return str(repo.root), None, f"no cloud-only model: {onnx} missing (cloud-only pipelines skipped)"
    tmp = Path(tempfile.mkdtemp(prefix="splitinfer-bw-models-"))
    for d in repo.root.iterdir():
        if d.is_dir() and any(d.glob("*/config.json")):
            os.symlink(d.resolve(), tmp / d.name)
    package_plain(onnx, "plain-pointnet-p1024", tmp)
    return str(tmp), "plain-pointnet-p1024", f"plain model packaged from {onnx} into {tmp}"
