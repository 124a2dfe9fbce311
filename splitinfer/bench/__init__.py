"""``splitinfer bench ...``: benchmarks (not tests). Each module adds its own ``bench`` subcommand."""
from __future__ import annotations


def register(subparsers) -> None:
    """Add the ``bench`` command group and every benchmark's subcommand."""
    group = subparsers.add_parser("bench", help="benchmarks (JSON, plots, ratios against baselines)")
    sub = group.add_subparsers(dest="bench", required=True)
    from .server import register as server
    server(sub)
    from .bandwidth import register as bandwidth
    bandwidth(sub)
    from .coder import register as coder
    coder(sub)
    from .soak import register as soak
    soak(sub)
    from .wire import register as wire
    wire(sub)
