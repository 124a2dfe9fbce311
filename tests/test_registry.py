"""The runtime registry: runtimes register their task at import, the repository asks the
registry (and imports no runtime itself), an unknown task is refused naming the known ones."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from test_repository import A, copy_model, edit_config

from splitinfer import registry
from splitinfer.repository import ModelError, ModelRepository, write_digest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_loads_a_runtime_nobody_imported():
    """In a fresh interpreter the repository's first load imports the task's runtime."""
    code = ("import sys; from splitinfer.repository import ModelRepository; "
            "assert 'splitinfer.pointcloud.runtime' not in sys.modules; "
            f"print(type(ModelRepository().load({A!r})).__name__)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "PointCloudModel"


def test_each_shipped_task_is_served_by_its_registered_runtime():
    names = {task: registry.runtime_for(task).__name__ for task in registry.PROVIDERS}
    assert names == {"pointcloud-classification": "PointCloudModel",
                     "pointcloud-input-classification": "InputClassificationModel",
                     "image-compression": "ImageCodec"}


def _with_task(root: Path, task: str) -> None:
    copy_model(root, A)
    edit_config(root / A / "1", task=task)
    write_digest(root / A / "1" / "config.json")


def test_a_registered_runtime_serves_a_new_task(tmp_path):
    _with_task(tmp_path, "test-echo")
    registry.register_runtime("test-echo", lambda cfg: ("echo", cfg.name))
    try:
        assert ModelRepository(tmp_path).load(A) == ("echo", A)
    finally:
        registry._RUNTIMES.pop("test-echo", None)


def test_an_unknown_task_is_refused_naming_the_known_ones(tmp_path):
    _with_task(tmp_path, "video-compression")
    with pytest.raises(ModelError) as e:
        ModelRepository(tmp_path).load(A)
    assert e.value.reason == ("unknown task 'video-compression'; this splitinfer serves "
                              "pointcloud-classification, pointcloud-input-classification and "
                              "image-compression")
