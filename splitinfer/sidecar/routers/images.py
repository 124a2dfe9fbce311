"""``/v1/images:compress``, ``/v1/images:decompress`` and ``/v1/images:analyze``."""
from __future__ import annotations

import math
from pathlib import PurePath
from typing import Annotated, Any, Optional

import anyio
import numpy as np
from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from ...codec import BitstreamError
from ..schemas import Analysis, ErrorBody
from ..service import ApiError, Sidecar, analysis_module, bitstream_error, encode_png, psnr

router = APIRouter(tags=["images"])


def _errors(*codes: int) -> dict:
    text = {400: "Unreadable image or malformed bitstream (the code names the BitstreamError "
                 "subclass)", 404: "Unknown model", 409: "Adaptive coding asked of a model "
                 "without an adaptive entropy bottleneck", 408: "The upload was not received "
                 "within the body timeout", 413: "Upload over the size limit or image over the "
                 "pixel or aspect-ratio limit", 415: "Not an image", 501: "Analysis not available "
                 "in this build", 503: "No image models are available, or the "
                 "server is busy (Busy, with Retry-After)"}
    return {c: {"model": ErrorBody, "description": text[c]} for c in codes}


def _header(desc: str, type_: str = "string") -> dict:
    return {"description": desc, "schema": {"type": type_}}


RESULT_HEADERS = {
    "X-Splitinfer-Model": _header("Model that coded the image"),
    "X-Splitinfer-Bytes": _header("Container bytes", "integer"),
    "X-Splitinfer-Bpp": _header("Bits per pixel: 8 * bytes / (width * height)", "number"),
    "X-Splitinfer-Width": _header("Image width in pixels", "integer"),
    "X-Splitinfer-Height": _header("Image height in pixels", "integer"),
    "X-Splitinfer-Adaptive": _header("Whether adaptive encoding distributions were used"),
}


def _sidecar(request: Request) -> Sidecar:
    return request.app.state.sidecar


def _result_headers(model: str, nbytes: int, width: int, height: int, adaptive: bool) -> dict:
    return {"X-Splitinfer-Model": model, "X-Splitinfer-Bytes": str(nbytes),
            "X-Splitinfer-Bpp": f"{8.0 * nbytes / (width * height):.6f}",
            "X-Splitinfer-Width": str(width), "X-Splitinfer-Height": str(height),
            "X-Splitinfer-Adaptive": "true" if adaptive else "false"}


async def _upload(sidecar: Sidecar, file: UploadFile) -> bytes:
    data = await file.read(sidecar.max_upload_bytes + 1)
    sidecar.check_upload(data)
    return data


def _stem(file: UploadFile) -> str:
    stem = PurePath(file.filename or "image").stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "image"


ModelQuery = Annotated[Optional[str], Query(alias="model", max_length=255, description=
                       "Model name (default: the lowest-quality image model); also a form field")]
AdaptiveQuery = Annotated[bool, Query(alias="adaptive", description=
                          "Use per-image adaptive encoding distributions; also a form field")]
ModelForm = Annotated[Optional[str], Form(alias="model", max_length=255)]
AdaptiveForm = Annotated[bool, Form(alias="adaptive")]
ImageFile = Annotated[UploadFile, File(description="The image: PNG, JPEG, WebP, BMP, GIF, TIFF "
                                                   "or PPM")]


@router.post("/v1/images:compress", response_class=Response, summary="Compress an image",
             responses={200: {"description": "The SPLT container", "headers": RESULT_HEADERS,
                              "content": {"application/octet-stream": {
                                  "schema": {"type": "string", "format": "binary"}}}},
                        **_errors(400, 404, 408, 409, 413, 415, 503)})
async def compress(request: Request, file: ImageFile, model_q: ModelQuery = None,
                   adaptive_q: AdaptiveQuery = False, model_f: ModelForm = None,
                   adaptive_f: AdaptiveForm = False) -> Response:
    """Code an uploaded image into an SPLT container (``application/octet-stream``)."""
    sidecar = _sidecar(request)
    model = model_f or model_q or None
    adaptive = adaptive_f or adaptive_q
    codec = sidecar.codec(model, adaptive)          # 404 / 409 before any work
    data = await _upload(sidecar, file)
    pixels = await anyio.to_thread.run_sync(sidecar.image_pixels, data)  # 413 from the header
    async with sidecar.admit(pixels):               # 503 Busy when over the work in flight
        rgb = await sidecar.run("read", codec.name, sidecar.read_image, data)
        H, W = rgb.shape[:2]
        try:
            out = await sidecar.run("compress", codec.name, codec.compress, rgb, adaptive)
        except BitstreamError as e:
            raise bitstream_error(e) from None
        del rgb
    m = sidecar.metrics
    m.images.labels("compress", codec.name, str(adaptive).lower()).inc()
    m.pixels.labels("compress", codec.name).inc(H * W)
    m.bitstream_bytes.labels("compress", codec.name).inc(len(out))
    m.bpp.labels(codec.name, str(adaptive).lower()).observe(8.0 * len(out) / (H * W))
    m.image_pixels.labels("compress").observe(H * W)
    headers = _result_headers(codec.name, len(out), W, H, adaptive)
    headers["Content-Disposition"] = f'attachment; filename="{_stem(file)}.splt"'
    return Response(out, media_type="application/octet-stream", headers=headers)


