"""Tools that make artifacts from (tiny, real) training checkpoints: the critical-point and
reconstruction pictures, the plain PointNet export with its provenance."""
import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("matplotlib")

from splitinfer.training.pointcloud import TrainConfig, Trainer  # noqa: E402
from splitinfer.training.reconstruction import make_pictures  # noqa: E402

pytestmark = pytest.mark.slow


def test_pictures_of_a_tiny_checkpoint(tiny_modelnet, tmp_path):
    runs = tmp_path / "runs"
    Trainer(TrainConfig(size="micro", points=256, lmbda=100, data=str(tiny_modelnet),
                        out=str(runs / "micro-tiny"), epochs=1, batch_size=16, val_fraction=0.25,
                        threads=1)).fit()
    out = tmp_path / "pictures"
    rc = make_pictures(out, runs, models={"micro": "micro-tiny"}, sizes=["micro"],
                       classes=["airplane", "chair"], epochs={"micro": 1}, train_limit=None,
                       data=str(tiny_modelnet))
    assert rc == 0
    info = json.loads((out / "pictures.json").read_text())
    assert list(info["sizes"]) == ["micro"]               # full / lite: no checkpoint, skipped
    micro = info["sizes"]["micro"]
    assert len(info["clouds"]) == 2 and set(micro["chamfer"]) == set(info["clouds"])
    assert all(1 <= n <= micro["channels"] for n in micro["critical_points"].values())
    assert (out / "critical_points.png").stat().st_size > 0
    assert (out / "reconstruction.png").stat().st_size > 0
    assert (runs / "recon-micro" / "best.pt").exists()


def test_plain_export_records_its_provenance_and_runs(tiny_modelnet, tmp_path, sample):
    """``python -m splitinfer.training.plain``: the ONNX graph classifies any point count and its
    .json names the training run that made it."""
    from splitinfer.onnx import session
    from splitinfer.repository import sha256
    from splitinfer.training.plain import main

    run = tmp_path / "plain"
    Trainer(TrainConfig(size="micro", points=256, lmbda=1, plain=True, data=str(tiny_modelnet),
                        out=str(run), epochs=2, batch_size=16, val_fraction=0.25, threads=1)).fit()
    onnx = tmp_path / "plain.onnx"
    assert main([str(run / "best.pt"), str(onnx), "runs/trunk/best.pt"]) == 0
    meta = json.loads(onnx.with_suffix(".json").read_text())
    assert meta["sha256"] == sha256(onnx) and meta["size"] == "micro"
    assert meta["training"]["epochs_run"] == 2 and "runs/trunk/best.pt" in meta["what"]
    logits = session(onnx).run(None, {"points": sample["points"][:3, :100].astype("float32")})[0]
    assert logits.shape == (3, 40)
