#!/usr/bin/env python
"""Write docs/results.md from results/* (splitinfer.plots.results_doc): run it after any
benchmark or evaluation that rewrites a result.

usage: python scripts/make_results_doc.py [--results results] [--out docs/results.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.plots.results_doc import results_markdown  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "results"), help="the results folder")
    ap.add_argument("--out", default=str(ROOT / "docs" / "results.md"), help="the document to write")
    a = ap.parse_args()
    Path(a.out).write_text(results_markdown(a.results))
    print(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
