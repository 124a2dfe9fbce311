"""Cloud-only ("input") models: the device sends the cloud itself, the server classifies it.

A repository model of task ``pointcloud-input-classification`` is a plain PointNet
(``points (B, N, 3) -> logits``, any N) that classifies the points the edge sends, either raw
(container kind 4, ``POINTCLOUD_RAW_F32``: float32 little-endian, shape ``(N, 3)``) or Draco-coded
(kind 5, ``POINTCLOUD_DRACO``: one Draco point-cloud buffer, shape ``(N, 3)`` with N the points
encoded; Draco may merge duplicate points, so the decoded count is at most N). See
docs/bitstream.md. The edge preprocesses the cloud exactly as for the split codecs
(``preprocess``: centre, unit sphere, P points with a fixed seed) before packing it.

    models/plain-pointnet-p1024/1/config.json
    {"name": "plain-pointnet-p1024", "version": 1, "task": "pointcloud-input-classification",
     "size": "input", "points": 1024, "classes": [...], "files": {"classifier": "model.onnx"},
     "sha256": {"model.onnx": "..."}, "inputs": ["raw-f32", "draco"]}

Torch-free: numpy and onnxruntime on both sides; DracoPy for the Draco kind (imported lazily,
it is in the ``cloud`` extra).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..codec import Container, CorruptPayload, PayloadKind, check_model
from ..registry import Runtime, register_runtime
from ..repository import ModelConfig
from .draco import decode_draco, draco_point_count, encode_draco

TASK = "pointcloud-input-classification"
INPUT_KINDS = (PayloadKind.POINTCLOUD_RAW_F32, PayloadKind.POINTCLOUD_DRACO)
MAX_POINTS = 1 << 16


# -- edge: pack a (preprocessed) cloud ----------------------------------------------------------------
def pack_raw(points: np.ndarray, digest: str) -> bytes:
    """Points (N, 3) -> a kind-4 container: float32 little-endian, row-major (12 N bytes)."""
    p = np.ascontiguousarray(points, dtype="<f4")
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"expected points (N, 3), got {p.shape}")
    return Container(digest, PayloadKind.POINTCLOUD_RAW_F32, p.shape, (p.tobytes(),)).pack()


def pack_draco(points: np.ndarray, digest: str, qbits: int, level: int = 10) -> bytes:
    """Points (N, 3) -> a kind-5 container holding one Draco buffer (``quantization_bits`` =
    qbits, ``compression_level`` = level)."""
    data = encode_draco(points, qbits, level)
    return Container(digest, PayloadKind.POINTCLOUD_DRACO, np.shape(points), (data,)).pack()


# -- cloud: unpack ------------------------------------------------------------------------------------
#: Largest coordinate magnitude accepted: the edge sends preprocessed clouds (centred, in the unit
#: sphere), so anything far outside is not a cloud the model was trained on (and 3e38 overflows it).
MAX_COORD = 1024.0


def unpack_points(c: Container, max_points: int = MAX_POINTS) -> np.ndarray:
    """The points (M, 3) float32 of a kind-4 or kind-5 container; raises a BitstreamError.

    Bounded by ``max_points`` (the model's input) before any allocation: the header's N, and for
    Draco the point count in the Draco header before decoding (and the decoded count after).
    Coordinates must be finite and within +-MAX_COORD."""
    if c.kind not in INPUT_KINDS:
        raise CorruptPayload(f"expected a point-cloud input (kind 4 or 5), got kind {int(c.kind)}")
    limit = min(int(max_points), MAX_POINTS)
    if len(c.shape) != 2 or c.shape[1] != 3 or not 1 <= c.shape[0] <= limit:
        raise CorruptPayload(f"expected a shape (N, 3) with 1 <= N <= {limit}, got {tuple(c.shape)}")
    n = c.shape[0]
    if len(c.payloads) != 1:
        raise CorruptPayload(f"expected one payload, got {len(c.payloads)}")
    data = c.payloads[0]
    if c.kind == PayloadKind.POINTCLOUD_RAW_F32:
        if len(data) != 12 * n:
            raise CorruptPayload(f"raw payload of {len(data)} bytes for {n} points (expected {12 * n})")
        pts = np.frombuffer(data, dtype="<f4").reshape(n, 3).astype(np.float32)
    else:
        declared = draco_point_count(data)
        if not 1 <= declared <= n:
            raise CorruptPayload(f"Draco header declares {declared} points, the container at most {n}")
        pts = decode_draco(data)
        if not 1 <= len(pts) <= n:
            raise CorruptPayload(f"Draco payload decodes to {len(pts)} points, header says at most {n}")
    if not np.isfinite(pts).all():
        raise CorruptPayload("points are NaN or infinite")
    if np.abs(pts).max() > MAX_COORD:
        raise CorruptPayload(f"coordinates beyond +-{MAX_COORD:g} (the edge sends preprocessed "
                             "clouds: centred, in the unit sphere)")
    return pts


class InputClassificationModel(Runtime):
    """A plain PointNet served for cloud-only inputs (raw or Draco points)."""

    task = TASK

    def __init__(self, config: ModelConfig, threads: int = 1):
        super().__init__(config, threads)
        self.classes: list[str] = list(config.raw["classes"])
        self.points: int = int(config.raw.get("points") or 1024)
        self.channels: int = 0           # no latent: the input is the cloud itself
        self._classifier = None

    def decode(self, data: bytes) -> np.ndarray:
        """Container bytes -> points (M, 3) float32. Raises a BitstreamError subclass."""
        c = check_model(Container.unpack(data), self.digest, self.name, self.config.ref)
        return unpack_points(c, self.points)

    def warmup_input(self, batch: int) -> np.ndarray:
        return np.zeros((batch, self.points, 3), np.float32)

    def classify(self, points: np.ndarray) -> np.ndarray:
        """Points (B, N, 3) -> logits (B, classes)."""
        if self._classifier is None:
            from ..onnx import session
            self._classifier = session(self.config.file("classifier"), self.threads)
            self._input = self._classifier.get_inputs()[0].name
        return self._classifier.run(None, {self._input: np.ascontiguousarray(points, np.float32)})[0]


def classify_clouds(session, clouds: Sequence[np.ndarray], batch: int = 64) -> np.ndarray:
    """Predicted class of every cloud under a plain PointNet ONNX session; clouds of equal size
    are batched together."""
    pred = np.zeros(len(clouds), np.int64)
    by_size: dict[int, list[int]] = {}
    for i, c in enumerate(clouds):
        by_size.setdefault(len(c), []).append(i)
    name = session.get_inputs()[0].name
    for idx in by_size.values():
        for k in range(0, len(idx), batch):
            part = idx[k:k + batch]
            x = np.stack([clouds[i] for i in part]).astype(np.float32)
            pred[part] = session.run(None, {name: x})[0].argmax(1)
    return pred


# -- packaging ---------------------------------------------------------------------------------------
def measure_accuracy(onnx_path, data, points: int = 1024, limit: int | None = None) -> dict:
    """Raw-input (uncompressed) accuracy of a plain PointNet ONNX on a labelled npz."""
    from ..onnx import session
    from .evaluate import load_labelled
    from .preprocess import preprocess
    raw, labels = load_labelled(data)
    if limit:
        raw, labels = raw[:limit], labels[:limit]
    clouds = [preprocess(c, points, 0, name=f"cloud {i}") for i, c in enumerate(raw)]
    pred = classify_clouds(session(onnx_path), clouds)
    return {"test_accuracy": float((pred == labels).mean()), "count": int(len(labels)),
            "measured_with": f"scripts/make_plain_model.py --data {data} (preprocess(cloud, {points}, "
                             f"seed=0), raw float32 points, onnxruntime)"}


def package_plain(onnx, name: str = "plain-pointnet-p1024", models_dir="models", version: int = 1,
                  points: int = 1024, data=None, draco_json=None):
    """Copy a plain PointNet ONNX into ``<models_dir>/<name>/<version>/model.onnx`` with its
    config.json (task ``pointcloud-input-classification``); returns the version folder."""
    import json
    import shutil
    from pathlib import Path

    from ..repository import sha256, write_digest
    onnx = Path(onnx)
    if not onnx.exists():
        raise FileNotFoundError(f"{onnx}: no plain PointNet ONNX (scripts/run_draco_baseline.sh makes it)")
    from ..data import SAMPLE
    with np.load(SAMPLE) as z:
        classes = [str(c) for c in z["classes"]]
    out = Path(models_dir) / name / str(version)
    out.mkdir(parents=True, exist_ok=True)
    dst = out / "model.onnx"
    shutil.copyfile(onnx, dst)
    cfg: dict = {
        "name": name, "version": version, "task": TASK, "size": "input", "points": points,
        "lmbda": None, "channels": 0, "classes": classes,
        "files": {"classifier": "model.onnx"}, "sha256": {"model.onnx": sha256(dst)},
        "inputs": ["raw-f32", "draco"],
        "input": "points float32 (B, N, 3), preprocessed at the edge (centre, unit sphere, "
                 f"{points} points, seed 0); output logits (B, {len(classes)})",
        "source": str(onnx),
    }
    meta = onnx.with_suffix(".json")
    if meta.exists():
        cfg["training"] = json.loads(meta.read_text())
    metrics: dict = {}
    if data:
        metrics.update(measure_accuracy(dst, data, points))
    if draco_json and Path(draco_json).exists():
        d = json.loads(Path(draco_json).read_text())
        metrics.setdefault("test_accuracy", d.get("plain_accuracy"))
        metrics["draco"] = [{k: s[k] for k in ("quantization_bits", "bits_mean", "accuracy")}
                            for s in d.get("settings", [])]
        metrics["draco_measured_with"] = d.get("measured_with")
    if metrics:
        metrics.setdefault("accuracy", metrics.get("test_accuracy"))
        cfg["metrics"] = metrics
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    write_digest(out / "config.json")
    return out


register_runtime("pointcloud-input-classification", InputClassificationModel)
