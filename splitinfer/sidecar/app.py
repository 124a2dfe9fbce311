"""The image codec sidecar: a FastAPI app over the torch-free :class:`ImageCodec`.

    POST /v1/images:compress    multipart upload ``file`` (+ ``model``, ``adaptive``) -> SPLT bytes
    POST /v1/images:decompress  SPLT bytes (raw body or multipart ``file``) -> image/png
    POST /v1/images:analyze     multipart upload -> JSON: rates and encoding distributions
    GET  /v1/models             the image models served
    GET  /healthz  /readyz  /metrics
    GET  /                      a web page over the API

Every failure is a JSON ``{"error": {"code", "message"}}`` with a 4xx status or 503: 413 for an
upload or image over the limits, 408 for a body that does not arrive in time, 415 for what is not
an image, 400 for unreadable images and malformed bitstreams (the code names the BitstreamError
subclass), 404 for unknown models, 409 for adaptive coding asked of a model without it, 422 for
invalid parameters, 503 ``Busy`` (with Retry-After) when the server has all the work it takes.
"""
from __future__ import annotations

import threading
import time
from contextlib import asynccontextmanager
from http import HTTPStatus
from pathlib import Path

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__ as VERSION
from ..repository import ModelRepository
from .telemetry import Metrics
from .routers import health, images, models
from .schemas import ErrorBody, ErrorDetail
from . import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES
from .service import ApiError, Sidecar, static_dir, too_large

#: Room for the multipart framing and form fields around an upload of ``max_upload_bytes``.
MULTIPART_SLACK = 64 * 1024


def route_label(scope) -> str:
    """The route template of a request (a bounded label set), also before routing (413s)."""
    route = scope.get("route")
    if route is not None and getattr(route, "path", None):
        return route.path
    path = scope.get("path", "")
    app = scope.get("app")
    known = getattr(getattr(app, "state", None), "route_paths", ()) if app is not None else ()
    if path in known:
        return path
    return "/static" if path.startswith("/static/") else "unmatched"


def error_response(scope, sidecar: Sidecar, status: int, code: str, message: str,
                   headers: dict | None = None) -> JSONResponse:
    sidecar.metrics.errors.labels(route_label(scope), code).inc()
    body = ErrorBody(error=ErrorDetail(code=code, message=message))
    return JSONResponse(body.model_dump(), status_code=status, headers=headers)


def _status_code_name(status: int) -> str:
    try:
        return HTTPStatus(status).phrase.title().replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


class SidecarMiddleware:
    """Pure ASGI: reads request bodies before the app does, bounded in size (413 as soon as the
    bytes received pass the cap, not after reading all), in time (408 when the whole body has
    not arrived within ``body_timeout_s``) and in number (at most ``max_uploads`` bodies
    being received at once; more: 503 with Retry-After); counts and times requests."""

    def __init__(self, app, sidecar: Sidecar, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
                 max_uploads: int | None = None):
        self.app, self.sidecar = app, sidecar
        self.limit = sidecar.max_upload_bytes + MULTIPART_SLACK
        self.body_timeout_s = float(body_timeout_s)
        self.max_uploads = int(max_uploads or 2 * sidecar.concurrency + 2)
        self.uploads = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        m = self.sidecar.metrics
        status = [None]

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        t0 = time.perf_counter()
        m.inflight.inc()
        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                if self.uploads >= self.max_uploads:
                    await error_response(scope, self.sidecar, 503, "Busy",
                                         f"{self.uploads} uploads are being received; retry later",
                                         headers={"Retry-After": "1", "Connection": "close"})(
                        scope, receive, send_wrapper)
                    return
                self.uploads += 1
                try:
                    with anyio.move_on_after(self.body_timeout_s) as timer:
                        replay = await self._read_body(scope, receive, send_wrapper)
                finally:
                    self.uploads -= 1
                if timer.cancelled_caught:
                    await error_response(scope, self.sidecar, 408, "RequestTimeout",
                                         f"the request body did not arrive within "
                                         f"{self.body_timeout_s:g} s",
                                         headers={"Connection": "close"})(scope, receive, send_wrapper)
                    return
                if replay is None:
                    return
                receive = replay
            await self.app(scope, receive, send_wrapper)
        finally:
            m.inflight.dec()
            route = route_label(scope)
            # no answer sent: the client went away while sending (499) or the app raised (500)
            code = status[0] or (499 if scope.get("splitinfer.disconnected") else 500)
            m.requests.labels(route, scope["method"], str(code)).inc()
            m.latency.labels(route).observe(time.perf_counter() - t0)

    async def _read_body(self, scope, receive, send):
        """The whole body, or None after answering 413/400 (the app is then not called)."""
        declared = None
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    declared = int(v)
                except ValueError:
                    await error_response(scope, self.sidecar, 400, "BadRequest",
                                         "invalid Content-Length header")(scope, receive, send)
                    return None
        if declared is not None and declared > self.limit:
            await error_response(scope, self.sidecar, 413, *self._too_large(declared),
                                 headers={"Connection": "close"})(scope, receive, send)
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope["splitinfer.disconnected"] = True
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await error_response(scope, self.sidecar, 413, *self._too_large(None),
                                     headers={"Connection": "close"})(scope, receive, send)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        done = [False]

        async def replay():
            if not done[0]:
                done[0] = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return replay

    def _too_large(self, size):
        e = too_large(size, self.sidecar.max_upload_bytes)
        return e.code, e.message


