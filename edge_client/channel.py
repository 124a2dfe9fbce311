"""The edge client's gRPC channel: message limits, reconnect backoff and keepalive, no BDP
probing (docs/protocol.md), TLS, client-side load balancing (``balancing``), and the bearer
token sent with every call."""
from __future__ import annotations

from pathlib import Path

import grpc

from . import balancing


def open_channel(server: str, *, tls: bool = False, tls_ca: str | Path | None = None,
                 tls_server_name: str | None = None, lb: str | None = None,
                 max_message_bytes: int = 1 << 20) -> grpc.Channel:
    """A channel to ``server`` ("host:port", a ``dns:///`` name or "ip:port,ip:port"): TLS when
    ``tls`` or ``tls_ca`` (a PEM root certificate) is given, ``tls_server_name`` when the
    certificate names another host, ``lb`` "round_robin" or "pick_first"."""
    options = [
        ("grpc.max_send_message_length", max_message_bytes + 4096),
        ("grpc.max_receive_message_length", 4 * 1024 * 1024),
        ("grpc.http2.bdp_probe", 0),   # no BDP PINGs on a thin link (docs/protocol.md)
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", 20000),
        ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.enable_retries", 0),
    ]
    if tls_server_name:
        options.append(("grpc.ssl_target_name_override", tls_server_name))
    options += balancing.channel_options(lb)
    address = balancing.target(server)
    if tls or tls_ca:
        root = Path(tls_ca).read_bytes() if tls_ca else None
        return grpc.secure_channel(address, grpc.ssl_channel_credentials(root), options)
    return grpc.insecure_channel(address, options)


def auth_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    """The call metadata that carries ``token`` (``authorization: Bearer <token>``), or none."""
    return (("authorization", f"Bearer {token}"),) if token else ()
