"""``splitinfer eval pointcloud``: real bitstreams, torch-free.

Every cloud goes through the deployed path: the model's preprocessing -> ONNX encoder -> range
coding -> container bytes -> unpack -> range decoding -> ONNX classifier. Rates are the payload's
real size in bits (8 x bytes); the container header is reported separately. Estimated bits are the
information content of y_hat under the same quantized tables (sum of -log2 p).

With ``scans=SEED`` every test cloud is first replaced by its simulated single-view scan
(scans.scan_set, cloud i drawn from SEED and i): the scan benchmark. A cloud the preprocessing
refuses (InvalidPointCloud) counts as wrong and is reported under ``refused``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..codec import Container
from ..repository import ModelRepository
from .preprocess import InvalidPointCloud
from .scans import scan_set


def load_labelled(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(points [N, P0, 3], labels [N]) from an npz, or from every npz of a folder."""
    path = Path(path)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no .npz files in {path}")
    points, labels = [], []
    for f in files:
        with np.load(f) as z:
            points.append(z["points"].astype(np.float32))
            labels.append(z["labels"].astype(np.int64))
    return np.concatenate(points), np.concatenate(labels)


def evaluate(model_name: str, data: str | Path, repo: ModelRepository | None = None,
             limit: int | None = None, seed: int = 0, progress: bool = True,
             scans: int | None = None, version: int | None = None) -> dict:
    repo = repo or ModelRepository()
    model = repo.load(model_name, version)
    points, labels = load_labelled(data)
    if limit:
        points, labels = points[:limit], labels[:limit]
    if scans is not None:
        points = scan_set(points, scans)
    n = len(labels)
    payload_bits = np.zeros(n)
    container_bits = np.zeros(n)
    estimated = np.zeros(n)
    encode_ms = np.zeros(n)
    decode_ms = np.zeros(n)
    exact = 0
    decoded = np.zeros((n, model.channels), np.float32)
    refused = np.zeros(n, bool)
    for i in tqdm(range(n), desc=model_name, disable=not progress, leave=False):
        t0 = time.perf_counter()
        try:
            x = model.preprocess(points[i], seed, name=f"cloud {i}")[None]
        except InvalidPointCloud:
            refused[i] = True
            continue
        y_hat = model.encode_symbols(x)[0]
        data_bytes = model.pack(y_hat)
        t1 = time.perf_counter()
        y_dec = model.decode(data_bytes)
        t2 = time.perf_counter()
        encode_ms[i], decode_ms[i] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        c = Container.unpack(data_bytes)
        payload_bits[i] = 8 * len(c.payload)
        container_bits[i] = 8 * len(data_bytes)
        estimated[i] = model.tables.information_bits(y_hat)
        exact += int(np.array_equal(y_dec, y_hat))
        decoded[i] = y_dec
    t0 = time.perf_counter()
    logits = np.concatenate([model.classify(decoded[i:i + 256]) for i in range(0, n, 256)])
    classify_ms = (time.perf_counter() - t0) * 1e3 / max(n, 1)
    pred = np.where(refused, -1, logits.argmax(1))
    ok = ~refused
    return {
        "model": model_name, "version": model.config.version, "data": str(data), "count": n,
        "input": "clean" if scans is None else f"scans seed {scans}",
        "preprocess": model.preprocess_spec,
        "accuracy": float((pred == labels).mean()),
        "refused": int(refused.sum()),
        "bits_mean": float(payload_bits[ok].mean()) if ok.any() else 0.0,
        "estimated_bits_mean": float(estimated[ok].mean()) if ok.any() else 0.0,
        "overhead_bits_mean": float((payload_bits - estimated)[ok].mean()) if ok.any() else 0.0,
        "container_bits_mean": float(container_bits[ok].mean()) if ok.any() else 0.0,
        "roundtrip_exact": exact, "roundtrip_exact_all": exact == int(ok.sum()),
        "encode_ms_mean": float(encode_ms[ok].mean()) if ok.any() else 0.0,
        "decode_ms_mean": float(decode_ms[ok].mean()) if ok.any() else 0.0,
        "classify_ms_per_cloud_batched": classify_ms,
        "encode_ms": encode_ms.round(4).tolist(), "decode_ms": decode_ms.round(4).tolist(),
        "bits": payload_bits.astype(int).tolist(),
        "measured_with": "splitinfer eval pointcloud (payload bits = 8 x coded bytes; "
                         "encode = preprocess + ONNX encoder + range coding + container; "
                         "decode = container parse + range decoding; onnxruntime 1 thread)",
    }


def write_json(result: dict, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(result, indent=1) + "\n")
