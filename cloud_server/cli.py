"""``splitinfer serve``: the cloud inference server (``python -m cloud_server`` does the same)."""
from __future__ import annotations

import argparse
import logging
import os
import sys

#: Default port of the metrics endpoint (not 9100, node_exporter's) and its default address:
#: loopback only (docs/operations.md says how to expose it). Defined here, where argparse needs
#: them without importing prometheus_client (an edge-only install registers ``serve`` too).
from .defaults import DEFAULT_METRICS_HOST, DEFAULT_METRICS_PORT


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--models", dest="models_dir", metavar="DIR",
                   help="model repository (default: models/ or $SPLITINFER_MODELS)")
    s.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="serve only this model (repeatable; default: every model of the repository)")
    s.add_argument("--host", default=os.environ.get("SPLITINFER_HOST", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=int(os.environ.get("SPLITINFER_PORT", 50051)),
                   help="gRPC port (default 50051; 0 picks a free one, see --ready-file)")
    s.add_argument("--metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                   help=f"Prometheus /metrics HTTP port (default {DEFAULT_METRICS_PORT}; 0: a free one; "
                        "-1: off)")
    s.add_argument("--metrics-host", default=DEFAULT_METRICS_HOST,
                   help=f"address of the metrics endpoint (default {DEFAULT_METRICS_HOST}: loopback "
                        "only; see docs/operations.md before exposing it)")
    s.add_argument("--max-batch-size", type=int, default=64, help="dynamic batching: largest batch (1: off)")
    s.add_argument("--max-queue-delay-ms", type=float, default=0.0,
                   help="dynamic batching: how long a request may wait for its batch to fill "
                        "(default 0: greedy, batches form from what queued while the last one ran)")
    s.add_argument("--batch-executor", choices=["inline", "thread"], default="inline",
                   help="run batches inline on the event loop, batching what arrived in one loop "
                        "iteration (default: no thread hand-offs, best on few cores and small "
                        "models), or on a batcher thread per model (onnxruntime releases the GIL: "
                        "better for heavy models on many cores)")
    s.add_argument("--max-queue-size", type=int, default=4096,
                   help="requests waiting per model before new ones are refused (UNAVAILABLE)")
    s.add_argument("--max-message-bytes", type=int, default=64 * 1024,
                   help="largest payload accepted (RESOURCE_EXHAUSTED above; default 64 KiB)")
    s.add_argument("--max-stream-inflight", type=int, default=256,
                   help="frames of one stream read and not yet answered; a client that does not "
                        "read its answers stops being read (default 256)")
    s.add_argument("--ledger-bytes", type=int, default=64 << 20,
                   help="idempotency ledger budget, all streams (default 64 MiB)")
    s.add_argument("--ledger-stream-bytes", type=int, default=1 << 20,
                   help="idempotency ledger budget per stream (default 1 MiB)")
    s.add_argument("--ledger-grace-s", type=float, default=60.0,
                   help="a closed stream's ledger is kept this long for a reconnect (default 60)")
    s.add_argument("--max-stream-id-bytes", type=int, default=1024,
                   help="longer stream ids are refused (INVALID_ARGUMENT; default 1024)")
    s.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    s.add_argument("--tls-key", help="PEM private key of --tls-cert")
    s.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mTLS)")
    s.add_argument("--token", action="append", default=[],
                   help="require 'authorization: Bearer TOKEN' (repeatable; also $SPLITINFER_TOKEN)")
    s.add_argument("--token-file", help="file of accepted tokens: one per line, blank lines and "
                                        "lines starting with '#' ignored")
    s.add_argument("--no-auth", action="store_true",
                   help="serve without token auth even though --token / --token-file were given "
                        "empty (without it, auth asked for with no token refuses to start)")
    s.add_argument("--grace-s", type=float, default=10.0,
                   help="on SIGTERM, how long in-flight calls may take to finish")
    s.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    s.add_argument("--ready-file", help="write {port, metrics_port, pid, models} as JSON once serving")
    s.add_argument("--log-level", default="INFO", help="logging level: DEBUG, INFO (default), WARNING, ERROR")
    s.add_argument("--workers", type=int, default=0,
                   help="server processes sharing the port (SO_REUSEPORT) under a supervisor that "
                        "aggregates their metrics and drains them all on SIGTERM (default 0: one "
                        "per core; 1: a single process; docs/deploy.md)")


class UsageError(Exception):
    """Options the server cannot start with (printed as one ``error:`` line)."""


def tokens(a: argparse.Namespace) -> list[str]:
    """The accepted tokens; refuses auth asked for with no token (an empty --token or token
    file) unless --no-auth says so explicitly."""
    from .auth import load_tokens
    out = load_tokens(a.token, a.token_file)
    asked = bool(a.token) or a.token_file is not None
    if a.no_auth:
        if out:
            raise UsageError("--no-auth conflicts with the tokens given (--token, --token-file or "
                             "$SPLITINFER_TOKEN)")
        return []
    if asked and not out:
        where = f"the token file {a.token_file} holds no token" if a.token_file else "--token is empty"
        raise UsageError(f"{where}: refusing to start without auth (fill it in, or pass --no-auth "
                         "to serve without auth)")
    return out


def options(a: argparse.Namespace):
    from .server import ServerOptions
    from .validation import check_tls
    check_tls(a.tls_cert, a.tls_key, a.tls_client_ca)
    return ServerOptions(
        host=a.host, port=a.port, models_dir=a.models_dir, models=a.model,
        max_batch_size=a.max_batch_size, max_queue_delay_ms=a.max_queue_delay_ms,
        batch_executor=a.batch_executor,
        max_queue_size=a.max_queue_size, max_message_bytes=a.max_message_bytes,
        metrics_port=None if a.metrics_port < 0 else a.metrics_port, metrics_host=a.metrics_host,
        tls_cert=a.tls_cert, tls_key=a.tls_key, tls_client_ca=a.tls_client_ca,
        tokens=tokens(a), grace_s=a.grace_s, threads=a.threads,
        ready_file=a.ready_file, max_stream_inflight=a.max_stream_inflight, ledger_bytes=a.ledger_bytes,
        ledger_stream_bytes=a.ledger_stream_bytes, ledger_grace_s=a.ledger_grace_s,
        max_stream_id_bytes=a.max_stream_id_bytes)


def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, str(a.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        from .workers import run_server
        return run_server(options(a), a.workers, describe=startup_error)
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - a startup failure is one line, never a traceback
        print(f"error: {startup_error(e)}", file=sys.stderr)
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.getLogger("splitinfer.serve").exception("startup failed")
        return 2


def startup_error(e: BaseException) -> str:
    """One line for an exception that stopped a server from starting: the message of the typed
    errors (bad options, models, TLS files, tokens, ports), the type and message of anything else."""
    from splitinfer.codec import BitstreamError
    from splitinfer.repository import UnknownModel
    from splitinfer.tokens import TokenFileError

    from .server import ServeError
    from .validation import TlsConfigError
    typed = (UsageError, ServeError, UnknownModel, TokenFileError, TlsConfigError, BitstreamError,
             OSError)
    extra = _repository_errors()
    msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, typed + extra):
        return msg
    return f"{type(e).__name__}: {msg} (--log-level DEBUG prints the traceback)"


def _repository_errors() -> tuple[type, ...]:
    """The model repository's typed load errors, where this version defines them."""
    import splitinfer.repository as repo
    return tuple(getattr(repo, n) for n in ("RepositoryError", "ModelError", "ModelLoadError",
                                            "BrokenModel", "InvalidModel")
                 if isinstance(getattr(repo, n, None), type))


def register(subparsers) -> None:
    s = subparsers.add_parser("serve", help="run the cloud gRPC inference server (torch-free)",
                              description="Serve the repository's models over gRPC "
                                          "(splitinfer.v2.Inference; v1, deprecated, beside it) with dynamic batching, health "
                                          "checking, reflection and Prometheus metrics.")
    add_arguments(s)
    s.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloud_server", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
