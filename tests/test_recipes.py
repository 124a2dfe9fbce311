"""scripts/build_pointcloud_models.py is the recipe behind models/: every shipped point-cloud model
has exactly one recipe, and every recipe's warm-start chain is complete."""
import json
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BUILD = runpy.run_path(str(ROOT / "scripts" / "build_pointcloud_models.py"), run_name="recipes")
RECIPES = BUILD["RECIPES"]


def test_every_warm_start_and_frozen_trunk_is_a_recipe():
    for key, r in RECIPES.items():
        assert r.warm is None or r.warm in RECIPES, f"{key}: warm start {r.warm} has no recipe"
        if r.frozen:
            assert r.warm is not None, f"{key}: a frozen trunk needs a warm start"
        assert r.size in ("full", "lite", "micro") and r.points > 0 and r.lmbda > 0


def test_every_shipped_point_cloud_model_has_exactly_one_recipe():
    shipped = [r.model for r in RECIPES.values() if r.model]
    assert len(shipped) == len(set(shipped)), "two recipes ship the same model name"
    in_repo = {p.parent.parent.name for p in (ROOT / "models").glob("*/*/config.json")
               if json.loads(p.read_text())["task"] == "pointcloud-classification"}
    assert in_repo == set(shipped)
    for name in shipped:
        r = next(r for r in RECIPES.values() if r.model == name)
        assert name.startswith(f"{r.size}-p{r.points}-l{r.lmbda:g}")


def test_every_recovery_rebuilds_a_model_of_its_own_size_points_and_lambda():
    """A recovery recipe (no training: `splitinfer train recover`) names the model it rebuilds; its
    warm start is the recipe that trained that model, and the settings match the model's name."""
    recoveries = {k: r for k, r in RECIPES.items() if r.recover}
    assert recoveries
    for key, r in recoveries.items():
        assert r.epochs == 0 and not r.flags and r.warm in RECIPES, key
        assert r.recover.startswith(f"{r.size}-p{r.points}-l{r.lmbda:g}"), key
        w = RECIPES[r.warm]
        assert (w.size, w.points, w.lmbda) == (r.size, r.points, r.lmbda), key


def test_every_distillation_teacher_is_a_model_pinned_to_a_commit_that_holds_it():
    """`--teacher NAME@COMMIT`: the build script distils from models/NAME as of COMMIT, so a
    rebuild learns from the same teacher after NAME itself has been retrained."""
    import subprocess
    teachers = {r.flags[r.flags.index("--teacher") + 1] for r in RECIPES.values() if "--teacher" in r.flags}
    assert teachers
    for t in teachers:
        name, commit = t.split("@")
        found = subprocess.run(["git", "cat-file", "-e", f"{commit}:models/{name}/1/config.json"],
                               cwd=ROOT, capture_output=True)
        if found.returncode and b"Not a valid object" in found.stderr:
            pytest.skip(f"commit {commit} not in this clone (shallow?)")
        assert found.returncode == 0, f"{t}: no models/{name}/1 at {commit}"


def test_every_shipped_config_records_its_recipe_chain():
    """Each point-cloud model's config.json says how it was made: its recipe and the chain of warm
    starts before it, exactly as the build script describes them."""
    for key, r in RECIPES.items():
        if r.model:
            cfg = json.loads((ROOT / "models" / r.model / "1" / "config.json").read_text())
            assert cfg["training"]["recipe"] == BUILD["recipe_text"](key), r.model
