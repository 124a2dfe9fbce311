#!/usr/bin/env python
"""Train, export and evaluate the shipped point-cloud models from scripts/recipes/pointcloud.json.

Every run resumes from its checkpoint under runs/<run>/, so the build can be stopped and
restarted. A run that ships is exported to models/<model>/1/ and evaluated on the ModelNet40 test
set (real bytes); its figures and its training section go into the config, its eval JSON into
results/pointcloud/eval/.

usage: python scripts/build_pointcloud_models.py [--data DIR] [--only NAME ...] [--no-train]
       python scripts/build_pointcloud_models.py --sections   # rewrite the configs' training sections
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.training.recipes import (build_order, export_and_evaluate, load_recipes,  # noqa: E402
                                         shipped_models, train_run, training_section)

RECIPES = ROOT / "scripts" / "recipes" / "pointcloud.json"


def write_sections(runs: dict, models: Path) -> None:
    """Rewrite the ``training`` section of every shipped config from the recipes (torch-free)."""
    shipped = shipped_models(runs, models)
    for model in sorted(shipped):
        path = models / model / "1" / "config.json"
        cfg = json.loads(path.read_text())
        cfg["training"] = training_section(runs, model, cfg.get("training"), shipped)
        path.write_text(json.dumps(cfg, indent=1) + "\n")
        print(path)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="ModelNet40 folder (default ../shared/datasets/modelnet40)")
    ap.add_argument("--only", nargs="*", help="runs or model names to build, with the runs they need")
    ap.add_argument("--no-train", action="store_true", help="export and evaluate existing runs only")
    ap.add_argument("--no-export", action="store_true", help="train only")
    ap.add_argument("--sections", action="store_true", help="only rewrite the configs' training sections")
    ap.add_argument("--recipes", default=str(RECIPES), help="recipe file")
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="folder of the run checkpoints")
    ap.add_argument("--models", default=str(ROOT / "models"), help="model repository to export into")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training run")
    a = ap.parse_args()
    runs = load_recipes(a.recipes)
    if a.sections:
        write_sections(runs, Path(a.models))
        return 0
    for name in build_order(runs, a.only):
        if not a.no_train:
            train_run(runs, name, Path(a.runs), a.data, a.threads, cwd=ROOT)
        if not a.no_export and runs[name].get("model"):
            r = export_and_evaluate(runs, name, Path(a.runs), Path(a.models),
                                    ROOT / "results" / "pointcloud", a.data)
            print(f"{runs[name]['model']}: accuracy {r['accuracy']:.4f}, {r['bits_mean']:.1f} bits "
                  f"({r['estimated_bits_mean']:.1f} estimated), exact {r['roundtrip_exact_all']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
