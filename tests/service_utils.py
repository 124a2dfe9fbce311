"""Helpers of the service tests: real server processes on loopback, metrics, a torch blocker."""
from __future__ import annotations

import re
import socket
import sys
import urllib.request
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "splitinfer" / "data" / "sample_modelnet40.npz"


def model_name(size: str = "micro") -> str:
    """A shipped model of that size (P=1024, the most accurate), or skip."""
    from splitinfer.demo import pick_models
    from splitinfer.repository import ModelRepository
    chosen = [c for c in pick_models(ModelRepository(), sizes=(size,))]
    if not chosen:
        pytest.skip(f"no shipped {size} model in the repository")
    return chosen[0].name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torch_blocker(directory: Path) -> Path:
    """A folder whose ``torch`` package refuses to import: put it first on PYTHONPATH."""
    pkg = directory / "torch"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("raise ImportError('torch is blocked: this process must not need it')\n")
    return directory


def start_server(models: list[str], extra: list[str] | None = None, port: int = 0, blocker: Path | None = None):
    from splitinfer.demo import ServerProcess
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


def python() -> str:
    return sys.executable
