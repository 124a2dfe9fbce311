"""Per-image analysis of the adaptive encoding distributions on real bitstreams (torch-free).

:func:`analyze` codes one image's ``y_hat`` four ways and counts the actual bytes:

* ``static``: y coded with the model's static tables (the base codec);
* ``adaptive``: side information q (``adaptive_side``) + y coded with the tables rebuilt from it
  (:mod:`splitinfer.image.adaptive`, the learned compression of encoding distributions);
* ``ideal``: y coded with tables built from the image's exact per-channel histogram, side
  information free (the bound of Ulhaq & Bajić, ICIP 2024);
* ``nonlearned``: the quantized histograms sent directly (``nonlearned_side``,
  :mod:`splitinfer.baselines.histogram`) + y coded with the tables rebuilt from them.

Byte counts are payload bytes (the container's fixed framing, the same for every variant but
5 bytes per extra payload, is left out). It also returns the C x B heatmaps of -log2 p
(ideal / static / adaptive) on each channel's bin window for the talk's slides 10-18.
"""
from __future__ import annotations

import numpy as np

from ..codec import CdfTables, decode_grid, encode_grid
from ..baselines import histogram as nonlearned

__all__ = ["analyze", "ideal_tables", "window_bits"]

#: Heatmap values are clipped here (bits) for display.
CLIP_BITS = 16.0
DEFAULT_BINS = 64


def ideal_tables(flat: np.ndarray) -> CdfTables:
    """CdfTables from the exact per-channel histogram of y_hat (C, n) on its occupied range."""
    flat = np.asarray(flat, np.int64)
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    pmfs = [np.bincount(row - lo[c], minlength=int(hi[c] - lo[c]) + 1) / row.size
            for c, row in enumerate(flat)]
    return CdfTables.from_pmfs(lo, pmfs, np.zeros(flat.shape[0]))


def window_bits(tables: CdfTables, low: np.ndarray, bins: int) -> np.ndarray:
    """Code length (bits, C x B) of every symbol ``low[c] + j`` under ``tables`` (out-of-range
    symbols: the escape entry plus its escape payload)."""
    C = tables.channels
    v = np.asarray(low, np.int64)[:, None] + np.arange(bins)[None, :]
    idx = v - tables.offsets.astype(np.int64)[:, None]
    L = tables.lengths.astype(np.int64)[:, None]
    inr = (idx >= 0) & (idx < L)
    col = np.where(inr, idx, L)
    bits = tables.bits_table[np.arange(C)[:, None], col]
    if not inr.all():
        from ..codec.tables import escape_payload_bits
        lo = np.broadcast_to(tables.offsets.astype(np.int64)[:, None], v.shape)
        extra = escape_payload_bits(v[~inr], lo[~inr], (lo + L)[~inr])
        bits = bits.copy()
        bits[~inr] += extra
    return bits


def _bits_from_counts(counts: np.ndarray, n: int) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return -np.log2(counts / n)


