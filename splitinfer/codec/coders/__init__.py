"""Range-coder backends, byte-identical to each other (``docs/bitstream.md`` section 2):

- ``constriction``: constriction 0.5 (Rust), used where its wheel installs;
- ``python``: numpy and plain Python, everywhere (:mod:`.python_backend`).

The choice: an explicit ``coder=`` argument, else :func:`set_default` (the CLIs'
``--coder``), else the ``SPLITINFER_CODER`` environment variable, else ``auto`` (constriction
when importable, python otherwise). Each backend offers ``rows_model(pmf)`` / ``iid_model(pmf)``
for 24-bit integer frequencies, an ``Encoder`` (``encode_rows``, ``encode_iid``,
``encode_uniform``, ``words``, ``interval``) and a ``Decoder(words)`` (``decode_rows``,
``decode_iid``, ``decode_uniform``).
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

CHOICES = ("auto", "constriction", "python")
ENV = "SPLITINFER_CODER"
_MODULES = {"constriction": ".constriction_backend", "python": ".python_backend"}
_default: str | None = None


def _check(name: str) -> str:
    name = str(name).strip().lower()
    if name not in CHOICES:
        raise ValueError(f"unknown range coder {name!r} (choose from {', '.join(CHOICES)})")
    return name


def set_default(name: str | None) -> None:
    """Process-wide choice (``None``: back to ``SPLITINFER_CODER`` / auto)."""
    global _default
    _default = None if name is None else _check(name)
    if _default not in (None, "auto"):
        get(_default)  # fail now, not at the first frame


def available() -> list[str]:
    """Backends that import here."""
    out = []
    for name in _MODULES:
        try:
            get(name)
        except ImportError:
            continue
        out.append(name)
    return out


def get(name: str | None = None) -> ModuleType:
    """The backend module for ``name`` (None: the process default; see the module docstring)."""
    name = _check(name or _default or os.environ.get(ENV) or "auto")
    if name == "auto":
        try:
            return importlib.import_module(_MODULES["constriction"], __name__)
        except ImportError:
            return importlib.import_module(_MODULES["python"], __name__)
    try:
        return importlib.import_module(_MODULES[name], __name__)
    except ImportError as e:
        raise ImportError(f"range coder {name!r} is not available here ({e}); "
                          "use --coder python (or SPLITINFER_CODER=python)") from e
