"""Build recipes as data: the training runs behind the shipped point-cloud models.

A recipe file (``scripts/recipes/pointcloud.json``) names every run in build order::

    {"runs": {"<run>": {"size": "full", "points": 256, "lmbda": 50, "epochs": 16,
                        "warm": "<run>", "frozen": false, "flags": ["--lr", "3e-4"],
                        "teacher": "<run>", "model": "<shipped name>"},
              "<run>": {"recover": "<run>"}, ...}}

- ``warm``: the run whose ``best.pt`` this one starts from; ``frozen``: the trunk of that chain
  stays frozen and its pooled features are cached (gain, entropy model and classifier learn);
- ``teacher``: knowledge distillation from that run's exported model (Hinton et al., "Distilling
  the knowledge in a neural network", NIPS 2014 Deep Learning Workshop, arXiv:1503.02531);
- ``recover``: no training; a checkpoint rebuilt (``splitinfer train recover``) from the exported
  model of that run, as the models it names were shipped before training went on from them;
- ``model``: the run ships as ``models/<model>/1``.

This module reads a recipe file, derives each shipped model's ``training`` section (its warm
start as ``name@version`` of a shipped model, and the schedule of runs from there) and runs the
build (``scripts/build_pointcloud_models.py``). Torch loads only in the training subprocesses
and in :func:`export_and_evaluate`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

DATA_TEXT = "ModelNet40 train split minus a stratified 10% validation split (seed 0)"
RUN_KEYS = {"size", "points", "lmbda", "epochs", "warm", "frozen", "flags", "teacher", "model", "recover"}


class RecipeError(ValueError):
    """A recipe file that does not describe a buildable set of runs."""


def load_recipes(path: str | Path) -> dict[str, dict]:
    """The runs of a recipe file, in build order (checked: every reference names an earlier run)."""
    runs = json.loads(Path(path).read_text())["runs"]
    check_recipes(runs)
    return runs


def check_recipes(runs: dict[str, dict]) -> None:
    seen: set[str] = set()
    models: set[str] = set()
    for name, r in runs.items():
        unknown = set(r) - RUN_KEYS
        if unknown:
            raise RecipeError(f"run {name}: unknown keys {sorted(unknown)}")
        for ref in ("warm", "teacher", "recover"):
            if r.get(ref) is not None and r[ref] not in seen:
                raise RecipeError(f"run {name}: {ref} {r[ref]!r} is not an earlier run")
        if "recover" not in r:
            missing = {"size", "points", "lmbda", "epochs"} - set(r)
            if missing:
                raise RecipeError(f"run {name}: missing {sorted(missing)}")
            if r.get("frozen") and not r.get("warm"):
                raise RecipeError(f"run {name}: a frozen trunk needs a warm start")
        if r.get("model"):
            if r["model"] in models:
                raise RecipeError(f"model {r['model']} ships from two runs")
            models.add(r["model"])
        seen.add(name)


def shipping_runs(runs: dict[str, dict]) -> dict[str, str]:
    """model name -> the run it ships from."""
    return {r["model"]: name for name, r in runs.items() if r.get("model")}


def shipped_models(runs: dict[str, dict], models: str | Path) -> set[str]:
    """The recipes' models that ``models/<name>/1`` holds."""
    return {m for m in shipping_runs(runs) if (Path(models) / m / "1" / "config.json").exists()}


def trunk(runs: dict[str, dict], name: str) -> str:
    """The end-to-end run whose encoder a frozen run keeps (and whose feature caches it shares)."""
    while runs[name].get("frozen"):
        name = runs[name]["warm"]
    return name


def _phase(runs: dict[str, dict], name: str, shipped: dict[str, str]) -> dict:
    r = runs[name]
    as_model = {run: f"{m}@1" for m, run in shipped.items()}
    if "recover" in r:
        return {"run": name, "rebuilt_from": as_model.get(r["recover"], r["recover"])}
    phase = {"run": name, "points": r["points"], "lmbda": r["lmbda"], "epochs": r["epochs"],
             "trunk": f"frozen ({as_model.get(trunk(runs, name), trunk(runs, name))})"
             if r.get("frozen") else "trained"}
    if r.get("flags"):
        phase["flags"] = list(r["flags"])
    if r.get("teacher"):
        phase["teacher"] = as_model.get(r["teacher"], r["teacher"])
    return phase


def lineage(runs: dict[str, dict], model: str, shipped: set[str] | None = None) -> tuple[str | None, list[dict]]:
    """(warm start as ``name@1`` of the nearest shipped ancestor or None, the phases after it).

    ``shipped``: the model names present in the repository (default: every model of the recipes);
    the chain of warm starts (and recoveries) is followed back until it reaches the run of a
    shipped model or a run trained from scratch."""
    ships = shipping_runs(runs)
    name, phases = ships[model], []
    if shipped is not None:
        ships = {m: run for m, run in ships.items() if m in shipped}
    by_run = {run: m for m, run in ships.items()}
    while True:
        phases.append(_phase(runs, name, ships))
        r = runs[name]
        prev = r.get("recover") or r.get("warm")
        if prev is None:
            return None, phases[::-1]
        if prev in by_run:
            return f"{by_run[prev]}@1", phases[::-1]
        name = prev


