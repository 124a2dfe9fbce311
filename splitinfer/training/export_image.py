"""Export a trained factorized-prior image codec to ``models/<name>/<version>/``:
``g_a.onnx`` (image in [0, 1] -> integer symbols y_hat = round(y), rounding inside), ``g_s.onnx``
(y_hat -> x_hat), the quantized CDF tables of the static entropy model and ``config.json``."""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn

from ..codec import CdfTables
from ..nn.models import FactorizedPrior
from ..repository import new_version_folder, sha256, write_digest

TASK = "image-compression"


class _AnalysisGraph(nn.Module):
    def __init__(self, model: FactorizedPrior):
        super().__init__()
        self.g_a = model.g_a

    def forward(self, x):
        return torch.round(self.g_a(x)).to(torch.int32)


class _SynthesisGraph(nn.Module):
    def __init__(self, model: FactorizedPrior):
        super().__init__()
        self.g_s = model.g_s

    def forward(self, y_hat):
        return torch.clamp(self.g_s(y_hat), 0.0, 1.0)


def load_image_checkpoint(path: str | Path) -> tuple[FactorizedPrior, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state["config"]
    model = FactorizedPrior(cfg["N"], cfg["M"])
    model.load_state_dict(state["model"])
    return model.eval(), state


def _onnx(module: nn.Module, example: torch.Tensor, path: Path, inp: str, out: str) -> None:
    axes = {0: "batch", 2: "height", 3: "width"}
    torch.onnx.export(module, (example,), str(path), input_names=[inp], output_names=[out],
                      dynamic_axes={inp: axes, out: axes}, opset_version=17, dynamo=False)


def export_image(checkpoint: str | Path, name: str, quality: int, models: str | Path = "models",
                 version: int | None = None, recipe: str = "") -> Path:
    """Write the codec's artifacts and config (with its digest) into a new version folder
    (default: the next free version; an existing one is refused, versions are immutable);
    returns the folder."""
    model, state = load_image_checkpoint(checkpoint)
    cfg = state["config"]
    out = new_version_folder(models, name, version)
    version = int(out.name)
    with torch.no_grad():
        _onnx(_AnalysisGraph(model), torch.rand(1, 3, 64, 96), out / "g_a.onnx", "x", "y_hat")
        _onnx(_SynthesisGraph(model), torch.zeros(1, model.M, 4, 6), out / "g_s.onnx",
              "y_hat", "x_hat")
        offsets, pmfs, tails = model.entropy_bottleneck.pmf_tables()
        medians = model.entropy_bottleneck.quantiles.detach()[:, 0, 1].numpy()
    CdfTables.from_pmfs(offsets, pmfs, tails).save(out / "tables.npz")
    files = {"g_a": "g_a.onnx", "g_s": "g_s.onnx", "tables": "tables.npz"}
    config = {
        "name": name, "version": version, "task": TASK, "architecture": "factorized-prior",
        "quality": quality, "lmbda": cfg["lmbda"], "N": cfg["N"], "M": cfg["M"],
        "channels": cfg["M"], "downsampling": 16,
        "medians": [round(float(m), 4) for m in medians],
        "files": files, "sha256": {f: sha256(out / f) for f in files.values()},
        "training": {
            "data": "BSDS500 train+test (400 images), random crops "
                    f"{cfg['patch']}x{cfg['patch']} with flips; validation: BSDS500 val",
            "wall_time_s": round(state["wall"], 1), "epochs": state["epoch"],
            "steps": state["epoch"] * cfg["steps"], "batch_size": cfg["batch_size"],
            "lr": cfg["lr"], "warm_start": cfg.get("warm_start"), "recipe": recipe,
            "torch": torch.__version__,
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    write_digest(out / "config.json")
    return out
