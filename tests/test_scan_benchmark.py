"""The scan benchmark: `eval pointcloud --scans` on real shipped models, and its table and plot."""
import json
import subprocess
import sys

import numpy as np

from splitinfer.pointcloud.evaluate import evaluate
from splitinfer.plots.rate_accuracy import load_scan_rows, plot_scans, scans_table, summarize_scans

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "splitinfer" / "data" / "sample_modelnet40.npz"


def test_scans_replace_the_clouds_with_seeded_scans():
    a = evaluate("micro-p1024-l16000", SAMPLE, limit=24, scans=0, progress=False, version=1)
    b = evaluate("micro-p1024-l16000", SAMPLE, limit=24, scans=0, progress=False, version=1)
    clean = evaluate("micro-p1024-l16000", SAMPLE, limit=24, progress=False, version=1)
    assert a["input"] == "scans seed 0" and clean["input"] == "clean"
    assert a["bits"] == b["bits"] and a["accuracy"] == b["accuracy"]    # a fixed set
    assert a["bits"] != clean["bits"] and a["roundtrip_exact_all"]
    assert a["refused"] + int(a["accuracy"] * 24 + 0.5) <= 24


def test_cli_reports_clean_and_scans_side_by_side(tmp_path):
    out = tmp_path / "r.json"
    p = subprocess.run([sys.executable, "-m", "splitinfer.cli", "eval", "pointcloud", "--model",
                        "micro-p1024-l16000", "--version", "1", "--data", str(SAMPLE), "--limit", "12",
                        "--scans", "3", "--json", str(out)], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, check=True)
    assert "[clean]" in p.stdout and "[scans seed 3]" in p.stdout
    r = json.loads(out.read_text())
    assert r["clean"]["count"] == r["scans"]["count"] == 12 and r["version"] == 1


def test_scan_table_and_plot(tmp_path):
    (tmp_path / "results" / "scans").mkdir(parents=True)
    models = tmp_path / "models"
    for version, pre in ((1, None), (2, {"centre": "median"})):
        for lmbda, bits in ((40, 30.0), (1000, 90.0)):
            d = models / f"micro-p1024-l{lmbda}" / str(version)
            d.mkdir(parents=True)
            cfg = {"name": d.parent.name, "version": version, "size": "micro", "points": 1024,
                   "lmbda": lmbda, "training": {"wall_time_s": 60.0}}
            if pre:
                cfg["preprocess"] = pre
            (d / "config.json").write_text(json.dumps(cfg))
            acc = 0.70 + 0.15 * (lmbda == 1000)
            res = {"bits_mean": bits, "accuracy": acc}
            (tmp_path / "results" / "scans" / f"{d.parent.name}@{version}.json").write_text(json.dumps(
                {"model": d.parent.name, "version": version, "clean": res,
                 "scans": {"bits_mean": bits, "accuracy": acc - (0.5 if version == 1 else 0.1)}}))
    rows = load_scan_rows(tmp_path / "results", models)
    assert len(rows) == 4 and sum(r["scan_trained"] for r in rows) == 2
    s = summarize_scans(rows)
    assert np.isclose(s["best"]["micro"]["scan_trained"]["scan"], 0.75)
    assert np.isclose(s["best"]["micro"]["clean_trained"]["scan"], 0.35)
    assert s["bits_at_80_clean"]["micro"]["scan_trained"] is not None
    assert "| micro-p1024-l1000 | 2 | clean + scans |" in scans_table(s)
    assert plot_scans(s, tmp_path / "p.png").stat().st_size > 10_000
