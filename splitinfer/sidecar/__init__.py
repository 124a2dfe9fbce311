"""The image codec sidecar: an HTTP API (FastAPI on uvicorn) and a web page over the torch-free
:class:`splitinfer.image.codec.ImageCodec`. ``splitinfer sidecar`` or ``python -m
splitinfer.sidecar`` runs it; :func:`create_app` builds the app."""
from __future__ import annotations

#: Default limits (also the `splitinfer sidecar` defaults): a 20 MiB upload, a 2048 x 2048 image.
DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 2048 * 2048
#: Seconds a request body may take to arrive (slower: 408).
DEFAULT_BODY_TIMEOUT_S = 60.0


def create_app(*args, **kwargs):
    from .app import create_app as _create
    return _create(*args, **kwargs)
