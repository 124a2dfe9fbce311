"""Export a trained adaptive entropy bottleneck (:mod:`splitinfer.training.adaptive`) into an
existing image-codec model version folder written by :func:`~.export_image.export_image`:

* ``h_a_q.onnx``: p [N, C, B] float32 (per-channel histogram / n) -> q [N, Cq, B/8] int32
  (rounded);
* ``h_s_q.onnx``: q_hat [N, Cq, B/8] float32 -> p_hat [N, C, B] float32 (softmax + floor);
* ``q_tables.npz``: the CdfTables of q's factorized entropy model;
* ``config.json``: roles ``h_a_q``, ``h_s_q``, ``q_tables`` in ``files`` and ``sha256``, and an
  ``adaptive`` section read by the torch-free runtime :mod:`splitinfer.image.adaptive`.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..codec import CdfTables
from ..nn.entropy_models.adaptive import AdaptiveEntropyBottleneck
from ..repository import sha256, write_digest
from .adaptive import AdaptiveTrainConfig, tables_digest, train_adaptive

#: Runtime constants written to config["adaptive"] (see splitinfer.image.adaptive).
LOG2_GRID = 1.0 / 32      # p_hat's log2-probabilities are rounded to this grid
ESCAPE_MASS = 2.0 ** -14  # probability of the escape entry (values outside the B-bin window)
PRECISION = 16


def load_adaptive_checkpoint(path: str | Path) -> tuple[AdaptiveEntropyBottleneck, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = AdaptiveTrainConfig(**state["config"])
    model = AdaptiveEntropyBottleneck(
        np.asarray(state["centres"]), state["bins"], cfg.q_channels, cfg.width, cfg.layers,
        cfg.kernel, cfg.groups, None, cfg.floor, cfg.transform)
    model.load_state_dict(state["model"])
    return model.eval(), state


class _AnalysisGraph(nn.Module):
    def __init__(self, model: AdaptiveEntropyBottleneck):
        super().__init__()
        self.h_a = model.h_a

    def forward(self, p):
        return torch.round(self.h_a(p)).to(torch.int32)


class _SynthesisGraph(nn.Module):
    def __init__(self, model: AdaptiveEntropyBottleneck):
        super().__init__()
        self.h_s = model.h_s

    def forward(self, q_hat):
        return self.h_s(q_hat)


def _onnx(module: nn.Module, example: torch.Tensor, path: Path, inp: str, out: str) -> None:
    axes = {0: "batch"}
    torch.onnx.export(module, (example,), str(path), input_names=[inp], output_names=[out],
                      dynamic_axes={inp: axes, out: axes}, opset_version=17, dynamo=False)


def export_adaptive(checkpoint: str | Path, model_dir: str | Path, force: bool = False) -> Path:
    """Write h_a_q.onnx, h_s_q.onnx, q_tables.npz into the version folder ``model_dir`` and
    update its config.json. Refuses (ValueError) a folder whose static tables are not the ones
    the adaptive module was trained against, unless ``force``. Returns ``model_dir``."""
    out = Path(model_dir)
    cfg_path = out / "config.json"
    config = json.loads(cfg_path.read_text())
    model, state = load_adaptive_checkpoint(checkpoint)
    tables_file = out / config["files"]["tables"]
    digest = tables_digest(CdfTables.load(tables_file))
    if digest != state["static_tables_sha256"] and not force:
        raise ValueError(f"{tables_file} are not the static tables the adaptive module in "
                         f"{checkpoint} was trained against (other base checkpoint?)")
    if int(config["M"]) != model.channels:
        raise ValueError(f"model has M={config['M']} channels, adaptive module {model.channels}")
    C, B, Cq, L = model.channels, model.bins, model.q_channels, model.q_length
    with torch.no_grad():
        _onnx(_AnalysisGraph(model), torch.rand(1, C, B).softmax(-1), out / "h_a_q.onnx",
              "p", "q")
        _onnx(_SynthesisGraph(model), torch.zeros(1, Cq, L), out / "h_s_q.onnx", "q_hat", "p_hat")
        offsets, pmfs, tails = model.entropy_bottleneck.pmf_tables()
    CdfTables.from_pmfs(offsets, pmfs, tails, precision=PRECISION).save(out / "q_tables.npz")
    files = dict(config.get("files", {}))
    files.update({"h_a_q": "h_a_q.onnx", "h_s_q": "h_s_q.onnx", "q_tables": "q_tables.npz"})
    config["files"] = files
    config["sha256"] = {f: sha256(out / f) for f in files.values()}
    tcfg = state["config"]
    record = state.get("record") or {}
    centres = [int(c) for c in state["centres"]]
    config["adaptive"] = {
        "method": "learned compression of encoding distributions (Ulhaq & Bajic, ICIP 2024, arXiv:2406.13059)",
        "bins": B, "centres": centres, "offsets": [c - B // 2 for c in centres],
        "q_channels": Cq, "q_length": L, "floor": model.h_s.floor, "log2_grid": LOG2_GRID,
        "escape_mass": ESCAPE_MASS, "precision": PRECISION,
        "width": tcfg["width"] or C, "layers": tcfg["layers"], "kernel": tcfg["kernel"],
        "groups": tcfg["groups"], "transform": tcfg["transform"],
        "params": model.param_count(), "macs_per_image": model.macs(),
        "training": {
            "data": f"BSDS500 train+test (400 images), {tcfg['crops_per_image']} random "
                    f"{tcfg['patch']}x{tcfg['patch']} crops each with flips; validation: "
                    f"BSDS500 val ({tcfg['val_images']} images)",
            "base_checkpoint_sha256": state["base_sha256"],
            "wall_time_s": round(state["wall"], 1),
            "precompute_s": round(state.get("precompute_s", 0.0), 1),
            "epochs": state["epoch"], "steps": state["epoch"] * tcfg["steps"],
            "batch_size": tcfg["batch_size"], "lr": tcfg["lr"],
            "lambda_q": round(state["lambda_q"], 6), "bins_coverage": state.get("coverage"),
            "warm_start": tcfg.get("warm_start"),
            "val_saving": record.get("val_saving"),
            "val_ideal_saving": record.get("val_ideal_saving"),
            "val_gap_captured": record.get("val_gap_captured"),
            "val_side_bits_per_image": record.get("val_side_bits_per_image"),
            "torch": torch.__version__,
        },
    }
    cfg_path.write_text(json.dumps(config, indent=1) + "\n")
    write_digest(cfg_path)  # the adaptive files and parameters are part of the model's identity
    return out


# -- train and export in one step (scripts/build_image_models.py; python -m splitinfer.training.export_adaptive)

def _version_folder(model_dir: str | Path) -> Path:
    d = Path(model_dir)
    if (d / "config.json").exists():
        return d
    versions = sorted((p for p in d.iterdir() if p.is_dir() and p.name.isdigit()),
                      key=lambda p: int(p.name)) if d.exists() else []
    if not versions or not (versions[-1] / "config.json").exists():
        raise FileNotFoundError(f"{d}: no model version folder with a config.json")
    return versions[-1]


def build_adaptive(quality: int, base_checkpoint: str | Path, model_dir: str | Path,
                   runs: str | Path = "runs", progress: bool = True, **overrides) -> Path:
    """The adaptive step of ``scripts/build_image_models.py``: train (resumable) the adaptive
    entropy bottleneck of ``base_checkpoint`` into ``<runs>/adaptive-q<quality>`` and export it
    into ``model_dir`` (a model version folder written by :func:`export_image` from the same
    base checkpoint, or its parent). A run made for another base checkpoint is kept aside and
    used as a warm start. Returns the version folder."""
    out = Path(runs) / f"adaptive-q{quality}"
    base_sha = sha256(Path(base_checkpoint))
    last = out / "last.pt"
    if last.exists():
        s = torch.load(last, map_location="cpu", weights_only=False)
        if s.get("base_sha256") != base_sha:
            old = out.with_name(f"{out.name}-{s.get('base_sha256', 'old')[:8]}")
            out.rename(old)
            overrides.setdefault("warm_start", str(old / "best.pt"))
            print(f"{out} was trained on another base: moved to {old}, warm start from it")
    train_adaptive(base_checkpoint, out, progress=progress, **overrides)
    return export_adaptive(out / "best.pt", _version_folder(model_dir))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Train the adaptive entropy bottleneck of a base "
                                             "checkpoint, and export it with --export")
    ap.add_argument("base", help="base FactorizedPrior checkpoint (frozen)")
    ap.add_argument("out", help="run folder")
    ap.add_argument("--export", help="model version folder to export into when done")
    for f in fields(AdaptiveTrainConfig):
        if f.name in ("base", "out"):
            continue
        typ = {"int | None": int, "float | None": float, "str | None": str}.get(str(f.type))
        typ = typ or {"int": int, "float": float, "str": str}.get(str(f.type), str)
        ap.add_argument("--" + f.name.replace("_", "-"), type=typ, default=f.default)
    a = vars(ap.parse_args(argv))
    base, out, export = a.pop("base"), a.pop("out"), a.pop("export")
    train_adaptive(base, out, **a)
    if export:
            print(export_adaptive(Path(out) / "best.pt", _version_folder(export)))


if __name__ == "__main__":
    main()
