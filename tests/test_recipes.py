"""The shipped models' configs say how each model was trained, as data: a ``training`` section
with the data, the warm start (a shipped model, ``name@version``), the schedule and the wall
time, free of machine paths; and the build recipes (scripts/recipes/*.json) are consistent with
the models they ship."""
import json
import re
from pathlib import Path

import pytest

from splitinfer.training.recipes import (RecipeError, check_recipes, lineage, load_recipes,
                                         shipped_models, shipping_runs)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
RUNS = load_recipes(ROOT / "scripts" / "recipes" / "pointcloud.json")
IMAGE = json.loads((ROOT / "scripts" / "recipes" / "image.json").read_text())
CONFIGS = sorted(MODELS.glob("*/*/config.json"))
# an absolute or home path, a run folder, or a run tag such as "s7/"
MACHINE = re.compile(r'(^|[\s"(])(/[a-z]+/|~/|runs/)|\bs\d+/')


def _config(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.parent.name}/{p.parent.name}")
def test_training_section_is_well_formed(path):
    cfg = _config(path)
    t = cfg.get("training")
    assert isinstance(t, dict), "no training section"
    assert isinstance(t.get("data"), str) and t["data"], "training.data names the data"
    assert "warm_start" in t
    if t["warm_start"] is not None:
        name, _, version = t["warm_start"].partition("@")
        assert version.isdigit(), f"warm start {t['warm_start']!r} is not name@version"
        assert (MODELS / name / version / "config.json").is_file(), \
            f"warm start {t['warm_start']} is not a shipped model"
    assert isinstance(t.get("schedule"), list) and t["schedule"], "training.schedule lists the phases"
    for phase in t["schedule"]:
        assert isinstance(phase, dict)
        if cfg["task"] == "image-compression":
            assert phase["lr"] > 0 and phase["until_epoch"] > 0
        elif "rebuilt_from" not in phase:
            assert {"run", "points", "lmbda", "epochs", "trunk"} <= set(phase), phase
    assert t.get("wall_time_s", 0) > 0, "training.wall_time_s is measured"
    assert cfg.get("metrics"), "measured metrics"
    text = json.dumps({k: cfg[k] for k in ("training", "metrics")} | {"rest": {k: v for k, v in cfg.items()
                       if isinstance(v, str)}})
    assert not MACHINE.search(text), f"machine path or run tag: {MACHINE.search(text).group(0)!r}"


def test_point_cloud_schedules_are_the_recipes():
    """Each shipped point-cloud model's schedule is its chain of runs in the recipe file, from its
    nearest shipped ancestor (``scripts/build_pointcloud_models.py --sections`` writes them)."""
    shipped = shipped_models(RUNS, MODELS)
    assert len(shipped) >= 40
    for model in shipped:
        cfg = _config(MODELS / model / "1" / "config.json")
        warm, schedule = lineage(RUNS, model, shipped)
        assert cfg["training"]["warm_start"] == warm, model
        assert cfg["training"]["schedule"] == schedule, model
        last = schedule[-1]
        assert (last["points"], last["lmbda"]) == (cfg["points"], cfg["lmbda"]), model
        assert model.startswith(f"{cfg['size']}-p{cfg['points']}-l{cfg['lmbda']:g}")


def test_every_recipe_model_and_reference_exists():
    for model, run in shipping_runs(RUNS).items():
        r = RUNS[run]
        assert model == f"{r['size']}-p{r['points']}-l{r['lmbda']:g}", run
        assert (MODELS / model / "1" / "config.json").is_file(), f"{run} ships {model}, not in models/"
    for q, r in IMAGE["qualities"].items():
        assert (MODELS / f"image-factorized-{q}" / "1" / "config.json").is_file()
        assert r["warm"] is None or list(IMAGE["qualities"]).index(r["warm"]) < list(IMAGE["qualities"]).index(q)


def test_recipe_check_rejects_a_forward_reference_and_a_model_shipped_twice():
    with pytest.raises(RecipeError, match="not an earlier run"):
        check_recipes({"a": {"size": "micro", "points": 64, "lmbda": 1, "epochs": 1, "warm": "b"},
                       "b": {"size": "micro", "points": 64, "lmbda": 1, "epochs": 1}})
    with pytest.raises(RecipeError, match="ships from two runs"):
        check_recipes({"a": {"size": "micro", "points": 64, "lmbda": 1, "epochs": 1, "model": "m"},
                       "b": {"size": "micro", "points": 64, "lmbda": 1, "epochs": 1, "model": "m"}})
    with pytest.raises(RecipeError, match="frozen trunk"):
        check_recipes({"a": {"size": "micro", "points": 64, "lmbda": 1, "epochs": 1, "frozen": True}})


def test_lineage_stops_at_the_nearest_shipped_ancestor():
    runs = {"base": {"size": "lite", "points": 1024, "lmbda": 1000, "epochs": 2},
            "mid": {"size": "lite", "points": 1024, "lmbda": 160, "epochs": 2, "warm": "base", "model": "lite-p1024-l160"},
            "head": {"size": "lite", "points": 1024, "lmbda": 80, "epochs": 2, "warm": "mid",
                     "flags": ["--no-augment"], "model": "lite-p1024-l80"}}
    assert lineage(runs, "lite-p1024-l80")[0] == "lite-p1024-l160@1"
    warm, schedule = lineage(runs, "lite-p1024-l80", shipped={"lite-p1024-l80"})
    assert warm is None and [p["run"] for p in schedule] == ["base", "mid", "head"]
    assert schedule[-1]["flags"] == ["--no-augment"]
