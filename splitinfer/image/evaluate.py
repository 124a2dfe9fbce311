"""``splitinfer eval image`` / ``splitinfer baseline image``: real bitstreams, torch-free.

Learned codec (:func:`evaluate_codec`): every image goes through the deployed path
``ImageCodec.compress`` (ONNX g_a -> range coding -> SPLT container) and ``decompress`` (unpack ->
range decoding -> ONNX g_s), once with the static tables and once with adaptive encoding
distributions (side information q + y) when the model ships them. Rates are measured on the bytes:

- ``payload_bytes``: the entropy-coded payloads (y, plus q when adaptive): ``bpp`` = 8 x that / pixels;
- ``container_bytes``: the whole SPLT container (header included): ``bpp_container``;
- ``side_bytes``: the adaptive side information q alone.

PSNR / MS-SSIM (:mod:`splitinfer.metrics.image_quality`) compare the decoded image with the original; the
adaptive path decodes the same y_hat, which is checked (``adaptive_decoded_matches_static``).
``roundtrip_exact``: the symbols unpacked from the bytes equal ``analysis(image)``.
``encode_ms`` times ``compress`` and ``decode_ms`` times ``decompress`` (time.perf_counter, after
one untimed warm-up that loads the ONNX sessions); medians over images are reported.
When :mod:`splitinfer.image.analysis` is importable and the model has an adaptive part, its
``analyze`` rates (static / adaptive / ideal / non-learned) are attached per image and averaged.

Baselines (:func:`evaluate_baseline`): JPEG / WebP through Pillow, see :mod:`splitinfer.baselines.image_codecs`.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from ..codec import Container
from .data import image_files, load_rgb
from ..metrics.image_quality import ms_ssim, psnr

RATE_KEYS = ("static", "adaptive", "adaptive_side", "ideal", "nonlearned", "nonlearned_side")


def _images(data: str | Path, limit: int | None) -> list[Path]:
    files = image_files(data)
    return files[:limit] if limit else files


def _ms_ssim_or_none(a, b) -> float | None:
    try:
        return ms_ssim(a, b)
    except ValueError:  # smaller than 161 px on a side
        return None


def _mean(values) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def _median(values) -> float | None:
    v = [float(x) for x in values if x is not None]
    return float(np.median(v)) if v else None


def _analyzer():
    try:
        from .analysis import analyze
    except ImportError:
        return None
    return analyze


def _code(codec, rgb: np.ndarray, adaptive: bool) -> tuple[dict, bytes, np.ndarray]:
    """Compress + decompress one image, timed; returns (record, bytes, decoded image)."""
    t0 = time.perf_counter()
    data = codec.compress(rgb, adaptive=adaptive)
    t1 = time.perf_counter()
    out = codec.decompress(data)
    t2 = time.perf_counter()
    c = Container.unpack(data)
    pixels = rgb.shape[0] * rgb.shape[1]
    payload = c.payload_size
    rec = {"container_bytes": len(data), "payload_bytes": payload,
           "header_bytes": len(data) - payload,
           "bpp": 8.0 * payload / pixels, "bpp_container": 8.0 * len(data) / pixels,
           "encode_ms": (t1 - t0) * 1e3, "decode_ms": (t2 - t1) * 1e3}
    if adaptive:
        rec["side_bytes"] = len(c.payloads[0])
        rec["y_bytes"] = len(c.payloads[-1])
    return rec, data, out


def _jsonable(x):
    """numpy scalars / arrays inside analyze()'s dict -> plain JSON values."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, np.generic):
        return x.item()
    return x


def _summarise_path(recs: list[dict]) -> dict:
    keys = ("bpp", "bpp_container", "payload_bytes", "container_bytes", "header_bytes",
            "side_bytes", "y_bytes")
    out = {k: _mean(r[k] for r in recs) for k in keys if k in recs[0]}
    if "side_bytes" in recs[0]:
        out["side_bits"] = 8 * out["side_bytes"]
    out["encode_ms_median"] = _median(r["encode_ms"] for r in recs)
    out["decode_ms_median"] = _median(r["decode_ms"] for r in recs)
    return out


def _summarise_analysis(rows: list[dict], pixels: list[int]) -> dict:
    """Means of analyze()'s bytes / bpp over images; savings (%, negative = fewer bits) and the
    gap captured computed from those means; and the means of analyze()'s per-image values."""
    out: dict = {}
    byt = {k: _mean(r["bytes"].get(k) for r in rows) for k in RATE_KEYS
           if all(r.get("bytes", {}).get(k) is not None for r in rows)}
    bpp = {k: _mean(8.0 * r["bytes"][k] / p for r, p in zip(rows, pixels)) for k in byt}
    out["bytes_mean"], out["bpp_mean"] = byt, bpp
    s = bpp.get("static")
    if s:
        out["saving_pct"] = {k: 100.0 * (bpp[k] / s - 1.0) for k in ("adaptive", "ideal", "nonlearned")
                             if k in bpp}
        if "adaptive" in bpp and "ideal" in bpp and s != bpp["ideal"]:
            out["gap_captured"] = (s - bpp["adaptive"]) / (s - bpp["ideal"])
        if "adaptive_side" in byt:
            out["side_bits_mean"] = 8.0 * byt["adaptive_side"]
        if "nonlearned_side" in byt:
            out["nonlearned_side_bits_mean"] = 8.0 * byt["nonlearned_side"]
    reported = rows[0].get("saving")
    if isinstance(reported, dict):
        # analyze()'s own per-image savings (fractions, negative = saving), averaged over images
        out["saving_reported_fraction_mean"] = {k: _mean(r["saving"].get(k) for r in rows)
                                                for k in reported}
    if all(isinstance(r.get("gap_captured"), (int, float)) for r in rows):
        out["gap_captured_reported_mean"] = _mean(r["gap_captured"] for r in rows)
    return out


