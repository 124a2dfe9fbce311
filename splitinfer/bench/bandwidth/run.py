"""``run_bench``: the whole benchmark in order: the repository and the pipelines, the link with
the server behind it, the worker on its far side, the sweep, the rate-control experiment, then
the JSON (and the adaptive run's trace next to it) and the plots."""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ...pointcloud.data import DEFAULT_DATA as DEFAULT_MODELNET40
from . import ROOT
from .link import Link, netns_available
from .link.netns import tbf_burst_bytes, tbf_limit_bytes
from .pipelines import DRACO_QBITS, plan_pipelines, prepare_repository
from .rate_experiment import DEFAULT_SCHEDULE, run_adaptive
from .report import plot_adaptive, plot_sweep
from .sweep import BANDWIDTHS, MODES, SLOWDOWNS, bar_split_vs_draco, crossover_table, run_sweep, summarize_sweep
from .worker import WorkerProcess

# ../shared/datasets/modelnet40 next to the project, when it exists (else --data or the sample)
DEFAULT_FULL_DATA = DEFAULT_MODELNET40 / "modelnet40_test.npz"


def _shown(path) -> str:
    """A path as results record it: relative to the project when inside it (no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def run_bench(mode: str = "short", link_kind: str = "auto", shape: str = "uplink", data: str | None = None,
              limit: int | None = None, models_dir: str | None = None, plain_onnx: str | None = None,
              bandwidths=None, slowdowns=SLOWDOWNS, qbits=DRACO_QBITS, sizes=("full", "lite", "micro"),
              cell_seconds: float | None = None, min_frames: int | None = None, max_frames: int | None = None,
              rtt_ms: float = 0.0, sweep: bool = True, adaptive: bool = True, family: str = "all",
              budget_ms: float | None = None, interval_ms: float | None = None, schedule=DEFAULT_SCHEDULE,
              window: int = 64,
              fixed: str | None = None, adaptive_slowdown: float = 1.0, json_out: str | None = None,
              plot_out: str | None = None, progress: bool = True) -> dict:
    """Run the benchmark (the options of ``splitinfer bench bandwidth``); returns the result and
    writes it (``json_out``, with the trace next to it) and the plots (``plot_out``)."""
    from cloud_server.process import ServerProcess
    from splitinfer.data import SAMPLE
    from splitinfer.repository import ModelRepository

    t_start = time.perf_counter()
    if link_kind == "auto":
        ok, why = netns_available()
        link_kind = "netns" if ok else "relay"
    m = dict(MODES[mode])
    for k, v in (("cell_seconds", cell_seconds), ("min_frames", min_frames), ("max_frames", max_frames)):
        if v is not None:
            m[k] = v
    if data is None:
        data = str(DEFAULT_FULL_DATA) if (mode == "full" and DEFAULT_FULL_DATA.exists()) else str(SAMPLE)
    bandwidths = tuple(bandwidths or BANDWIDTHS[mode])
    serve_dir, plain, note = prepare_repository(models_dir, plain_onnx)
    repo = ModelRepository(serve_dir)
    pipelines = plan_pipelines(repo, plain, qbits, sizes)
    served = sorted({p["model"] for p in pipelines if p["kind"] != "edge"})
    if adaptive:
        from edge_client.rate_control import resolve_family
        served = sorted(set(served) | {c.name for c in resolve_family(repo, family)})
    result: dict = {
        "benchmark": "bandwidth", "mode": mode, "data": _shown(data), "limit": limit,
        "bandwidths": list(bandwidths), "slowdowns": [f"K={k:g}" for k in slowdowns],
        "slowdown_factors": list(slowdowns), "rtt_ms_added": rtt_ms, "settings": m,
        "pipelines": pipelines, "models_dir": _shown(serve_dir), "note": note,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_start": list(os.getloadavg())},
    }
    if progress:
        print(f"bench bandwidth ({mode}): link {link_kind} ({shape}), {len(pipelines)} pipelines, "
              f"bandwidths {list(bandwidths)} Mbit/s, data {data}" + (f"; {note}" if note else ""), file=sys.stderr)

    def server_factory(prefix, host):
        return ServerProcess(served, models_dir=serve_dir, prefix=prefix, host=host,
                             extra=["--max-message-bytes", str(1 << 20), "--max-batch-size", "8"])

    link = Link(link_kind, shape)
    worker = None
    try:
        link.start(server_factory)
        result["link"] = {"kind": link_kind, "shape": shape, "label": link.label}
        if link.netns is not None:
            result["link"]["tbf"] = {str(b): {"burst_bytes": tbf_burst_bytes(b * 1e6), "limit_bytes": tbf_limit_bytes(b * 1e6)}
                                     for b in bandwidths}
        worker = WorkerProcess(link.client_prefix)
        worker.models_dir = serve_dir
        link.set_rate(100.0)
        init = worker.call({"cmd": "init", "models_dir": serve_dir, "data": data, "limit": limit,
                            "server": link.address, "pipelines": pipelines})
        result["clouds"] = init["clouds"]
        if sweep:
            t0 = time.perf_counter()
            cells = run_sweep(worker, link, pipelines, bandwidths, m, progress)
            result["sweep_wall_s"] = time.perf_counter() - t0
            summarize_sweep(result, cells, slowdowns, rtt_ms)
            result["crossovers"] = crossover_table(result)
            result["bar_split_vs_draco"] = bar_split_vs_draco(result)
            result["frames"] = {c["pipeline"] + "@" + str(c["bandwidth_mbit"]): c["frames"] for c in cells}
        if adaptive:
            t0 = time.perf_counter()
            ad = run_adaptive(worker, link, family, budget_ms, interval_ms, schedule, window, fixed,
                              adaptive_slowdown, None, progress)
            ad["link_label"] = link.label
            ad["wall_s"] = time.perf_counter() - t0
            result["adaptive"] = ad
    finally:
        if worker is not None:
            worker.close()
        link.stop()
        if note and serve_dir.startswith(tempfile.gettempdir()):
            shutil.rmtree(serve_dir, ignore_errors=True)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - t_start
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        plot_out = plot_out or str(Path(json_out).with_suffix(".png"))
    if plot_out:
        if sweep:
            result["plot"] = plot_sweep(result, plot_out)
        if adaptive:
            p = Path(plot_out)
            result["adaptive_plot"] = plot_adaptive(result["adaptive"], str(p.with_name(p.stem + "_adaptive.png")))
    if json_out:
        trace = (result.get("adaptive") or {}).get("runs", {}).get("adaptive", {}).pop("trace", None)
        if trace is not None:
            tp = Path(json_out).with_name(Path(json_out).stem + "_adaptive_trace.json")
            sched = result["adaptive"]["schedule"]
            tp.write_text(json.dumps({"candidates": result["adaptive"]["runs"]["adaptive"]["candidates"],
                                      "budget_ms": result["adaptive"]["budget_ms"], "trace": trace,
                                      "t0": result["adaptive"]["runs"]["adaptive"].get("t0"),
                                      "phases_s": [float(x) for x in np.cumsum([p["seconds"] for p in sched])[:-1]],
                                      "schedule": sched, "link": result["link"]["label"],
                                      "decisions": result["adaptive"]["runs"]["adaptive"]["decisions"]}) + "\n")
            result["adaptive"]["trace_file"] = str(tp)
        Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
    return result
