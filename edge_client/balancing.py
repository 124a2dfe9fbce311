"""Client-side load balancing of the edge's channel, gRPC's own (as gRPC documents it for
Kubernetes headless Services):

    splitinfer stream --server dns:///splitinfer-cloud-headless.NS.svc.cluster.local:50051 --lb round_robin
    splitinfer stream --server 10.0.0.5:50051,10.0.0.6:50051 --lb pick_first

``round_robin`` connects to every address the target resolves to and puts each call (one
``Classify``, or one whole ``ClassifyStream``) on the next ready one; ``pick_first`` (gRPC's
default) keeps one connection, to the first address that answers, and moves to the next when it
fails. Either way a stream cut by a replica's death is resent by the client on a new call, which
goes to an address still serving. DNS is re-resolved when a connection fails.
"""
from __future__ import annotations

import ipaddress
import json

POLICIES = ("round_robin", "pick_first")


def target(server: str) -> str:
    """The gRPC target of ``server``: "host:port" or a URI (``dns:///``, ``ipv4:``) as it is; a
    comma-separated list of IP addresses with ports as an ``ipv4:`` or ``ipv6:`` target."""
    if "," not in server or "://" in server or server.split(":", 1)[0] in ("ipv4", "ipv6", "unix", "dns"):
        return server
    families = set()
    for part in (p.strip() for p in server.split(",")):
        host, sep, port = part.rpartition(":")
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
            ok = bool(sep) and 0 < int(port) < 65536
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"--server {server!r}: {part!r} is not an IP address with a port; a list "
                             "takes addresses ('10.0.0.5:50051,10.0.0.6:50051'), a host name that "
                             "resolves to several takes dns:///NAME:PORT")
        families.add(ip.version)
    if len(families) > 1:
        raise ValueError(f"--server {server!r}: IPv4 and IPv6 addresses in one list")
    return f"ipv{families.pop()}:" + ",".join(p.strip() for p in server.split(","))


def channel_options(lb: str | None) -> list[tuple[str, str]]:
    """gRPC channel options selecting the load-balancing policy ``lb`` (None: gRPC's default)."""
    if lb is None:
        return []
    if lb not in POLICIES:
        raise ValueError(f"unknown load-balancing policy {lb!r} (choose from {', '.join(POLICIES)})")
    return [("grpc.service_config", json.dumps({"loadBalancingConfig": [{lb: {}}]}))]
