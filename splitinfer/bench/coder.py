"""``splitinfer bench coder``: range-coding time per cloud of each coder backend, side by side.

    splitinfer bench coder --models full-p1024-l10,full-p1024-l16000,micro-p1024-l1000 --json out.json

For every model: the y_hat of the bundled sample clouds (ONNX encoder, once), then for every
available backend (constriction, python) the encode and decode time of each cloud, interleaved
round by round so that both see the same machine load. Reports mean and p50 ms per cloud, the
ratio python / constriction, the mean payload size, and whether both backends wrote the same
bytes (they must).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..data import SAMPLE

DEFAULT_MODELS = "full-p1024-l10,full-p1024-l4000,full-p1024-l16000,lite-p1024-l1000,micro-p1024-l1000"


def _latents(name: str, models_dir: str | None, clouds: np.ndarray):
    from ..pointcloud.preprocess import preprocess
    from ..repository import ModelRepository
    m = ModelRepository(models_dir).load(name)
    x = np.stack([preprocess(p, m.points, 0) for p in clouds])
    return m.tables, m.encode_symbols(x).astype(np.int32)


def _stats(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"mean_ms": float(a.mean()), "p50_ms": float(np.median(a)), "p95_ms": float(np.percentile(a, 95))}


def bench_model(tables, y: np.ndarray, backends: list[str], rounds: int) -> dict:
    from ..codec import decode, encode
    enc_ms = {b: [] for b in backends}
    dec_ms = {b: [] for b in backends}
    payloads = {}
    for b in backends:  # warm-up: build and cache each backend's models
        payloads[b] = [encode(v, tables, b) for v in y]
        decode(payloads[b][0], tables, b)
    for _ in range(rounds):
        for b in backends:
            for v, data in zip(y, payloads[b]):
                t0 = time.perf_counter()
                encode(v, tables, b)
                t1 = time.perf_counter()
                decode(data, tables, b)
                t2 = time.perf_counter()
                enc_ms[b].append(1e3 * (t1 - t0))
                dec_ms[b].append(1e3 * (t2 - t1))
    out = {"channels": int(tables.channels), "clouds": int(len(y)),
           "bytes_mean": float(np.mean([len(p) for p in payloads[backends[0]]])),
           "identical": all(payloads[b] == payloads[backends[0]] for b in backends),
           "backends": {b: {"encode": _stats(enc_ms[b]), "decode": _stats(dec_ms[b])}
                        for b in backends}}
    if {"constriction", "python"} <= set(backends):
        r = out["backends"]
        out["python_over_constriction"] = {
            k: r["python"][k]["mean_ms"] / r["constriction"][k]["mean_ms"] for k in ("encode", "decode")}
    return out


def run(a: argparse.Namespace) -> int:
    from ..codec import coders
    backends = coders.available()
    with np.load(SAMPLE) as z:
        clouds = z["points"][: a.clouds]
    result = {"command": "splitinfer bench coder " + " ".join(sys.argv[3:]),
              "backends": backends, "models": {}}
    for name in [n for n in a.models.split(",") if n]:
        tables, y = _latents(name, a.models_dir, clouds)
        r = bench_model(tables, y, backends, a.rounds)
        result["models"][name] = r
        line = ", ".join(f"{b} encode {r['backends'][b]['encode']['mean_ms']:.3f} ms / decode "
                         f"{r['backends'][b]['decode']['mean_ms']:.3f} ms" for b in backends)
        print(f"{name} ({r['channels']} ch, {r['bytes_mean']:.1f} B): {line}; "
              f"identical bytes: {r['identical']}", file=sys.stderr)
    text = json.dumps(result, indent=1)
    if a.json in (None, "-"):
        print(text)
    else:
        Path(a.json).write_text(text + "\n")
    return 0 if all(r["identical"] for r in result["models"].values()) else 1


def register(subparsers) -> None:
    s = subparsers.add_parser("coder", help="range-coding ms per cloud: constriction vs the Python coder",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated model names")
    s.add_argument("--models-dir", help="model repository (default: the shipped models)")
    s.add_argument("--clouds", type=int, default=120, help="sample clouds per model (default all 120)")
    s.add_argument("--rounds", type=int, default=3, help="timed passes over the clouds")
    s.add_argument("--json", metavar="OUT", help="write the JSON here (default stdout)")
    s.set_defaults(func=run)
