"""``splitinfer serve``: the cloud inference server (``python -m cloud_server`` does the same)."""
from __future__ import annotations

import argparse
import logging
import os
import sys


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("--models", dest="models_dir", metavar="DIR",
                   help="model repository (default: models/ or $SPLITINFER_MODELS)")
    s.add_argument("--model", action="append", default=[], metavar="NAME",
                   help="serve only this model (repeatable; default: every model of the repository)")
    s.add_argument("--host", default=os.environ.get("SPLITINFER_HOST", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)")
    s.add_argument("--port", type=int, default=int(os.environ.get("SPLITINFER_PORT", 50051)),
                   help="gRPC port (default 50051; 0 picks a free one, see --ready-file)")
    s.add_argument("--metrics-port", type=int, default=9100,
                   help="Prometheus /metrics HTTP port (default 9100; 0: a free one; -1: off)")
    s.add_argument("--metrics-host", help="address of the metrics endpoint (default: --host)")
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
    s.add_argument("--tls-cert", help="PEM certificate chain: serve TLS")
    s.add_argument("--tls-key", help="PEM private key of --tls-cert")
    s.add_argument("--tls-client-ca", help="PEM CA: require client certificates it signed (mTLS)")
    s.add_argument("--token", action="append", default=[],
                   help="require 'authorization: Bearer TOKEN' (repeatable; also $SPLITINFER_TOKEN)")
    s.add_argument("--token-file", help="file of accepted tokens, one per line")
    s.add_argument("--grace-s", type=float, default=10.0,
                   help="on SIGTERM, how long in-flight calls may take to finish")
    s.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    s.add_argument("--ready-file", help="write {port, metrics_port, pid, models} as JSON once serving")
    s.add_argument("--log-level", default="INFO")


def options(a: argparse.Namespace):
    from .auth import load_tokens
    from .server import ServerOptions
    return ServerOptions(
        host=a.host, port=a.port, models_dir=a.models_dir, models=a.model,
        max_batch_size=a.max_batch_size, max_queue_delay_ms=a.max_queue_delay_ms,
        batch_executor=a.batch_executor,
        max_queue_size=a.max_queue_size, max_message_bytes=a.max_message_bytes,
        metrics_port=None if a.metrics_port < 0 else a.metrics_port, metrics_host=a.metrics_host,
        tls_cert=a.tls_cert, tls_key=a.tls_key, tls_client_ca=a.tls_client_ca,
        tokens=load_tokens(a.token, a.token_file), grace_s=a.grace_s, threads=a.threads,
        ready_file=a.ready_file)


def run(a: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, str(a.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    from splitinfer.repository import UnknownModel

    from .server import ServeError, serve
    try:
        return serve(options(a))
    except (ServeError, UnknownModel, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def register(subparsers) -> None:
    s = subparsers.add_parser("serve", help="run the cloud gRPC inference server (torch-free)",
                              description="Serve the repository's models over gRPC "
                                          "(splitinfer.v1.Inference) with dynamic batching, health "
                                          "checking, reflection and Prometheus metrics.")
    add_arguments(s)
    s.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloud_server", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
