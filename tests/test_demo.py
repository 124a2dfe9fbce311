"""The README's demo: `splitinfer demo` serves the shipped models on loopback, streams the
bundled sample through full, lite and micro, prints the table and exits 0 (torch blocked)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from service_utils import ROOT, torch_blocker

from splitinfer.repository import SIZES, pick_models
from splitinfer.repository import ModelRepository


def test_demo_prints_its_table_and_exits_0(tmp_path):
    chosen = pick_models(ModelRepository())
    assert chosen, "no shipped models: the demo has nothing to serve"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(torch_blocker(tmp_path / "notorch")), str(ROOT)]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out = tmp_path / "demo.json"
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "demo", "--quiet", "--json", str(out)],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "size", "clouds", "accuracy"]
    for cfg in chosen:
        row = next(line for line in lines if line.startswith(cfg.name))
        assert row.split()[1] == cfg.raw["size"] and row.split()[2] == "120"
    rows = json.loads(out.read_text())["rows"]
    assert [r["size"] for r in rows] == [s for s in SIZES if s in {c.raw["size"] for c in chosen}]
    for row in rows:
        assert row["acknowledged"] == 120 and row["lost"] == 0 and row["failed"] == 0
        assert 0 < row["accuracy"] <= 1 and row["bits_mean"] > 0 and row["rtt_ms_p50"] > 0