def analyze(codec, rgb: np.ndarray, nonlearned_step: float | None = None,
            verify: bool = True, y_hat: np.ndarray | None = None) -> dict:
    """Real-byte comparison of static / adaptive / ideal / non-learned encoding distributions for
    one uint8 (H, W, 3) image with ``codec`` (an :class:`~splitinfer.image.codec.ImageCodec`).

    Returns ``{"model", "height", "width", "pixels", "bytes": {...}, "bpp": {...}, "saving":
    {...}, "gap_captured", "distributions": {"centres", "offsets", "ideal", "static",
    "adaptive"}}`` (see the module docstring; savings are relative to static, negative = saving;
    ``gap_captured`` = adaptive saving / ideal saving). Models without an adaptive bottleneck
    give None for the adaptive entries. ``verify`` decodes every variant and checks it is exact.
    ``y_hat``: the image's latent when the caller already ran g_a on it.
    """
    rgb = np.asarray(rgb)
    H, W = rgb.shape[:2]
    y = codec.analysis(rgb) if y_hat is None else y_hat
    C = y.shape[0]
    flat = np.asarray(y, np.int32).reshape(C, -1)
    n = flat.shape[1]
    ad = codec.adaptive
    if ad is not None:
        centres, bins = ad.centres, ad.bins
    else:
        centres = np.round(np.asarray(codec.config.raw["medians"])).astype(np.int64)
        bins = DEFAULT_BINS
    low = centres - bins // 2

    static_y = encode_grid(flat, codec.tables)
    ideal_t = ideal_tables(flat)
    ideal_y = encode_grid(flat, ideal_t)
    step = nonlearned.DEFAULT_STEP if nonlearned_step is None else nonlearned_step
    nl_side, nl_tables = nonlearned.encode_histograms(flat, centres, step, codec.tables)
    nl_y = encode_grid(flat, nl_tables)
    if ad is not None:
        side, ad_tables = ad.side_information(flat)
        ad_y = encode_grid(flat, ad_tables)
    if verify:
        for data, tables in ((static_y, codec.tables), (ideal_y, ideal_t), (nl_y, nl_tables)):
            if not np.array_equal(decode_grid(data, tables, n), flat):
                raise AssertionError("a variant did not decode exactly")
        if nonlearned.decode_histograms(nl_side, centres, n, step, codec.tables) != nl_tables:
            raise AssertionError("non-learned side information did not decode to its tables")
        if ad is not None:
            t2 = ad.tables_from_side_information(side)
            if t2 != ad_tables or not np.array_equal(decode_grid(ad_y, t2, n), flat):
                raise AssertionError("adaptive side information / y did not decode exactly")

    nbytes = {"static": len(static_y),
              "adaptive": len(side) + len(ad_y) if ad is not None else None,
              "adaptive_side": len(side) if ad is not None else None,
              "ideal": len(ideal_y),
              "nonlearned": len(nl_side) + len(nl_y),
              "nonlearned_side": len(nl_side)}
    pixels = H * W
    bpp = {k: (8.0 * v / pixels if v is not None else None) for k, v in nbytes.items()}
    saving = {k: (nbytes[k] / nbytes["static"] - 1.0 if nbytes[k] is not None else None)
              for k in ("adaptive", "ideal", "nonlearned")}
    gap = (saving["adaptive"] / saving["ideal"]
           if saving["adaptive"] is not None and saving["ideal"] else None)
    from .adaptive import histogram
    counts = histogram(flat, low, bins)
    dist = {"centres": [int(c) for c in centres],
            "offsets": list(range(-(bins // 2), bins - bins // 2)),
            "ideal": np.minimum(_bits_from_counts(counts, n), CLIP_BITS).tolist(),
            "static": np.minimum(window_bits(codec.tables, low, bins), CLIP_BITS).tolist(),
            "adaptive": (np.minimum(window_bits(ad_tables, low, bins), CLIP_BITS).tolist()
                         if ad is not None else None)}
    return {"model": codec.name, "height": H, "width": W, "pixels": pixels,
            "bytes": nbytes, "bpp": bpp, "saving": saving, "gap_captured": gap,
            "nonlearned_step": step, "distributions": dist}


def summarize(results: list[dict]) -> dict:
    """Means over images of :func:`analyze` results: bpp per variant, savings (mean of the
    per-image savings), gap captured (mean adaptive saving / mean ideal saving) and side bits."""
    def mean(f):
        vals = [f(r) for r in results]
        return None if any(v is None for v in vals) else float(np.mean(vals))
    keys = list(results[0]["bpp"])
    saving = {k: mean(lambda r, k=k: r["saving"][k]) for k in results[0]["saving"]}
    return {"images": len(results), "model": results[0]["model"],
            "bpp": {k: mean(lambda r, k=k: r["bpp"][k]) for k in keys},
            "saving": saving,
            "gap_captured": (saving["adaptive"] / saving["ideal"]
                             if saving["adaptive"] is not None and saving["ideal"] else None),
            "side_bits": {"adaptive": mean(lambda r: 8 * r["bytes"]["adaptive_side"]
                                           if r["bytes"]["adaptive_side"] is not None else None),
                          "nonlearned": mean(lambda r: 8 * r["bytes"]["nonlearned_side"])}}


def analyze_folder(codec, folder, limit: int | None = None, **kw) -> dict:
    """:func:`analyze` on every image of ``folder`` (e.g. Kodak); {"images": [...], "mean": ...}."""
    from .data import image_files, load_rgb
    results = []
    for path in image_files(folder)[:limit]:
        r = analyze(codec, load_rgb(path), **kw)
        r["image"] = path.name
        results.append(r)
    return {"images": results, "mean": summarize(results)}


def timing(codec, rgb: np.ndarray, repeats: int = 3) -> dict:
    """Best-of-``repeats`` seconds of compress + decompress of one image, static and adaptive,
    and the adaptive part alone (side information on the encoder, tables on the decoder)."""
    import time

    def best(f):
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        return min(t)
    codec.decompress(codec.compress(rgb, adaptive=True))  # load every session
    y = codec.analysis(rgb)
    flat = np.asarray(y, np.int32).reshape(y.shape[0], -1)
    data_s = codec.compress(rgb)
    data_a = codec.compress(rgb, adaptive=True)
    from ..codec import Container
    side = Container.unpack(data_a).payloads[0]
    static_enc = best(lambda: codec.compress(rgb))
    static_dec = best(lambda: codec.decompress(data_s))
    ad_enc = best(lambda: codec.compress(rgb, adaptive=True))
    ad_dec = best(lambda: codec.decompress(data_a))
    side_enc = best(lambda: codec.adaptive.side_information(flat))
    side_dec = best(lambda: codec.adaptive.tables_from_side_information(side))
    static_total = static_enc + static_dec
    return {"static_encode_s": static_enc, "static_decode_s": static_dec,
            "adaptive_encode_s": ad_enc, "adaptive_decode_s": ad_dec,
            "side_information_s": side_enc, "tables_from_side_s": side_dec,
            "overhead": (ad_enc + ad_dec) / static_total - 1.0,
            "adaptive_part_fraction": (side_enc + side_dec) / static_total}
