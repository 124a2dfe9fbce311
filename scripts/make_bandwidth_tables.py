#!/usr/bin/env python
"""Print the markdown tables of a `splitinfer bench bandwidth` result: p50 / p95 latency per
pipeline and link rate, and the crossovers (splitinfer.plots.results_doc renders them).

usage: python scripts/make_bandwidth_tables.py results/bandwidth/bandwidth_short_v1.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.plots.results_doc import bandwidth_crossover_markdown, bandwidth_latency_markdown  # noqa: E402


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    result = json.loads(Path(sys.argv[1]).read_text())
    print(bandwidth_latency_markdown(result))
    print(bandwidth_crossover_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
