"""Helpers of the service tests: real server processes on loopback, metrics, a torch blocker."""
from __future__ import annotations

import re
import sys
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from splitinfer.data import SAMPLE  # noqa: F401  (the tests import it from here)
from splitinfer.process import free_port  # noqa: F401  (the tests import it from here)

ROOT = Path(__file__).resolve().parents[1]


def model_name(size: str = "micro") -> str:
    """A shipped model of that size (P=1024, the most accurate), or skip."""
    from splitinfer.repository import pick_models
    from splitinfer.repository import ModelRepository
    chosen = [c for c in pick_models(ModelRepository(), sizes=(size,))]
    if not chosen:
        pytest.skip(f"no shipped {size} model in the repository")
    return chosen[0].name


def torch_blocker(directory: Path) -> Path:
    """A folder whose ``torch`` package refuses to import: put it first on PYTHONPATH."""
    pkg = directory / "torch"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("raise ImportError('torch is blocked: this process must not need it')\n")
    return directory


def start_server(models: list[str], extra: list[str] | None = None, port: int = 0, blocker: Path | None = None):
    from cloud_server.process import ServerProcess
    env = {"PYTHONPATH": str(blocker)} if blocker else None
    if blocker:  # keep a PYTHONPATH the caller had (e.g. a development shim), after the blocker
        import os
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] += os.pathsep + os.environ["PYTHONPATH"]
    return ServerProcess(models, extra=extra, port=port, env=env)


def scrape(metrics_port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()


def metric(metrics_port: int, name: str, **labels) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", scrape(metrics_port), re.M):
        got = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(2))
    return total


@lru_cache(maxsize=None)
def encoded(name: str, count: int = 120) -> tuple[list[bytes], list[int], list[int]]:
    """(payloads, labels the server must answer, true labels) of the first sample clouds."""
    from splitinfer.repository import ModelRepository
    m = ModelRepository().load(name)
    with np.load(SAMPLE) as z:
        points, truth = z["points"][:count], z["labels"][:count]
    payloads = [m.encode(p) for p in points]
    expected = [int(np.argmax(m.classify(m.decode(b)[None].astype(np.float32))[0])) for b in payloads]
    return payloads, expected, [int(t) for t in truth]


@lru_cache(maxsize=None)
def latents(name: str, count: int = 120) -> tuple[list[bytes], list[int], list[int]]:
    """(stream frames: the coded latents alone, labels the server must answer, true labels)."""
    from splitinfer.repository import ModelRepository
    m = ModelRepository().load(name)
    with np.load(SAMPLE) as z:
        points, truth = z["points"][:count], z["labels"][:count]
    frames = [m.encode_latent(p) for p in points]
    expected = [int(np.argmax(m.classify(m.decode_latent(b)[None].astype(np.float32))[0])) for b in frames]
    return frames, expected, [int(t) for t in truth]


def python() -> str:
    return sys.executable


def tiny_plain_onnx(path: Path, classes: int = 40, seed: int = 0) -> Path:
    """A stand-in plain PointNet: points (B, N, 3) -> pointwise linear + ReLU -> max over points
    -> linear -> logits (B, classes), any N. Needs the `onnx` package (skips without it)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(3, 32)).astype(np.float32)
    w2 = rng.normal(size=(32, classes)).astype(np.float32)
    b2 = rng.normal(size=(classes,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["points", "w1"], ["h"]),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("ReduceMax", ["r"], ["g"], axes=[1], keepdims=0),
         helper.make_node("MatMul", ["g", "w2"], ["z"]),
         helper.make_node("Add", ["z", "b2"], ["logits"])],
        "tiny_plain",
        [helper.make_tensor_value_info("points", TensorProto.FLOAT, ["batch", "n", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"), numpy_helper.from_array(b2, "b2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def input_model_repo(directory: Path, with_codecs: bool = True) -> Path:
    """A model repository with a tiny cloud-only model "plain-pointnet-p1024" (and links to the
    shipped codecs)."""
    from splitinfer.pointcloud.input_model import package_plain
    from splitinfer.repository import ModelRepository
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if with_codecs:
        for cfg in ModelRepository().list("pointcloud-classification"):
            link = directory / cfg.name
            if not link.exists():
                link.symlink_to(cfg.path.parent.resolve())
    onnx_path = tiny_plain_onnx(directory / "_src" / "tiny_plain.onnx")
    package_plain(onnx_path, "plain-pointnet-p1024", directory)
    return directory
