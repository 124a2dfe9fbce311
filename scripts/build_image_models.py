#!/usr/bin/env python
"""Train and export every shipped image codec: the one recipe behind models/image-factorized-*.

Steps per quality (each resumable: stop and rerun at will):
1. the factorized-prior base (N=64, M=96) on BSDS500 train+test crops: ``splitinfer train image``
   in stages (learning rate, epochs), q2 warm-started from q3;
2. export to models/image-factorized-q<k>/1/ (g_a.onnx, g_s.onnx, static tables);
3. the adaptive entropy bottleneck on the frozen base (splitinfer.training.adaptive), exported into
   the same version folder (h_a_q.onnx, h_s_q.onnx, q_tables.npz).
Then ``scripts/run_image_eval.sh`` measures everything on Kodak (real bytes).

usage: python scripts/build_image_models.py [--data DIR] [--only q1 ...] [--no-train] [--no-adaptive]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs"

RECIPES = json.loads((ROOT / "scripts" / "recipes" / "image.json").read_text())
QUALITIES: dict[str, dict] = RECIPES["qualities"]  # in build order: q2 warm-starts from q3


def train(q: str, data: str | None, threads: int = 1) -> None:
    r = QUALITIES[q]
    lmbda, warm = r["lmbda"], r["warm"]
    for stage in r["stages"]:
        lr, epochs = stage["lr"], stage["until_epoch"]
        cmd = [sys.executable, "-m", "splitinfer.cli", "train", "image", "--lmbda", str(lmbda),
               "--out", str(RUNS / f"image-{q}"), "--epochs", str(epochs), "--lr", str(lr),
               "--threads", str(threads)]
        if warm:
            cmd += ["--warm-start", str(RUNS / f"image-{warm}" / "best.pt")]
        if data:
            cmd += ["--data", data]
        subprocess.run(cmd, check=True, cwd=ROOT)


def training_section(q: str, previous: dict) -> dict:
    """The structured ``training`` section of image-factorized-<q>: the recipe plus what the
    export measured (epochs, steps, wall time)."""
    r = QUALITIES[q]
    section = {"data": previous.get("data"),
               "warm_start": f"image-factorized-{r['warm']}@1" if r["warm"] else None,
               "schedule": r["stages"]}
    section.update({k: previous[k] for k in ("epochs", "steps", "batch_size", "wall_time_s", "torch")
                    if k in previous})
    if r.get("note"):
        section["note"] = r["note"]
    section["build"] = f"python scripts/build_image_models.py --only {q}"
    return section


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="BSDS500 folder (default ../shared/datasets/bsds500)")
    ap.add_argument("--only", nargs="*", choices=list(QUALITIES), default=list(QUALITIES),
                    help="qualities to build (default: all, in order)")
    ap.add_argument("--no-train", action="store_true", help="export the existing checkpoints")
    ap.add_argument("--no-adaptive", action="store_true", help="skip the adaptive entropy bottleneck")
    ap.add_argument("--models", default=str(ROOT / "models"), help="model repository to export into")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    a = ap.parse_args()
    from splitinfer.training.export_image import export_image
    for q in a.only:
        if not a.no_train:
            train(q, a.data, a.threads)
        ckpt = RUNS / f"image-{q}" / "best.pt"
        lr_stages = ", ".join(f"lr {s['lr']:g} to epoch {s['until_epoch']}" for s in QUALITIES[q]["stages"])
        folder = export_image(ckpt, f"image-factorized-{q}", int(q[1:]), a.models,
                              recipe=f"scripts/build_image_models.py --only {q}: {lr_stages}")
        cfg = json.loads((folder / "config.json").read_text())
        cfg["training"] = training_section(q, cfg["training"])
        (folder / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
        print(folder)
        if not a.no_adaptive:
            from splitinfer.training.export_adaptive import build_adaptive
            build_adaptive(int(q[1:]), ckpt, folder, runs=RUNS / "final", data=a.data,
                           threads=a.threads, **RECIPES["adaptive"])


if __name__ == "__main__":
    main()
