"""Which runtime class serves which model task, and what every runtime shares (:class:`Runtime`).

A runtime module registers its class at import (``register_runtime(task, cls)``); the model
repository asks ``runtime_for(cfg.task)`` and so imports no runtime itself. ``PROVIDERS`` names
the module that registers each shipped task: ``runtime_for`` imports it on first demand, so a
caller that never imported the runtime still gets it.
"""
from __future__ import annotations

import importlib
from typing import Callable

#: task -> the module that registers its runtime at import.
PROVIDERS = {
    "pointcloud-classification": "splitinfer.pointcloud.runtime",
    "pointcloud-input-classification": "splitinfer.pointcloud.input_model",  # cloud-only
    "image-compression": "splitinfer.image.codec",
}
_RUNTIMES: dict[str, Callable] = {}


class Runtime:
    """A loaded model version: its repository config (``ModelConfig``), name and digest, and the
    onnxruntime threads its sessions use."""

    def __init__(self, config, threads: int = 1):
        self.config = config
        self.threads = threads

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def digest(self) -> str:
        """The model's digest (``ModelConfig.digest``); containers carry its first 8 bytes."""
        return self.config.digest


def register_runtime(task: str, factory: Callable) -> Callable:
    """Register ``factory(cfg) -> runtime`` for ``task``; returns ``factory`` (usable as a
    class decorator)."""
    _RUNTIMES[task] = factory
    return factory


def tasks() -> list[str]:
    """Every task this splitinfer serves: the shipped ones, then any other registered."""
    return list(PROVIDERS) + [t for t in _RUNTIMES if t not in PROVIDERS]


def runtime_for(task: str) -> Callable | None:
    """The registered factory of ``task`` (its provider imported on first demand), or None."""
    if task not in _RUNTIMES and task in PROVIDERS:
        importlib.import_module(PROVIDERS[task])
    return _RUNTIMES.get(task)