def create_app(repo_root: str | Path | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
               max_pixels: int = DEFAULT_MAX_PIXELS, concurrency: int | None = None,
               load_on_startup: bool = True, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
               max_uploads: int | None = None, max_inflight_pixels: int | None = None,
               queue_timeout_s: float = 5.0) -> FastAPI:
    """The sidecar app over the image models of ``repo_root`` (default: SPLITINFER_MODELS or
    ./models). Models load in the background at startup; /readyz answers 200 once they have.

    Bounds: ``max_upload_bytes`` and ``max_pixels`` (padded to the codec's 16-pixel grid) per
    request; ``body_timeout_s`` to receive a body, ``max_uploads`` bodies received at once;
    ``max_inflight_pixels`` of images coded at once (default max_pixels), a request that
    does not fit waiting up to ``queue_timeout_s`` (then 503 Busy, Retry-After)."""
    kw = {"concurrency": concurrency} if concurrency else {}
    sidecar = Sidecar(ModelRepository(repo_root), int(max_upload_bytes), int(max_pixels),
                      metrics=Metrics(), max_inflight_pixels=max_inflight_pixels,
                      queue_timeout_s=float(queue_timeout_s), **kw)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if load_on_startup:
            threading.Thread(target=sidecar.load_all, name="sidecar-load", daemon=True).start()
        yield

    app = FastAPI(
        title="splitinfer image codec sidecar", version=VERSION, lifespan=lifespan,
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        responses={422: {"model": ErrorBody, "description": "Invalid parameters"}})
    app.state.sidecar = sidecar

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return error_response(request.scope, sidecar, e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError):
        parts = []
        for err in e.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{loc or 'request'}: {err.get('msg', 'invalid')}")
        return error_response(request.scope, sidecar, 422, "ValidationError",
                              "invalid request: " + "; ".join(parts))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        detail = e.detail if isinstance(e.detail, str) else str(e.detail)
        return error_response(request.scope, sidecar, e.status_code,
                              _status_code_name(e.status_code), detail, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, e: Exception):  # a bug: still a JSON body
        return error_response(request.scope, sidecar, 500, "InternalError",
                              f"internal error: {type(e).__name__}")

    app.include_router(images.router)
    app.include_router(models.router)
    app.include_router(health.router)

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(static_dir() / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    app.state.route_paths = frozenset(r.path for router in (images.router, models.router,
                                                            health.router) for r in router.routes)
    app.add_middleware(SidecarMiddleware, sidecar=sidecar, body_timeout_s=body_timeout_s,
                       max_uploads=max_uploads)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several workers): settings from SPLITINFER_SIDECAR_*."""
    import os
    env = os.environ.get
    return create_app(env("SPLITINFER_MODELS") or None,
                      int(env("SPLITINFER_SIDECAR_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES)),
                      int(env("SPLITINFER_SIDECAR_MAX_PIXELS", DEFAULT_MAX_PIXELS)),
                      int(env("SPLITINFER_SIDECAR_CONCURRENCY", 0)) or None,
                      body_timeout_s=float(env("SPLITINFER_SIDECAR_BODY_TIMEOUT_S", DEFAULT_BODY_TIMEOUT_S)),
                      max_uploads=int(env("SPLITINFER_SIDECAR_MAX_UPLOADS", 0)) or None,
                      max_inflight_pixels=int(env("SPLITINFER_SIDECAR_MAX_INFLIGHT_PIXELS", 0)) or None)
