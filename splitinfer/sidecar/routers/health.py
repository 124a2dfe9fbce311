"""``/healthz`` (the process answers), ``/readyz`` (the models are loaded) and ``/metrics``."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..schemas import ErrorBody, Health, Ready
from ..service import ApiError

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves HTTP."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, summary="Readiness",
            responses={503: {"model": ErrorBody, "description": "Models not (yet) loaded"}})
async def readyz(request: Request) -> Ready:
    """200 once the image models have loaded and coded a test image; 503 before (a failed load
    is retried by the next probe). Broken models are skipped and listed in ``broken``."""
    sidecar = request.app.state.sidecar
    if not sidecar.ready and not sidecar._load_lock.locked():
        await anyio.to_thread.run_sync(sidecar.load_all)
    if not sidecar.ready:
        why = sidecar.load_error or "models are loading"
        raise ApiError(503, "NotReady", f"not ready: {why}")
    return Ready(status="ready", models=sidecar.loaded, broken=sidecar.broken)


@router.get("/metrics", response_class=Response, summary="Prometheus metrics",
            responses={200: {"description": "Prometheus text exposition format",
                             "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    body, ctype = request.app.state.sidecar.metrics.exposition()
    return Response(body, media_type=ctype)
