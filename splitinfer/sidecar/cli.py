"""``splitinfer sidecar``: serve the image codec over HTTP (uvicorn).

    splitinfer sidecar --host 0.0.0.0 --port 8080 --models models
    python -m splitinfer.sidecar --port 8080
"""
from __future__ import annotations

import argparse
import os

from . import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES
# (argparse only: the app loads when run)


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0: all)")
    p.add_argument("--port", type=int, default=8080, help="HTTP port (default 8080)")
    p.add_argument("--models", help="model repository (default: $SPLITINFER_MODELS or ./models)")
    p.add_argument("--max-upload-mb", type=float, default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
                   help="largest upload in MiB (larger: 413)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="largest image in pixels once padded to multiples of 16 (larger: 413)")
    p.add_argument("--max-inflight-pixels", type=int, default=0,
                   help="pixels of the images coded at once (default: --max-pixels: one "
                        "full-size image, or several smaller); more wait briefly, then get 503 "
                        "with Retry-After")
    p.add_argument("--body-timeout-s", type=float, default=DEFAULT_BODY_TIMEOUT_S,
                   help=f"seconds a request body may take to arrive (slower: 408; default "
                        f"{DEFAULT_BODY_TIMEOUT_S:g})")
    p.add_argument("--max-uploads", type=int, default=0,
                   help="request bodies received at once (more: 503; default 2 x concurrency + 2)")
    p.add_argument("--workers", type=int, default=1,
                   help="uvicorn worker processes (each loads the models and keeps its own metrics)")
    p.add_argument("--concurrency", type=int, default=0,
                   help="codec jobs at once per process (default: the CPU count)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"], help="uvicorn's log level")
    p.set_defaults(func=run)
    return p


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``sidecar`` subcommand to the ``splitinfer`` command's subparsers."""
    p = subparsers.add_parser("sidecar", help="serve the image codec over HTTP (torch-free)",
                              description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    return add_arguments(p)


def _exit_quietly_after_shutdown() -> None:
    """uvicorn shuts down gracefully on SIGTERM / SIGINT, restores the previous handlers and
    raises the signal again; with these handlers the command then exits with status 0 (as
    ``splitinfer serve`` does), and a signal before uvicorn starts exits at once."""
    import signal

    def leave(*_):
        raise SystemExit(0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, leave)


class StartupError(Exception):
    """The sidecar cannot start (printed as one ``error:`` line, exit status 2)."""


def check(a: argparse.Namespace) -> None:
    """What would stop the server, found before uvicorn starts: the limits, the model folder,
    the address."""
    import socket
    for flag, v in (("--max-upload-mb", a.max_upload_mb), ("--max-pixels", a.max_pixels),
                    ("--workers", a.workers), ("--body-timeout-s", a.body_timeout_s)):
        if not v > 0:
            raise StartupError(f"{flag} must be positive, got {v}")
    for flag, v in (("--concurrency", a.concurrency), ("--max-uploads", a.max_uploads),
                    ("--max-inflight-pixels", a.max_inflight_pixels)):
        if v < 0:
            raise StartupError(f"{flag} must be 0 (the default) or positive, got {v}")
    if a.models and not os.path.isdir(a.models):
        raise StartupError(f"--models {a.models}: no such folder")
    try:
        infos = socket.getaddrinfo(a.host, a.port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise StartupError(f"--host {a.host}: {e.strerror}") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            raise StartupError(f"cannot listen on {a.host}:{a.port}: {e.strerror}") from None


def run(a: argparse.Namespace) -> int:
    import sys
    try:
        check(a)
        return _serve(a)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a startup failure is one line, never a traceback
        typed = isinstance(e, (StartupError, OSError, ValueError))
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {msg if typed else f'{type(e).__name__}: {msg}'}", file=sys.stderr)
        return 2


def _serve(a: argparse.Namespace) -> int:
    import uvicorn
    _exit_quietly_after_shutdown()
    max_upload = int(a.max_upload_mb * 2**20)
    if a.workers > 1:  # worker processes build their own app from the environment
        os.environ.update({"SPLITINFER_SIDECAR_MAX_UPLOAD_BYTES": str(max_upload),
                           "SPLITINFER_SIDECAR_MAX_PIXELS": str(a.max_pixels),
                           "SPLITINFER_SIDECAR_CONCURRENCY": str(a.concurrency or 0),
                           "SPLITINFER_SIDECAR_BODY_TIMEOUT_S": str(a.body_timeout_s),
                           "SPLITINFER_SIDECAR_MAX_UPLOADS": str(a.max_uploads or 0),
                           "SPLITINFER_SIDECAR_MAX_INFLIGHT_PIXELS": str(a.max_inflight_pixels or 0)})
        if a.models:
            os.environ["SPLITINFER_MODELS"] = os.path.abspath(a.models)
        uvicorn.run("splitinfer.sidecar.app:app_from_env", factory=True, host=a.host,
                    port=a.port, workers=a.workers, log_level=a.log_level,
                    timeout_graceful_shutdown=10)
        return 0
    from .app import create_app
    app = create_app(a.models, max_upload, a.max_pixels, a.concurrency or None,
                     body_timeout_s=a.body_timeout_s, max_uploads=a.max_uploads or None,
                     max_inflight_pixels=a.max_inflight_pixels or None)
    uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, timeout_graceful_shutdown=10)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m splitinfer.sidecar", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    a = add_arguments(p).parse_args(argv)
    return a.func(a)
