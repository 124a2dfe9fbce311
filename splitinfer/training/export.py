"""Export a trained point-cloud codec to the model repository ``models/<name>/<version>/``.

encoder.onnx    points (B, P, 3) float32 -> y_hat (B, C) int32   (g_a, max pool, gain, round)
classifier.onnx y_hat (B, C) float32 -> logits (B, classes)
tables.npz      quantized CDF tables of the factorized entropy model
config.json     what the model is, how it was trained, checksums
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from ..codec import CdfTables
from ..nn.models import PointCloudCodec, Reconstruction
from ..repository import new_version_folder, sha256, write_digest


class _EncoderGraph(nn.Module):
    def __init__(self, model: PointCloudCodec):
        super().__init__()
        self.model = model

    def forward(self, points):
        return self.model.encode_symbols(points)


class _ClassifierGraph(nn.Module):
    def __init__(self, model: PointCloudCodec):
        super().__init__()
        self.classifier = model.classifier

    def forward(self, y_hat):
        return self.classifier(y_hat[:, :, None])


class _ReconstructionGraph(nn.Module):
    def __init__(self, recon: Reconstruction):
        super().__init__()
        self.recon = recon

    def forward(self, y_hat):
        return self.recon(y_hat[:, :, None])


def load_checkpoint(path: str | Path) -> tuple[PointCloudCodec, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    cfg = state["config"]
    model = PointCloudCodec(cfg["size"], len(state["classes"]), plain=cfg.get("plain", False))
    model.load_state_dict(state["model"])
    return model.eval(), state


def run_wall_time(checkpoint: str | Path) -> dict:
    """Epochs and wall time of the whole run (last.pt), and including its warm-start chain."""
    def last(ckpt: Path) -> dict:
        p = ckpt.parent / "last.pt"
        return torch.load(p if p.exists() else ckpt, map_location="cpu", weights_only=False)

    s = last(Path(checkpoint))
    own, total, warm = s["wall"], s["wall"], s["config"].get("warm_start")
    while warm and Path(warm).exists():
        w = last(Path(warm))
        total += w["wall"]
        warm = w["config"].get("warm_start")
    return {"epochs": s["epoch"], "wall_time_s": round(own, 1),
            "wall_time_with_warm_start_s": round(total, 1)}


def _onnx(module: nn.Module, example: torch.Tensor, path: Path, inp: str, out: str) -> None:
    torch.onnx.export(module, (example,), str(path), input_names=[inp], output_names=[out],
                      dynamic_axes={inp: {0: "batch"}, out: {0: "batch"}}, opset_version=17,
                      dynamo=False)


def export_pointcloud(checkpoint: str | Path, name: str, models: str | Path = "models",
                      version: int | None = None, recon_checkpoint: str | Path | None = None,
                      recipe: str = "", training: dict | None = None) -> Path:
    """Write the model's artifacts and config (with its digest) into a new version folder
    (default: the next free version; an existing one is refused, versions are immutable);
    returns the folder. The checkpoint's preprocessing (``TrainConfig.preprocess``) goes into the
    config's ``preprocess``; ``training`` (a structured record: data, schedule, warm start as
    ``name@version``, wall time, metrics) replaces the default ``training`` section."""
    model, state = load_checkpoint(checkpoint)
    cfg = state["config"]
    out = new_version_folder(models, name, version)
    version = int(out.name)
    P, C = cfg["points"], model.entropy_bottleneck.channels
    with torch.no_grad():
        _onnx(_EncoderGraph(model), torch.randn(2, P, 3), out / "encoder.onnx", "points", "y_hat")
        _onnx(_ClassifierGraph(model), torch.randn(2, C), out / "classifier.onnx", "y_hat", "logits")
        offsets, pmfs, tails = model.entropy_bottleneck.pmf_tables()
    CdfTables.from_pmfs(offsets, pmfs, tails).save(out / "tables.npz")
    files = {"encoder": "encoder.onnx", "classifier": "classifier.onnx", "tables": "tables.npz"}
    if recon_checkpoint:
        recon = Reconstruction(cfg["size"])
        recon.load_state_dict(torch.load(recon_checkpoint, map_location="cpu", weights_only=False)["model"])
        with torch.no_grad():
            _onnx(_ReconstructionGraph(recon.eval()), torch.randn(2, C), out / "reconstruction.onnx",
                  "y_hat", "points")
        files["reconstruction"] = "reconstruction.onnx"
    config = {
        "name": name, "version": version, "task": "pointcloud-classification",
        "size": cfg["size"], "points": P, "lmbda": cfg["lmbda"], "channels": C,
        "classes": state["classes"], "files": files,
        "sha256": {f: sha256(out / f) for f in files.values()},
        "training": {
            "data": "ModelNet40 train split minus a stratified "
                    f"{cfg['val_fraction']:.0%} validation split (seed {cfg['seed']})",
            **run_wall_time(checkpoint), "best_epoch": state["epoch"],
            "warm_start": cfg.get("warm_start"), "freeze_encoder": cfg.get("freeze_encoder"),
            "recipe": recipe, "torch": torch.__version__,
        },
        "metrics": {},
        **({"preprocess": cfg["preprocess"]} if cfg.get("preprocess") else {}),
        "onnx_torch_parity": sample_parity(checkpoint, out / "encoder.onnx", P),
    }
    if training is not None:
        config["training"] = {**training, "torch": torch.__version__}
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    write_digest(out / "config.json")
    return out


def onnx_torch_parity(checkpoint: str | Path, encoder_onnx: str | Path, points: np.ndarray) -> int:
    """Number of symbols where the ONNX encoder and the torch model disagree on ``points``."""
    import onnxruntime as ort
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        ref = model.encode_symbols(torch.from_numpy(points)).numpy()
    sess = ort.InferenceSession(str(encoder_onnx), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"points": points.astype(np.float32)})[0]
    return int((ref != got).sum())


class _PlainGraph(nn.Module):
    def __init__(self, model: PointCloudCodec):
        super().__init__()
        self.model = model

    def forward(self, points):
        return self.model.classifier(self.model.analysis(points))


def export_plain(checkpoint: str | Path, path: str | Path) -> Path:
    """The uncompressed PointNet baseline as one ONNX graph: points (B, P, 3) -> logits, any P."""
    model, _ = load_checkpoint(checkpoint)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        torch.onnx.export(_PlainGraph(model), (torch.randn(2, 1024, 3),), str(path),
                          input_names=["points"], output_names=["logits"],
                          dynamic_axes={"points": {0: "batch", 1: "points"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return path


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample_modelnet40.npz"


def sample_parity(checkpoint: str | Path, encoder_onnx: str | Path, points: int) -> dict:
    """ONNX vs torch encoder on the bundled sample (preprocessed as at the edge)."""
    from ..pointcloud.preprocess import preprocess_batch
    spec = torch.load(checkpoint, map_location="cpu", weights_only=False)["config"].get("preprocess")
    with np.load(SAMPLE) as f:
        x = preprocess_batch(f["points"], points, seed=0, spec=spec)
    bad = onnx_torch_parity(checkpoint, encoder_onnx, x)
    return {"clouds": len(x), "mismatched_symbols": bad, "data": "splitinfer/data/sample_modelnet40.npz"}
