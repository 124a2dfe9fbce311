"""Fine-tuning on one's own labelled scans: a folder of class subfolders or train.npz + classes.txt."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splitinfer.pointcloud import data as datasets  # noqa: E402
from splitinfer.pointcloud.preprocess import ROBUST  # noqa: E402
from splitinfer.training.pointcloud import TrainConfig, Trainer  # noqa: E402

SHAPES = ("box", "ring", "rod")


def _shape(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "box":
        return rng.uniform(-1, 1, (n, 3)) * [1.0, 0.6, 0.3]
    if kind == "ring":
        t = rng.uniform(0, 2 * np.pi, n)
        return np.stack([np.cos(t), np.sin(t), rng.normal(0, 0.05, n)], 1)
    return np.stack([rng.normal(0, 0.05, n), rng.normal(0, 0.05, n), rng.uniform(-1, 1, n)], 1)


def _class_folders(root, per_class=8):
    rng = np.random.default_rng(0)
    for kind in SHAPES:
        (root / "train" / kind).mkdir(parents=True)
        for i in range(per_class):  # scans of any size, in sensor units
            cloud = _shape(kind, rng, int(rng.integers(300, 2000))) * 1000.0 + rng.uniform(-5e3, 5e3, 3)
            np.save(root / "train" / kind / f"{kind}_{i}.npy", cloud.astype(np.float32))
    return root


def test_class_subfolders_load_as_a_dataset(tmp_path):
    root = _class_folders(tmp_path / "mine")
    assert datasets.load_classes(root) == list(SHAPES)
    points, labels = datasets.load_split(root, "train")
    assert points.shape == (24, datasets.CLOUD_POINTS, 3) and np.bincount(labels).tolist() == [8, 8, 8]
    (root / "train" / "stray").mkdir()
    (root / "classes.txt").write_text("box\nring\nrod\n")
    with pytest.raises(ValueError, match="stray"):
        datasets.load_split(root, "train")


def test_fine_tune_on_own_folder_with_other_classes(tmp_path):
    root = _class_folders(tmp_path / "mine")
    # a warm start with ModelNet40's 40 classes: the last layer is re-initialised for 3
    from splitinfer.nn.models import PointCloudCodec
    warm = tmp_path / "warm.pt"
    torch.save({"model": PointCloudCodec("micro", 40).state_dict()}, warm)
    cfg = TrainConfig(size="micro", points=128, lmbda=100, data=str(root), out=str(tmp_path / "run"),
                      epochs=2, batch_size=6, val_fraction=0.25, threads=1, lr=3e-3, scans=0.5,
                      preprocess=dict(ROBUST), warm_start=str(warm), bn_batches=1)
    Trainer(cfg).fit()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and {"val_accuracy_clean", "val_accuracy_scan"} <= set(log[0])
    best = torch.load(tmp_path / "run" / "best.pt", weights_only=False)
    assert best["classes"] == list(SHAPES) and best["config"]["preprocess"] == ROBUST
    model = PointCloudCodec("micro", 3)
    model.load_state_dict(best["model"])
    assert model(torch.randn(2, 128, 3))["logits"].shape == (2, 3)


def test_npz_dataset_with_class_names(tmp_path):
    rng = np.random.default_rng(1)
    pts = np.stack([_shape(SHAPES[i % 3], rng, 256) for i in range(12)]).astype(np.float32)
    np.savez(tmp_path / "train.npz", points=pts, labels=np.arange(12) % 3)
    (tmp_path / "classes.txt").write_text("\n".join(SHAPES) + "\n")
    points, labels = datasets.load_split(tmp_path, "train")
    assert points.shape == (12, 256, 3) and labels.tolist()[:4] == [0, 1, 2, 0]
    with pytest.raises(FileNotFoundError, match="test.npz"):
        datasets.load_split(tmp_path, "test")
