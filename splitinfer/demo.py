"""``splitinfer demo``: the whole edge-cloud pipeline on this machine, in one command.

Starts the cloud server (``python -m cloud_server``) on a free loopback port with the shipped
models, streams the bundled sample clouds (3 ModelNet40 test clouds per class) through the edge
client with a full, a lite and a micro model, prints a table (accuracy, bits per cloud, client
and server time, round trip), stops the server with SIGTERM and exits 0.

Per size, the model is the one named with ``--model``, or else the repository's model of that
size with the best recorded test accuracy at P=1024 (ties: fewer bits).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cloud_server.process import ServerProcess

from .data import SAMPLE
from .repository import SIZES, pick_models


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    head = (f"{'model':<20} {'size':<6} {'clouds':>6} {'accuracy':>9} {'bits/cloud':>10} {'sent B':>7} "
            f"{'encode ms':>10} {'server ms':>10} {'rtt p50':>8} {'rtt p95':>8} {'clouds/s':>9}")
    lines = [head, "-" * len(head)]
    for r in rows:
        server = None
        if r["server_decode_ms_mean"] is not None:
            server = r["server_decode_ms_mean"] + r["server_inference_ms_mean"] + r["server_queue_ms_mean"]
        acc = None if r["accuracy"] is None else 100 * r["accuracy"]
        lines.append(f"{r['model']:<20} {r['size']:<6} {r['acknowledged']:>6} {_f(acc, '.1f') + '%':>9} "
                     f"{_f(r['bits_mean'], '.1f'):>10} {_f(r['container_bits_mean'] / 8, '.1f'):>7} "
                     f"{_f(r['encode_ms_mean'], '.2f'):>10} "
                     f"{_f(server, '.3f'):>10} {_f(r['rtt_ms_p50'], '.2f'):>8} "
                     f"{_f(r['rtt_ms_p95'], '.2f'):>8} {_f(r['clouds_per_s'], '.1f'):>9}")
    return "\n".join(lines)


def run_demo(models: list[str] | None = None, models_dir: str | None = None, data: str | None = None,
             limit: int | None = None, window: int = 32, json_out: str | None = None,
             progress: bool = True) -> int:
    from edge_client.client import EdgeClient
    from splitinfer.pointcloud.io import read_array
    from splitinfer.repository import ModelRepository

    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))  # see edge_client.cli.run
    repo = ModelRepository(models_dir)
    chosen = pick_models(repo, models)
    if not chosen:
        print(f"error: no point-cloud models in {repo.root}", file=sys.stderr)
        return 1
    missing = [s for s in SIZES if s not in {c.raw.get("size") for c in chosen}]
    if missing and not models:
        print(f"note: no {', '.join(missing)} model in {repo.root}", file=sys.stderr)
    clouds = read_array(data or SAMPLE)
    if limit:
        clouds = clouds[:limit]
    print(f"demo: {len(clouds)} sample clouds through {', '.join(c.name for c in chosen)}", file=sys.stderr)
    rows, reports = [], {}
    t0 = time.perf_counter()
    with ServerProcess([c.name for c in chosen], models_dir=models_dir) as server:
        print(f"cloud server on {server.address} (pid {server.proc.pid}, metrics :{server.metrics_port})",
              file=sys.stderr)
        with EdgeClient(server.address, models_dir=models_dir, window=window, timings=True) as client:
            client.wait_ready(30)
            for cfg in chosen:
                model = client.edge_model(cfg.name)
                for c in clouds:  # labels by class name, in the model's class order
                    if c.label_name is not None and c.label_name in model.classes:
                        c.label = list(model.classes).index(c.label_name)
                bar = None
                if progress:
                    from tqdm import tqdm
                    bar = tqdm(total=len(clouds), desc=cfg.name, unit="cloud", file=sys.stderr, leave=False,
                               disable=None)
                report = client.run(clouds, cfg.name, on_result=(lambda r: bar.update(1)) if bar else None)
                if bar is not None:
                    bar.close()
                s = report.summary()
                s["size"] = cfg.raw.get("size", "?")
                rows.append(s)
                reports[cfg.name] = report.to_json()
        status = server.stop()
    print(table(rows))
    print(f"(bits/cloud: the range-coded latent, real bytes x 8; sent B: the frame's payload, the latent "
          f"alone (the stream's header, with the model digest, goes once); accuracy: the balanced 3-per-class sample; server: decode + queue + classify; "
          f"round trip: edge send -> answer over loopback, {window} frames in flight; "
          f"{time.perf_counter() - t0:.1f} s in all, server exit status {status})")
    if json_out:
        Path(json_out).write_text(json.dumps({"rows": rows, "reports": reports}, indent=1) + "\n")
    bad = [r for r in rows if r["failed"] or r["lost"] or r["error"]]
    for r in bad:
        print(f"error: {r['model']}: {r['failed']} failed, {r['lost']} lost {r['error'] or ''}", file=sys.stderr)
    return 1 if bad or status != 0 else 0


def _run(a: argparse.Namespace) -> int:
    models = [m for part in (a.model or []) for m in part.split(",") if m]
    return run_demo(models or None, a.models, a.data, a.limit, a.window, a.json, not a.quiet)


def register(subparsers) -> None:
    d = subparsers.add_parser("demo", help="serve the shipped models on loopback and stream the sample "
                                           "through full, lite and micro", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    d.add_argument("--model", action="append", metavar="NAME[,NAME]",
                   help="a model to demo, repeatable (default: the most accurate full, lite and micro)")
    d.add_argument("--models", metavar="DIR", help="model repository (default: models/ or $SPLITINFER_MODELS)")
    d.add_argument("--data", help=f"clouds to stream (.npz; default the bundled {SAMPLE.name})")
    d.add_argument("--limit", type=int, help="stream only the first N clouds")
    d.add_argument("--window", type=int, default=32, help="frames in flight per stream (default 32)")
    d.add_argument("--json", help="write the table rows and per-frame records")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_run)
