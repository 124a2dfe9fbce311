#!/usr/bin/env python
"""Image-compression results from results/image/*.json: summary.json, table.md, rd_kodak.png and
adaptive_savings.png (:mod:`splitinfer.plots.image_results`); prints the tables.

How to run everything (from the repository root; scripts/run_image_eval.sh does all of it):

    splitinfer eval image --model image-factorized-q3 --data ../shared/datasets/kodak \\
        --json results/image/image-factorized-q3_kodak.json          # per model / quality
    splitinfer baseline image --codec jpeg --data ../shared/datasets/kodak --json results/image/jpeg_kodak.json
    splitinfer baseline image --codec webp --data ../shared/datasets/kodak --json results/image/webp_kodak.json
    python scripts/make_image_results.py [--results results/image]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.plots.image_results import make_all  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(ROOT / "results" / "image"))
    a = ap.parse_args(argv)
    s = make_all(a.results)
    print(Path(a.results, "table.md").read_text())
    for fam, f in s["learned"].items():
        print(f"{fam} BD-rate (PSNR, PCHIP):", json.dumps({k: v.get("pchip") for k, v in f["bd_rate"].items()
                                                           if k.endswith("_psnr")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