def evaluate_codec(name: str, data: str | Path, repo=None, limit: int | None = None,
                   adaptive: bool = True, progress: bool = False,
                   keep_distributions: bool = False) -> dict:
    """Evaluate one image-compression model on every image of ``data`` (see the module doc).
    ``keep_distributions`` keeps analyze()'s per-image C x B heatmaps (large) in the result."""
    from tqdm import tqdm

    from ..repository import ModelRepository
    repo = repo or ModelRepository()
    codec = repo.load(name)
    files = _images(data, limit)
    has_adaptive = codec.adaptive is not None
    do_adaptive = adaptive and has_adaptive
    analyze = _analyzer() if do_adaptive else None
    first = load_rgb(files[0])
    codec.decompress(codec.compress(first))  # warm-up: create the ONNX sessions, untimed
    if do_adaptive:
        codec.decompress(codec.compress(first, adaptive=True))
    images = []
    for f in tqdm(files, desc=name, disable=not progress, leave=False):
        rgb = load_rgb(f)
        H, W = rgb.shape[:2]
        y_hat = codec.analysis(rgb)
        st, data_s, out = _code(codec, rgb, False)
        rec = {"image": f.name, "height": H, "width": W, "pixels": H * W,
               "psnr": psnr(rgb, out), "ms_ssim": _ms_ssim_or_none(rgb, out),
               "latent_shape": list(y_hat.shape), "static": st}
        exact = bool(np.array_equal(codec.unpack(data_s)[0], y_hat))
        if do_adaptive:
            ad, data_a, out_a = _code(codec, rgb, True)
            rec["adaptive"] = ad
            exact = exact and bool(np.array_equal(codec.unpack(data_a)[0], y_hat))
            rec["adaptive_decoded_matches_static"] = bool(np.array_equal(out_a, out))
        rec["roundtrip_exact"] = exact
        if analyze is not None:
            a = analyze(codec, rgb)
            if not keep_distributions:  # C x B heatmaps: large, for the slides only
                a.pop("distributions", None)
            rec["analysis"] = _jsonable(a)
        images.append(rec)

    cfg = codec.config.raw
    r = {
        "kind": "image-codec-eval", "model": name, "version": int(codec.config.version),
        "quality": cfg.get("quality"), "lmbda": cfg.get("lmbda"), "N": cfg.get("N"),
        "M": cfg.get("M"), "data": str(data), "count": len(images),
        "adaptive_available": has_adaptive, "adaptive_evaluated": do_adaptive,
        "analysis_available": analyze is not None,
        "psnr_mean": _mean(i["psnr"] for i in images),
        "ms_ssim_mean": _mean(i["ms_ssim"] for i in images),
        "roundtrip_exact_all": all(i["roundtrip_exact"] for i in images),
        "static": _summarise_path([i["static"] for i in images]),
    }
    r["bpp_mean"] = r["static"]["bpp"]
    r["bpp_container_mean"] = r["static"]["bpp_container"]
    if do_adaptive:
        a = _summarise_path([i["adaptive"] for i in images])
        r["adaptive"] = a
        r["bpp_adaptive_mean"] = a["bpp"]
        r["saving_adaptive_pct"] = 100.0 * (a["bpp"] / r["bpp_mean"] - 1.0)
        r["adaptive_decoded_matches_static_all"] = all(
            i["adaptive_decoded_matches_static"] for i in images)
    if analyze is not None:
        r["analysis"] = _summarise_analysis([i["analysis"] for i in images],
                                            [i["pixels"] for i in images])
    r["images"] = images
    return r


def evaluate_baseline(codec_name: str, qualities: Sequence[int] | None, data: str | Path,
                      limit: int | None = None, with_ms_ssim: bool = True,
                      progress: bool = False) -> dict:
    """JPEG / WebP at each quality over the images of ``data``: per-image rows and, per quality,
    the mean bpp / PSNR / MS-SSIM and median encode / decode ms."""
    from PIL import __version__ as pillow
    from PIL import features
    from tqdm import tqdm

    from ..baselines import image_codecs
    codec = image_codecs._check_codec(codec_name)
    qs = [int(q) for q in (qualities or image_codecs.DEFAULT_QUALITIES[codec])]
    files = _images(data, limit)
    rows = []
    for f in tqdm(files, desc=codec, disable=not progress, leave=False):
        rows += image_codecs.sweep([(f.name, load_rgb(f))], codec, qs, with_ms_ssim)
    points = []
    for q in qs:
        rs = [r for r in rows if r["quality"] == q]
        points.append({"quality": q, "bytes_mean": _mean(r["bytes"] for r in rs),
                       "bpp_mean": _mean(r["bpp"] for r in rs),
                       "psnr_mean": _mean(r["psnr"] for r in rs),
                       "ms_ssim_mean": _mean(r.get("ms_ssim") for r in rs),
                       "encode_ms_median": _median(r["encode_ms"] for r in rs),
                       "decode_ms_median": _median(r["decode_ms"] for r in rs)})
    lib = "jpg" if codec == "jpeg" else "webp"
    return {"kind": "image-baseline", "codec": codec, "data": str(data), "count": len(files),
            "qualities": qs,
            "settings": {**image_codecs.SETTINGS[codec], "pillow": pillow,
                         "library_version": features.version(lib),
                         "libjpeg_turbo": bool(features.check_feature("libjpeg_turbo"))
                         if codec == "jpeg" else None},
            "points": points, "images": rows}


def write_json(result: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
