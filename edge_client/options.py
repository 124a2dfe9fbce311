"""Command-line options shared by the edge commands that talk to a server (``stream``,
``models pull``): the address, the bearer token and TLS. Cheap to import (no grpc)."""
from __future__ import annotations

import argparse
import os


def add_connection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", default=os.environ.get("SPLITINFER_SERVER", "127.0.0.1:50051"),
                   help="HOST:PORT of the cloud server (default 127.0.0.1:50051 or $SPLITINFER_SERVER)")
    p.add_argument("--token", default=os.environ.get("SPLITINFER_TOKEN"),
                   help="bearer token (default $SPLITINFER_TOKEN)")
    p.add_argument("--token-file", help="token file (one token per line, lines starting with '#' "
                                        "ignored): its first token is sent")
    p.add_argument("--tls", action="store_true", help="use TLS with the system's root certificates")
    p.add_argument("--tls-ca", help="PEM root certificate of the server (implies --tls)")
    p.add_argument("--tls-server-name", help="name on the server's certificate, when not the host")


def token_from_args(a: argparse.Namespace) -> str | None:
    """The token to send: the first of ``--token-file``, else ``--token``; raises
    ``TokenFileError`` for an unreadable file or a token gRPC metadata cannot carry."""
    from splitinfer.tokens import TokenFileError, read_token, valid_token
    token = read_token(a.token_file) if a.token_file else ((a.token or "").strip() or None)
    if token is not None and not valid_token(token):
        raise TokenFileError("--token is printable ASCII without spaces")
    return token
