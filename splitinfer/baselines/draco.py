"""Draco input-compression baseline (torch-free: DracoPy + onnxruntime).

Every test cloud gets the codec's own edge preprocessing (``preprocess(cloud, P, seed=0)``: centre,
unit sphere, fixed P-point subset), is Draco-encoded as a point cloud at ``quantization_bits = q``
(q = log2 of the quantization scale S, as in Ulhaq & Bajić, MMSP 2023: S in 8..256, compression level 10), decoded,
and the decoded points are classified by a plain (uncompressed) PointNet exported to ONNX
(``points (B, N, 3) -> logits``, any N). Rates are real: 8 x the Draco buffer's bytes, which include
Draco's own header and metadata (``fixed_overhead_bits``: the size of a one-point buffer, ~1.4 kbit;
``bits_minus_overhead_mean`` is reported too, as a lower bound on what Draco needs). Draco reorders points; PointNet is permutation invariant.

    splitinfer baseline draco --plain-model models/plain-pointnet-p1024/1/model.onnx \
        --data modelnet40_test.npz --json results/pointcloud/draco.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..pointcloud.draco import draco_roundtrip, fixed_overhead_bytes
from ..pointcloud.input_model import classify_clouds

DEFAULT_QBITS = (3, 4, 5, 6, 7, 8, 10, 12)


def evaluate_draco(plain_model: str | Path, data: str | Path, qbits: Sequence[int] = DEFAULT_QBITS,
                   points: int = 1024, seed: int = 0, level: int = 10, limit: int | None = None,
                   threads: int = 1, progress: bool = True) -> dict:
    """Rate and accuracy of Draco + plain PointNet at each quantization setting."""
    from tqdm import tqdm

    from ..pointcloud.evaluate import load_labelled
    from ..onnx import session
    from ..pointcloud.preprocess import preprocess

    raw, labels = load_labelled(data)
    if limit:
        raw, labels = raw[:limit], labels[:limit]
    n = len(labels)
    clouds = [preprocess(raw[i], points, seed, name=f"cloud {i}") for i in range(n)]
    sess = session(plain_model, threads)
    t0 = time.perf_counter()
    plain_pred = classify_clouds(sess, clouds)
    classify_ms = (time.perf_counter() - t0) * 1e3 / max(n, 1)
    settings = []
    for q in qbits:
        nbytes = np.zeros(n)
        enc_ms, dec_ms, npts = np.zeros(n), np.zeros(n), np.zeros(n)
        decoded = []
        for i in tqdm(range(n), desc=f"draco q={q}", disable=not progress, leave=False):
            d, nbytes[i], enc_ms[i], dec_ms[i] = draco_roundtrip(clouds[i], q, level)
            npts[i] = len(d)
            decoded.append(d)
        pred = classify_clouds(sess, decoded)
        bits = 8 * nbytes
        overhead = 8 * fixed_overhead_bytes(q, level)
        settings.append({
            "quantization_bits": int(q), "scale": 2 ** int(q), "count": n,
            "bits_mean": float(bits.mean()), "bits_median": float(np.median(bits)),
            "bits_min": int(bits.min()), "bits_max": int(bits.max()),
            "fixed_overhead_bits": overhead,
            "bits_minus_overhead_mean": float(bits.mean() - overhead),
            "accuracy": float((pred == labels).mean()),
            "decoded_points_mean": float(npts.mean()),
            "encode_ms_mean": float(enc_ms.mean()), "decode_ms_mean": float(dec_ms.mean()),
        })
        if progress:
            s = settings[-1]
            print(f"q={q:2d}: {s['bits_mean']:8.1f} bits  acc {s['accuracy']:.4f}", flush=True)
    return {
        "baseline": "draco", "plain_model": str(plain_model), "data": str(data), "count": n,
        "points": points, "seed": seed, "compression_level": level,
        "plain_accuracy": float((plain_pred == labels).mean()),
        "plain_classify_ms_per_cloud": classify_ms,
        "uncompressed_bits": points * 3 * 32,
        "settings": settings,
        "measured_with": "splitinfer baseline draco (preprocess(cloud, P, seed=0) -> DracoPy.encode("
                         "quantization_bits=q, compression_level=10) -> decode -> plain PointNet "
                         "ONNX; bits = 8 x Draco buffer bytes; onnxruntime 1 thread)",
    }


def _run(a: argparse.Namespace) -> int:
    result = evaluate_draco(a.plain_model, a.data, a.qbits, a.points, a.seed, a.level, a.limit,
                            a.threads, progress=not a.quiet)
    text = json.dumps(result, indent=1) + "\n"
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(text)
    print(f"plain (uncompressed) accuracy {result['plain_accuracy']:.4f}")
    for s in result["settings"]:
        print(f"q={s['quantization_bits']:2d} S={s['scale']:5d}: {s['bits_mean']:9.1f} bits/cloud  "
              f"accuracy {s['accuracy']:.4f}")
    return 0


def add_draco_parser(baseline_sub) -> argparse.ArgumentParser:
    """Add ``draco`` to the subparsers of a ``baseline`` command."""
    d = baseline_sub.add_parser("draco", help="Draco input compression + plain PointNet (torch-free)")
    d.add_argument("--plain-model", required=True, help="plain PointNet ONNX: points (B, N, 3) -> logits")
    d.add_argument("--data", required=True, help="labelled test .npz (points, labels) or a folder of them")
    d.add_argument("--json", help="write the result here")
    d.add_argument("--qbits", type=int, nargs="+", default=list(DEFAULT_QBITS),
                   help="Draco quantization bits (log2 of the scale S)")
    d.add_argument("--points", type=int, default=1024, help="P: points kept by preprocessing")
    d.add_argument("--seed", type=int, default=0, help="point sampling seed (default 0)")
    d.add_argument("--level", type=int, default=10, help="Draco compression level")
    d.add_argument("--limit", type=int, help="first N clouds only")
    d.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_run)
    return d


def register(subparsers) -> None:
    """Mount ``splitinfer baseline draco`` on the top-level subparsers of the CLI."""
    b = subparsers.add_parser("baseline", help="input-compression baselines (torch-free)")
    add_draco_parser(b.add_subparsers(dest="baseline", required=True))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="splitinfer")
    register(p.add_subparsers(dest="command", required=True))
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    raise SystemExit(main())
