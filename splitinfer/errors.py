"""Errors shared by every layer (the codec's bitstream errors live in ``splitinfer.codec``)."""
from __future__ import annotations

from pathlib import Path


class ModelError(ValueError):
    """A model version cannot be used: broken config, missing or altered file, a file outside its
    folder, a digest that does not match, or a file its runtime refuses. The message names the
    file and the fix."""

    def __init__(self, path: str | Path, message: str):
        super().__init__(f"{path}: {message}")
        self.path = str(path)
        self.reason = message
