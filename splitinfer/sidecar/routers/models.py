"""``GET /v1/models``: the image codecs this sidecar serves."""
from __future__ import annotations

from fastapi import APIRouter, Request

from ..schemas import ModelInfo, ModelList
from ..service import analysis_module, has_adaptive

router = APIRouter(tags=["models"])


@router.get("/v1/models", response_model=ModelList, summary="List the image models")
async def list_models(request: Request) -> ModelList:
    """The image-compression models, lowest quality (the default) first."""
    sidecar = request.app.state.sidecar
    configs = sidecar.configs()
    default = configs[0].name if configs else None
    rows = []
    for c in configs:
        r = c.raw
        rows.append(ModelInfo(
            name=c.name, version=c.version, quality=r.get("quality"), lmbda=r.get("lmbda"),
            N=r.get("N"), M=r.get("M"), downsampling=r.get("downsampling"),
            adaptive=has_adaptive(c), default=c.name == default,
            metrics=r.get("metrics") if isinstance(r.get("metrics"), dict) else None,
            training=r.get("training") if isinstance(r.get("training"), dict) else None))
    return ModelList(models=rows, default=default, analysis=analysis_module()[0] is not None,
                     max_upload_bytes=sidecar.max_upload_bytes, max_pixels=sidecar.max_pixels)
