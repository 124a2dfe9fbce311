"""The model repository: ``models/<name>/<version>/config.json`` plus its artifacts (Triton layout).

Torch-free: configs are JSON, models are ONNX graphs and CDF tables.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / "models"


from .codec.container import UnknownModel  # noqa: E402  (one error type for "no such model")


@dataclass(frozen=True)
class ModelConfig:
    name: str
    version: int
    task: str
    path: Path
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.name

    def file(self, role: str) -> Path:
        return self.path / self.raw["files"][role]

    def __getattr__(self, key: str) -> Any:  # size, points, lmbda, channels, classes, metrics...
        try:
            return self.raw[key]
        except KeyError:
            raise AttributeError(key) from None

    @functools.cached_property
    def digest(self) -> str:
        """The model's identity: sha256 (64 hex digits) over the recorded sha256 of every artifact
        file, its classes, input size and preprocessing. Computed from the config alone, so an
        edge that holds only the encoder half has it too; ``ModelRepository.verify`` checks the
        files against the recorded sha256 values. Edge and server compare digests per stream."""
        manifest = {"task": self.task, "files": dict(sorted(self.raw.get("sha256", {}).items())),
                    "classes": self.raw.get("classes"), "points": self.raw.get("points"),
                    "preprocess": self.raw.get("preprocess")}
        return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()

    def summary(self) -> dict[str, Any]:
        m = self.raw.get("metrics", {})
        return {"name": self.name, "version": self.version, "task": self.task,
                "size": self.raw.get("size"), "points": self.raw.get("points"),
                "lambda": self.raw.get("lmbda"), "channels": self.raw.get("channels"),
                "test_accuracy": m.get("test_accuracy"), "bits_mean": m.get("bits_mean")}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_root() -> Path:
    return Path(os.environ.get("SPLITINFER_MODELS", DEFAULT_ROOT))


class ModelRepository:
    """Finds model configs and loads (and caches) their runtimes."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_root()
        self._loaded: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def list(self, task: str | None = None) -> list[ModelConfig]:
        configs = []
        for cfg_path in sorted(self.root.glob("*/*/config.json")):
            raw = json.loads(cfg_path.read_text())
            cfg = ModelConfig(raw["name"], int(raw["version"]), raw["task"], cfg_path.parent, raw)
            if task is None or cfg.task == task:
                configs.append(cfg)
        return configs

    def names(self) -> list[str]:
        return sorted({c.name for c in self.list()})

    def config(self, name: str, version: int | None = None) -> ModelConfig:
        """The named model's config (newest version unless one is given)."""
        candidates = [c for c in self.list() if c.name == name
                      and (version is None or c.version == version)]
        if not candidates:
            known = ", ".join(self.names()) or "none"
            raise UnknownModel(f"unknown model {name!r}"
                               + (f" version {version}" if version else "") + f" (known: {known})")
        return max(candidates, key=lambda c: c.version)

    def verify(self, cfg: ModelConfig) -> None:
        """Check every artifact against the checksums in its config."""
        for fname, digest in cfg.raw.get("sha256", {}).items():
            if sha256(cfg.path / fname) != digest:
                raise ValueError(f"{cfg.path / fname}: checksum mismatch")

    def load(self, name: str, version: int | None = None):
        """The runtime of a model, cached: ``PointCloudModel`` for point-cloud classification,
        ``InputClassificationModel`` for cloud-only input classification (raw or Draco points),
        ``ImageCodec`` for image compression."""
        cfg = self.config(name, version)
        key = (cfg.name, cfg.version)
        with self._lock:
            if key not in self._loaded:
                if cfg.task == "pointcloud-classification":
                    from .pointcloud.runtime import PointCloudModel
                    self._loaded[key] = PointCloudModel(cfg)
                elif cfg.task == "pointcloud-input-classification":  # cloud-only: raw/Draco points
                    from .pointcloud.input_model import InputClassificationModel
                    self._loaded[key] = InputClassificationModel(cfg)
                elif cfg.task == "image-compression":
                    from .image.codec import ImageCodec
                    self._loaded[key] = ImageCodec(cfg)
                else:
                    raise UnknownModel(f"model {name!r} has an unknown task {cfg.task!r}")
            return self._loaded[key]


SIZES = ("full", "lite", "micro")


def pick_models(repo, names: list[str] | None = None, sizes=SIZES) -> list:
    """The configs to demo: those named, or the most accurate of each size."""
    configs = repo.list("pointcloud-classification")
    if names:
        return [repo.config(n) for n in names]
    chosen = []
    for size in sizes:
        of_size = [c for c in configs if c.raw.get("size") == size]
        if not of_size:
            continue
        at_1024 = [c for c in of_size if int(c.raw.get("points", 0)) == 1024] or of_size

        def key(c):
            m = c.raw.get("metrics") or {}
            return (m.get("test_accuracy") or 0.0, -(m.get("bits_mean") or 1e9))
        chosen.append(max(at_1024, key=key))
    return chosen
