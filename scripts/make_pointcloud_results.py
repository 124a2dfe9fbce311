#!/usr/bin/env python
"""Regenerate the point-cloud results from results/ and models/ (torch-free):

results/pointcloud/summary.json     table rows, bits at 80%, best accuracy per size and P, BD-rates
results/pointcloud/table.md         the README tables
results/pointcloud/rate_accuracy.png

usage: python scripts/make_pointcloud_results.py [--results results/pointcloud] [--models models]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.plots.rate_accuracy import make_all  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "results" / "pointcloud"))
    ap.add_argument("--models", default=str(ROOT / "models"))
    a = ap.parse_args()
    s = make_all(a.results, a.models)
    print(Path(a.results, "table.md").read_text())
    print("bits at 80%:", json.dumps(s["bits_at_80"]))
    print("BD-rate vs Draco:", json.dumps(s["bd_rate_vs_draco"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
