"""``splitinfer bench bandwidth``: latency against link bandwidth for edge-only, cloud-only and
split inference on real shaped links, and the bandwidth-adaptive client under a changing link
(what it measures and how: ``cli.py``'s docstring, ``splitinfer bench bandwidth --help``).

One job per module: ``link/`` (the shaped links: ``netns``, ``relay``, the tbf bucket ``drain``,
and ``shaped.Link``, the link the benchmark drives), ``stream`` (one v2 stream used one frame at
a time), ``worker`` (the client process, in the client's namespace, and its JSON-lines protocol),
``pipelines`` (what is measured), ``sweep`` (latency against bandwidth: cells, statistics,
crossovers, the bar), ``rate_experiment`` (the adaptive client against a fixed one under a
changing link), ``report`` (tables and plots), ``run`` (``run_bench``: all of it, in order),
``cli`` (the ``bench bandwidth`` subcommand).
"""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]   # the project (the worker runs from here)

from .cli import register  # noqa: E402
from .run import run_bench  # noqa: E402

__all__ = ["ROOT", "register", "run_bench"]
