"""CdfTables: PMF quantization, validation, persistence, information content."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from splitinfer.codec.tables import CdfTables, escape_payload_bits, quantize_pmf


def _gaussian_pmf(sd: float, tail: float = 1e-4):
    half = int(math.ceil(6 * sd)) + 1
    x = np.arange(-half, half + 1, dtype=np.float64)
    erf = np.vectorize(math.erf)
    c = lambda v: 0.5 * (1 + erf(v / (sd * math.sqrt(2))))  # noqa: E731
    p = c(x + 0.5) - c(x - 0.5)
    return -half, p * (1 - tail) / p.sum()


def _objective(q, f):
    return float(np.sum(q * np.log(f)))


# ---------------------------------------------------------------------------- quantize_pmf


@pytest.mark.parametrize("total", [16, 256, 2**16, 2**24])
def test_quantize_pmf_sums_and_minimum(total):
    rng = np.random.default_rng(total)
    for n in (1, 2, 3, 7, 40, 200):
        if n > total:
            continue
        for q in (rng.dirichlet(np.full(n, 0.3)), np.zeros(n),
                  np.r_[np.ones(n - 1) * 1e-12, 1.0], rng.random(n) ** 8):
            f = quantize_pmf(q, total)
            assert f.dtype == np.int64 and f.shape == (n,)
            assert f.sum() == total and f.min() >= 1


def test_quantize_pmf_is_optimal_on_small_cases():
    """Brute force over all integer compositions: greedy + exchange finds the optimum."""
    rng = np.random.default_rng(0)
    total = 24
    for n in (2, 3, 4):
        comps = [np.array(c) for c in itertools.product(range(1, total), repeat=n)
                 if sum(c) == total]
        for _ in range(25):
            q = rng.dirichlet(np.full(n, 0.4))
            q /= q.sum()
            best = max(_objective(q, c) for c in comps)
            f = quantize_pmf(q, total)
            assert _objective(q, f) >= best - 1e-12


def test_quantize_pmf_rejects_bad_input():
    with pytest.raises(ValueError):
        quantize_pmf(np.array([]), 16)
    with pytest.raises(ValueError):
        quantize_pmf(np.ones(17), 16)
    with pytest.raises(ValueError):
        quantize_pmf(np.array([0.5, np.nan]), 16)
    with pytest.raises(ValueError):
        quantize_pmf(np.array([0.5, -0.1]), 16)


# ---------------------------------------------------------------------------- from_pmfs


def test_from_pmfs_layout_and_small_quantization_loss():
    rng = np.random.default_rng(1)
    offsets, pmfs, tails = [], [], []
    for c in range(64):
        sd = rng.uniform(0.05, 5.0)
        lo, p = _gaussian_pmf(sd)
        offsets.append(lo)
        pmfs.append(p)
        tails.append(1e-4)
    t = CdfTables.from_pmfs(offsets, pmfs, tails, precision=16)
    assert t.offsets.dtype == np.int32 and t.lengths.dtype == np.int32
    assert t.freqs.dtype == np.uint32 and t.precision == 16
    assert list(t.lengths) == [len(p) for p in pmfs]
    assert t.freqs.shape == (64, max(len(p) for p in pmfs) + 1)
    assert np.all(t.freqs.astype(np.int64).sum(axis=1) == 2**16)
    for c, p in enumerate(pmfs):
        row = t.freqs[c].astype(np.int64)
        assert row[: len(p) + 1].min() >= 1
        assert np.all(row[len(p) + 1:] == 0)
        # expected code length under the float model vs its entropy: tiny loss
        q = np.r_[p, tails[c]]
        q = q / q.sum()
        ideal = -np.sum(q[q > 0] * np.log2(q[q > 0]))
        actual = -np.sum(q * np.log2(row[: len(p) + 1] / 2**16))
        assert actual - ideal < 2e-3 + 1e-3 * ideal, (c, actual, ideal)


def test_from_pmfs_zero_length_channel_and_shape_errors():
    t = CdfTables.from_pmfs([0, 3], [np.array([]), np.array([0.5, 0.5])], [1.0, 0.0])
    assert list(t.lengths) == [0, 2]
    assert t.freqs[0, 0] == 2**16 and t.freqs[1, 2] == 1
    with pytest.raises(ValueError):
        CdfTables.from_pmfs([0], [np.ones(2), np.ones(2)], [0.0, 0.0])


# ---------------------------------------------------------------------------- validation


def _small():
    return CdfTables(offsets=np.array([-1, 5]), lengths=np.array([3, 1]),
                     freqs=np.array([[4, 8, 3, 1], [15, 1, 0, 0]]), precision=4)


def test_validation_errors():
    ok = _small()
    ok.validate()
    with pytest.raises(ValueError, match="sum to"):
        CdfTables(offsets=[0], lengths=[1], freqs=[[15, 2]], precision=4)
    with pytest.raises(ValueError, match=">= 1"):
        CdfTables(offsets=[0], lengths=[2], freqs=[[16, 0, 0]], precision=4)
    with pytest.raises(ValueError, match="past the escape"):
        CdfTables(offsets=[0], lengths=[1], freqs=[[14, 1, 1]], precision=4)
    with pytest.raises(ValueError, match="precision"):
        CdfTables(offsets=[0], lengths=[1], freqs=[[2**25 - 1, 1]], precision=25)
    with pytest.raises(ValueError, match="columns"):
        CdfTables(offsets=[0], lengths=[3], freqs=[[15, 1]], precision=4)
    with pytest.raises(ValueError, match="2\\*\\*30"):
        CdfTables(offsets=[2**30], lengths=[1], freqs=[[15, 1]], precision=4)


def test_save_load_roundtrip(tmp_path):
    t = _small()
    path = tmp_path / "tables.npz"
    t.save(path)
    with np.load(path) as z:
        assert set(z.files) == {"offsets", "lengths", "freqs", "precision"}
    u = CdfTables.load(path)
    assert u == t
    assert u.freqs.dtype == np.uint32 and u.precision == 4
    np.savez(tmp_path / "bad.npz", offsets=t.offsets)
    with pytest.raises(ValueError, match="missing keys"):
        CdfTables.load(tmp_path / "bad.npz")


def test_cdf_property():
    t = _small()
    assert t.cdf.tolist() == [[0, 4, 12, 15, 16], [0, 15, 16, 16, 16]]


# ---------------------------------------------------------------------------- information bits


def test_information_bits_in_range_and_escape():
    t = _small()  # channel 0: symbols -1, 0, 1 (+ escape f=1); channel 1: symbol 5 (+ escape)
    assert t.information_bits([-1, 5]) == pytest.approx(-math.log2(4 / 16) - math.log2(15 / 16))
    assert t.information_bits([1, 5]) == pytest.approx(-math.log2(3 / 16) - math.log2(15 / 16))
    esc0 = -math.log2(1 / 16)
    esc1 = -math.log2(1 / 16)
    # channel 0 range is [-1, 2): value 2 is m=1 above (n=0), value -2 is m=1 below (n=0)
    assert t.information_bits([2, 5]) == pytest.approx(esc0 + 6 - math.log2(15 / 16))
    assert t.information_bits([-2, 5]) == pytest.approx(esc0 + 6 - math.log2(15 / 16))
    # value 9 in channel 1 (range [5, 6)): m = 9 - 6 + 1 = 4 -> n = 2
    assert t.information_bits([0, 9]) == pytest.approx(-math.log2(8 / 16) + esc1 + 6 + 2)
    # extremes: m = -1 + 2**31 below (n = 30) / m = 2**31 - 1 - 6 + 1 above (n = 30)
    big = t.information_bits([-(2**31), 2**31 - 1])
    assert big == pytest.approx(esc0 + 6 + 30 + esc1 + 6 + 30)
    assert t.information_bits([-(2**31) + 1, 5]) - t.information_bits([-(2**31), 5]) \
        == pytest.approx(0)  # m = 2**31 - 2 vs 2**31 - 1: same exponent


def test_escape_payload_bits_vector():
    low, high = np.array([0, 0, 0, 0]), np.array([1, 1, 1, 1])
    v = np.array([-1, 1, 2, -(2**31)])
    assert escape_payload_bits(v, low, high).tolist() == [6, 6, 7, 6 + 31]


def test_information_bits_batch_matches_single():
    rng = np.random.default_rng(3)
    t = CdfTables.from_pmfs(rng.integers(-5, 5, 20),
                            [rng.dirichlet(np.ones(rng.integers(1, 9))) * 0.99
                             for _ in range(20)], np.full(20, 0.01))
    s = rng.integers(-8, 14, size=(30, 20))
    s[0, 0] = 2**31 - 1
    s[1, 1] = -(2**31)
    batch = t.information_bits_batch(s)
    assert batch.shape == (30,)
    for i in range(30):
        assert batch[i] == pytest.approx(t.information_bits(s[i]))


def test_information_bits_input_checks():
    t = _small()
    with pytest.raises(ValueError, match="shape"):
        t.information_bits([1, 2, 3])
    with pytest.raises(ValueError, match="int32"):
        t.information_bits(np.array([2**31, 0]))
    with pytest.raises(TypeError):
        t.information_bits(np.array([0.5, 1.0]))
