"""`splitinfer bench soak`, briefly: a server started by it, streams for two seconds, the JSON
(throughput, p99, RSS series, errors) and the plot."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_soak_reports_throughput_latency_memory_and_errors(tmp_path):
    out = tmp_path / "soak.json"
    r = subprocess.run([sys.executable, "-m", "splitinfer.cli", "bench", "soak", "--streams", "2",
                        "--duration", "2", "--window", "2", "--json", str(out)],
                       capture_output=True, text=True, timeout=240, cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["answered"] > 0 and res["frame_errors"] == {} and res["stream_errors"] == {}
    assert res["latency_ms"]["p99"] >= res["latency_ms"]["p50"] > 0
    assert len(res["series"]) >= 2 and all(p["rss_mb"] for p in res["series"])
    assert res["config"]["streams"] == 2