def training_section(runs: dict[str, dict], model: str, previous: dict | None = None,
                     shipped: set[str] | None = None) -> dict:
    """The structured ``training`` section of a shipped point-cloud model's config.json;
    measured facts (epochs, best epoch, wall times, torch version) are kept from ``previous``."""
    previous = previous or {}
    warm, schedule = lineage(runs, model, shipped)
    section = {"data": previous.get("data", DATA_TEXT), "warm_start": warm, "schedule": schedule}
    for key in ("epochs", "best_epoch", "wall_time_s", "wall_time_with_warm_start_s", "torch"):
        if key in previous:
            section[key] = previous[key]
    section["build"] = f"python scripts/build_pointcloud_models.py --only {model}"
    return section


# -- the build ------------------------------------------------------------------------------

def feature_cache(runs: dict[str, dict], name: str, runs_dir: Path) -> Path:
    plain = "--no-augment" in runs[name].get("flags", ())
    return runs_dir / trunk(runs, name) / f"features_p{runs[name]['points']}{'_noaug' if plain else ''}.pt"


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "splitinfer.cli", *args]


def _export_to(runs_dir: Path, run: str, into: str) -> str:
    """Export ``run``'s best.pt as model ``run`` into a scratch repository; returns that folder."""
    from .export import export_pointcloud
    export_pointcloud(runs_dir / run / "best.pt", run, Path(into) / "models")
    return str(Path(into) / "models")


def train_run(runs: dict[str, dict], name: str, runs_dir: Path, data: str | None = None,
              threads: int = 1, cwd: Path | None = None) -> None:
    """Train (or recover) one run into ``runs_dir/<name>/``; resumes from its last.pt."""
    r, out = runs[name], runs_dir / name
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}  # spinning OpenMP threads stall shared cores
    with tempfile.TemporaryDirectory() as tmp:
        if "recover" in r:
            if (out / "best.pt").exists():
                return
            cmd = _cli("train", "recover", "--model", r["recover"],
                       "--models", _export_to(runs_dir, r["recover"], tmp), "--out", str(out / "best.pt"))
        else:
            cmd = _cli("train", "pointcloud", "--size", r["size"], "--points", str(r["points"]),
                       "--lmbda", f"{r['lmbda']:g}", "--epochs", str(r["epochs"]), "--out", str(out),
                       "--threads", str(threads), *r.get("flags", ()))
            if r.get("warm"):
                cmd += ["--warm-start", str(runs_dir / r["warm"] / "best.pt")]
            if r.get("frozen"):
                cmd += ["--freeze-encoder", "--feature-cache", str(feature_cache(runs, name, runs_dir))]
            if r.get("teacher"):
                cmd += ["--teacher", r["teacher"], "--teacher-models", _export_to(runs_dir, r["teacher"], tmp)]
        if data:
            cmd += ["--data", data]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=cwd, env=env)


def export_and_evaluate(runs: dict[str, dict], name: str, runs_dir: Path, models: Path,
                        results: Path, data: str | None = None) -> dict:
    """Export a shipping run to ``models/<model>/1``, evaluate it on the ModelNet40 test set
    (real bytes) and record the figures and the structured training section in its config."""
    from ..pointcloud.data import resolve_data
    from ..pointcloud.evaluate import evaluate, write_json
    from ..repository import ModelRepository
    from .export import export_pointcloud
    model = runs[name]["model"]
    out = export_pointcloud(runs_dir / name / "best.pt", model, models)
    result = evaluate(model, resolve_data(data) / "modelnet40_test.npz", ModelRepository(models),
                      progress=False)
    write_json(result, results / "eval" / f"{model}.json")
    cfg = json.loads((out / "config.json").read_text())
    cfg["training"] = training_section(runs, model, cfg["training"], shipped_models(runs, models))
    cfg["metrics"] = {k: result[k] for k in ("accuracy", "bits_mean", "estimated_bits_mean",
                                              "overhead_bits_mean", "container_bits_mean",
                                              "encode_ms_mean", "decode_ms_mean", "count")}
    cfg["metrics"]["test_accuracy"] = result["accuracy"]
    cfg["metrics"]["measured_with"] = f"splitinfer eval pointcloud --model {model} --data modelnet40_test.npz"
    (out / "config.json").write_text(json.dumps(cfg, indent=1) + "\n")
    return result


def build_order(runs: dict[str, dict], only: list[str] | None = None) -> list[str]:
    """The runs to build: all in order, or ``only`` (run or model names) with what they need."""
    if not only:
        return list(runs)
    ships = shipping_runs(runs)
    need, stack = set(), [ships.get(k, k) for k in only]
    for k in stack:
        if k not in runs:
            raise RecipeError(f"no run or model named {k!r}")
    while stack:
        k = stack.pop()
        if k in need:
            continue
        need.add(k)
        stack += [runs[k][ref] for ref in ("warm", "teacher", "recover") if runs[k].get(ref)]
    return [k for k in runs if k in need]
