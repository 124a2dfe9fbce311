"""The two range-coder backends (constriction, numpy/Python) write the same bytes and read each
other's: every shipped point-cloud model on the bundled sample, escapes, image grids, garbage."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, shipped_models
from test_codec_entropy_coder import INT32_MAX, INT32_MIN, _random_tables, _realistic_tables, _sample

from splitinfer.codec import BitstreamError, CorruptPayload, coders, decode, decode_grid, encode, \
    encode_grid

pytest.importorskip("constriction")  # the reference the Python backend is checked against
BOTH = ("constriction", "python")


def _both_ways(s, tables):
    """Encode with both backends, assert identical bytes and cross-decoding; return the bytes."""
    a, b = encode(s, tables, "constriction"), encode(s, tables, "python")
    assert a == b, (a.hex(), b.hex())
    np.testing.assert_array_equal(decode(a, tables, "python"), s)
    np.testing.assert_array_equal(decode(b, tables, "constriction"), s)
    return a


# ---------------------------------------------------------------------------- shipped models


@pytest.fixture(scope="module")
def sample_latents(sample):
    """y_hat of every bundled sample cloud under every shipped point-cloud model."""
    from splitinfer.pointcloud.preprocess import preprocess
    from splitinfer.pointcloud.runtime import PointCloudModel
    out = {}
    for cfg in shipped_models():
        m = PointCloudModel(cfg)
        x = np.stack([preprocess(p, m.points, 0) for p in sample["points"]])
        out[cfg.ref] = (m.tables, m.encode_symbols(x).astype(np.int32))
    return out


@pytest.mark.slow
def test_every_shipped_model_byte_identical_on_the_sample(sample_latents, sample):
    assert len(sample_latents) >= 40
    escapes = 0
    for name, (tables, y) in sample_latents.items():
        assert y.shape[0] == len(sample["points"])
        for v in y:
            _both_ways(v, tables)
        low = tables.offsets.astype(np.int64)
        escapes += int(((y < low) | (y >= low + tables.lengths)).sum())
    assert escapes > 0  # the shipped models' escape path is exercised on the sample, too


# ---------------------------------------------------------------------------- synthetic tables


@pytest.mark.parametrize("precision", [8, 12, 16, 24])
def test_random_tables_with_escapes(precision):
    rng = np.random.default_rng(precision)
    for i in range(12):
        t = _random_tables(rng, int(rng.integers(1, 48)), precision=precision, zero_len=i % 2 == 1)
        for s in _sample(rng, t, 8):
            _both_ways(s, t)


def test_extreme_escapes_and_long_streams():
    rng = np.random.default_rng(3)
    t = _realistic_tables(rng, channels=1024, spread=64)
    low, high = t.offsets.astype(np.int64), (t.offsets + t.lengths).astype(np.int64)
    extremes = np.array([INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1, 0, 1 << 16,
                         -(1 << 16), (1 << 17) + 5])
    for k in range(6):
        s = _sample(rng, t, 1)[0]
        idx = rng.choice(t.channels, 40 * (k + 1), replace=False)
        s[idx] = rng.choice(extremes, idx.size) if k % 2 else \
            rng.integers(INT32_MIN, INT32_MAX, idx.size, endpoint=True)
        s[idx[:4]] = np.concatenate([low[idx[:2]] - 1, high[idx[2:4]]])  # escapes next to range
        _both_ways(s, t)
    # every channel spread and escaped: thousands of words, many carries
    s = rng.integers(INT32_MIN, INT32_MAX, t.channels, endpoint=True)
    data = _both_ways(s, t)
    assert len(data) > 4 * t.channels


def test_empty_and_deterministic_streams():
    rng = np.random.default_rng(4)
    t = _random_tables(rng, 5, zero_len=True, max_len=1)
    for s in _sample(rng, t, 10):
        _both_ways(s, t)
    t = _realistic_tables(rng, channels=64, spread=0)
    mode = t.offsets.astype(np.int64) + np.argmax(t.freqs[:, :-1], axis=1)
    assert _both_ways(mode, t) == b""


# ---------------------------------------------------------------------------- image grids


def _grid_both_ways(flat, tables):
    a, b = encode_grid(flat, tables, "constriction"), encode_grid(flat, tables, "python")
    assert a == b
    n = flat.shape[1]
    np.testing.assert_array_equal(decode_grid(a, tables, n, "python"), flat)
    np.testing.assert_array_equal(decode_grid(b, tables, n, "constriction"), flat)
    return a


def test_image_grids_of_shipped_codecs():
    pytest.importorskip("PIL")
    from PIL import Image

    from splitinfer.image.codec import ImageCodec
    from splitinfer.repository import ModelRepository
    images = sorted((ROOT / "splitinfer" / "data" / "images").glob("*.png"))
    configs = ModelRepository().list("image-compression")
    assert images and configs
    for cfg in configs:
        codec = ImageCodec(cfg)
        for path in images:
            rgb = np.asarray(Image.open(path).convert("RGB"))[:160, :224]
            y = codec.analysis(rgb)
            flat = y.reshape(y.shape[0], -1)
            _grid_both_ways(flat, codec.tables)
            if codec.adaptive is not None:  # side information q and the adaptive tables
                side, tables = codec.adaptive.side_information(flat)
                assert encode_grid(codec.adaptive.analysis(flat), codec.adaptive.q_tables,
                                   "python") == side
                _grid_both_ways(flat, tables)
            # out-of-range values take the escape path
            flat = flat.copy()
            flat[0, :3] = [INT32_MIN, INT32_MAX, 1000]
            _grid_both_ways(flat, codec.tables)


def test_random_grids():
    rng = np.random.default_rng(5)
    for _ in range(6):
        t = _random_tables(rng, 6, zero_len=True)
        flat = np.stack([_sample(rng, t, 40)[:, c] for c in range(t.channels)])
        _grid_both_ways(flat, t)


# ---------------------------------------------------------------------------- bad input


def _outcome(fn):
    try:
        return ("ok", fn().tolist())
    except BitstreamError as e:
        return (type(e).__name__, str(e).split(":")[0])


def test_garbage_and_truncation_give_the_same_errors():
    rng = np.random.default_rng(6)
    tables = [_random_tables(rng, 24), _random_tables(rng, 3, zero_len=True, max_len=2),
              _realistic_tables(rng, channels=64, spread=4)]
    kinds = set()
    for t in tables:
        cases = [rng.integers(0, 256, rng.integers(0, 40), dtype=np.uint8).tobytes()
                 for _ in range(150)]
        cases += [b"\xff" * int(rng.integers(1, 12)) + c for c in cases[:40]]
        cases += [b"\x12\x00", b"\x01" * 10_000, b"\xff" * 8]
        s = _sample(rng, t, 1)[0]
        full = encode(s, t)
        cases += [full[:k] for k in range(len(full))]  # truncations
        for data in cases:
            got = [_outcome(lambda c=c: decode(data, t, c)) for c in BOTH]
            assert got[0] == got[1], data.hex()
            kinds.add(got[0][0])
        flat = np.stack([_sample(rng, t, 7)[:, c] for c in range(t.channels)])
        g = encode_grid(flat, t)
        for data in [g[:k] for k in range(len(g))] + cases[:60]:
            got = [_outcome(lambda c=c: decode_grid(data, t, 7, c)) for c in BOTH]
            assert got[0] == got[1], data.hex()
    assert {"ok", "CorruptPayload"} <= kinds
    with pytest.raises(CorruptPayload, match="range decoder"):
        decode(b"\xff" * 8, tables[0], "python")


# ---------------------------------------------------------------------------- selection


def test_selection(monkeypatch):
    assert coders.get("python").NAME == "python"
    assert coders.get("constriction").NAME == "constriction"
    assert coders.get("auto").NAME == "constriction"
    monkeypatch.setenv(coders.ENV, "python")
    assert coders.get().NAME == "python"
    coders.set_default("constriction")
    try:
        assert coders.get().NAME == "constriction"
    finally:
        coders.set_default(None)
    monkeypatch.setenv(coders.ENV, "fast")
    with pytest.raises(ValueError, match="unknown range coder 'fast'"):
        coders.get()
    assert set(coders.available()) == set(BOTH)


def test_auto_falls_back_without_constriction(tmp_path):
    """With constriction unimportable, auto picks python and asking for constriction says how
    to go on."""
    code = (
        "import sys; sys.modules['constriction'] = None\n"
        "import numpy as np\n"
        "from splitinfer.codec import coders, encode, decode, CdfTables\n"
        "assert coders.get().NAME == 'python' and coders.available() == ['python']\n"
        "t = CdfTables.from_pmfs([0], [np.array([.25, .75])], [1e-3])\n"
        "assert decode(encode(np.array([1]), t), t).tolist() == [1]\n"
        "try:\n"
        "    coders.get('constriction')\n"
        "except ImportError as e:\n"
        "    assert '--coder python' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('constriction was importable')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop(coders.ENV, None)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