DECOMPRESS_BODY = {"requestBody": {"required": True, "content": {
    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
        "file": {"type": "string", "format": "binary", "description": "The SPLT container"}}}},
}}}


@router.post("/v1/images:decompress", response_class=Response, summary="Decompress a bitstream",
             openapi_extra=DECOMPRESS_BODY,
             responses={200: {"description": "The decoded image", "headers": RESULT_HEADERS,
                              "content": {"image/png": {
                                  "schema": {"type": "string", "format": "binary"}}}},
                        **_errors(400, 404, 408, 409, 413, 503)})
async def decompress(request: Request) -> Response:
    """Decode an SPLT container (the raw body, or a multipart field ``file``) to a PNG. The
    model is the version whose digest the container carries."""
    sidecar = _sidecar(request)
    ctype = request.headers.get("content-type", "").lower()
    if ctype.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=8)
        file = form.get("file")
        if not hasattr(file, "read"):
            raise ApiError(422, "ValidationError", "invalid request: file: a multipart body "
                                                   "needs the container in a file field 'file'")
        data = await _upload(sidecar, file)
    else:
        data = await request.body()
    container = sidecar.parse_bitstream(data)            # 400 / 413 on the header alone
    adaptive = len(container.payloads) == 2
    codec = sidecar.codec_for(container, adaptive)       # 404 / 409
    async with sidecar.admit(sidecar.container_pixels(container)):
        try:
            rgb = await sidecar.run("decompress", codec.name, codec.decompress, data)
        except BitstreamError as e:
            raise bitstream_error(e) from None
        png = await sidecar.run("png", codec.name, encode_png, rgb)
        H, W = rgb.shape[:2]
        del rgb
    m = sidecar.metrics
    m.images.labels("decompress", codec.name, str(adaptive).lower()).inc()
    m.pixels.labels("decompress", codec.name).inc(H * W)
    m.bitstream_bytes.labels("decompress", codec.name).inc(len(data))
    m.image_pixels.labels("decompress").observe(H * W)
    return Response(png, media_type="image/png",
                    headers=_result_headers(codec.name, len(data), W, H, adaptive))


def jsonable(x: Any) -> Any:
    """numpy and nested containers -> JSON types; non-finite floats -> None."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer, int)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        f = float(x)
        return f if math.isfinite(f) else None
    return x


def _analyze(analysis, codec, rgb: np.ndarray) -> dict:
    """analyze() plus the real static and adaptive containers: their sizes, and the PSNR of the
    decoded image (both decode to the same y_hat, so to the same image: checked, then decoded
    once)."""
    H, W = rgb.shape[:2]
    y_hat = codec.analysis(rgb)  # g_a once, shared with analyze(); the round trip is checked below
    result = jsonable(analysis.analyze(codec, rgb, verify=False, y_hat=y_hat))
    static = codec.pack(y_hat, H, W, adaptive=False)
    p = psnr(rgb, codec.decompress(static))
    p = None if p is None else round(p, 4)
    recon = {"static": {"bytes": len(static), "bpp": 8.0 * len(static) / (H * W), "psnr": p},
             "adaptive": None}
    if codec.adaptive is not None:
        data = codec.pack(y_hat, H, W, adaptive=True)
        decoded, _, _ = codec.unpack(data)
        if not np.array_equal(decoded, y_hat):
            raise ApiError(500, "InternalError", "adaptive bitstream did not decode exactly")
        recon["adaptive"] = {"bytes": len(data), "bpp": 8.0 * len(data) / (H * W), "psnr": p}
    result["reconstruction"] = recon
    return result


@router.post("/v1/images:analyze", response_model=Analysis, summary="Analyse an image's rates",
             responses=_errors(400, 404, 408, 413, 415, 501, 503))
async def analyze(request: Request, file: ImageFile, model_q: ModelQuery = None,
                  model_f: ModelForm = None) -> Analysis:
    """The real coded sizes of an image's latent under the static, adaptive, ideal and
    non-learned distributions, the distributions themselves (-log2 p per channel and bin offset)
    and the bytes, bpp and PSNR of its static and adaptive codings. The adaptive entries are
    null for a model without an adaptive entropy bottleneck."""
    sidecar = _sidecar(request)
    analysis, why = analysis_module()
    if analysis is None:
        raise ApiError(501, "AnalysisUnavailable", f"this build cannot analyse images "
                                                   f"(splitinfer.image.analysis: {why})")
    codec = sidecar.codec(model_f or model_q or None)   # 404
    data = await _upload(sidecar, file)
    pixels = await anyio.to_thread.run_sync(sidecar.image_pixels, data)
    async with sidecar.admit(pixels):
        rgb = await sidecar.run("read", codec.name, sidecar.read_image, data)
        try:
            result = await sidecar.run("analyze", codec.name, _analyze, analysis, codec, rgb)
        except BitstreamError as e:
            raise bitstream_error(e) from None
    m = sidecar.metrics
    m.images.labels("analyze", codec.name, str(codec.adaptive is not None).lower()).inc()
    m.pixels.labels("analyze", codec.name).inc(rgb.shape[0] * rgb.shape[1])
    m.image_pixels.labels("analyze").observe(rgb.shape[0] * rgb.shape[1])
    return Analysis.model_validate(result)
