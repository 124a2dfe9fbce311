"""A gRPC health probe (``grpc.health.v1``), for container healthchecks and scripts.

    python -m cloud_server.health --addr 127.0.0.1:50051 [--service splitinfer.v1.Inference]

Exit status 0 when the service is SERVING, 1 otherwise (NOT_SERVING, unreachable, timeout).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def check(addr: str, service: str = "", timeout: float = 2.0, tls_ca: str | None = None,
          server_name: str | None = None) -> str:
    """The serving status name ('SERVING', 'NOT_SERVING', ...) or 'UNREACHABLE: why'."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    if tls_ca:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        opts = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        channel = grpc.secure_channel(addr, creds, options=opts)
    else:
        channel = grpc.insecure_channel(addr)
    with channel:
        try:
            r = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as e:
            return f"UNREACHABLE: {e.code().name}: {e.details()}"
        return health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)


def wait_serving(addr: str, timeout: float = 30.0, **kw) -> bool:
    """Poll until SERVING (True) or ``timeout`` seconds have passed (False)."""
    import time
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check(addr, timeout=min(1.0, max(0.1, end - time.monotonic())), **kw) == "SERVING":
            return True
        time.sleep(0.1)
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m cloud_server.health", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--addr", default="127.0.0.1:50051")
    p.add_argument("--service", default="", help="service name ('' = the whole server)")
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--tls-ca", help="PEM root certificate when the server serves TLS")
    p.add_argument("--server-name", help="TLS name to expect (default: the host of --addr)")
    a = p.parse_args(argv)
    status = check(a.addr, a.service, a.timeout, a.tls_ca, a.server_name)
    print(status)
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
