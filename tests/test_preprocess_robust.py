"""Model-owned preprocessing: robust centring and scaling, sensor frames, degenerate clouds."""
import numpy as np
import pytest

from splitinfer.pointcloud.preprocess import (LEGACY, ROBUST, InvalidPointCloud, normalize, preprocess,
                                              statistical_outliers)


def _cloud(n=1024, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, 3)).astype(np.float32)


def test_configs_without_preprocess_answer_exactly_as_before():
    c = _cloud() * 3 + 1
    centred = c - c.mean(axis=0, keepdims=True)            # the original float32 protocol
    ref = centred / np.sqrt((centred ** 2).sum(axis=1)).max()
    idx = np.random.default_rng(7).choice(len(c), 512, replace=False)
    np.testing.assert_array_equal(preprocess(c, 512, seed=7), ref[idx].astype(np.float32))
    np.testing.assert_array_equal(preprocess(c, 512, seed=7, spec=dict(LEGACY)), preprocess(c, 512, seed=7))


def test_robust_ignores_one_far_stray_point():
    c = _cloud()
    x = preprocess(c, 1024, spec=ROBUST)
    stray = np.vstack([c, [[1e30, 0, 0]]]).astype(np.float64)
    r = preprocess(stray, 1024, spec=ROBUST, return_stats=True)
    assert r.removed == 1 and r.dropped == 0
    # the object keeps its normalised size: the stray point only moves the quantiles slightly
    assert abs(np.abs(r.points).max() - np.abs(x).max()) < 0.05


@pytest.mark.parametrize("spec", [None, ROBUST])
@pytest.mark.parametrize("factor", [1e20, 3e38 / 2])
def test_huge_coordinates_give_the_same_cloud(spec, factor):
    c = _cloud().astype(np.float64)
    ref = preprocess(c, 256, spec=spec)
    big = preprocess(c * factor, 256, spec=spec)
    assert np.isfinite(big).all()
    np.testing.assert_allclose(big, ref, atol=1e-5)


@pytest.mark.parametrize("spec", [None, ROBUST])
def test_degenerate_clouds_are_refused(spec):
    with pytest.raises(InvalidPointCloud, match="valid points"):
        preprocess(np.ones((1, 3)), 64, spec=spec)           # a single point
    with pytest.raises(InvalidPointCloud, match="coincide"):
        preprocess(np.ones((50, 3)), 64, spec=spec)          # no extent
    with pytest.raises(InvalidPointCloud, match="shape"):
        preprocess(np.ones((5, 2)), 64, spec=spec)


def test_farthest_point_protocol_refuses_a_dominating_stray_point():
    c = np.vstack([_cloud(), [[1e30, 0, 0]]])
    with pytest.raises(InvalidPointCloud, match="farther"):
        preprocess(c, 256)


@pytest.mark.parametrize("spec", [None, ROBUST])
def test_nan_points_are_dropped_and_counted(spec):
    c = _cloud(200)
    holes = c.copy()
    holes[::4] = np.nan
    holes[1, 2] = np.inf
    r = preprocess(holes, 128, spec=spec, return_stats=True)
    assert r.dropped == 51 and r.valid == 149 and r.points.shape == (128, 3)
    assert np.isfinite(r.points).all()
    with pytest.raises(InvalidPointCloud, match="149 valid points.*at least 150"):
        preprocess(holes, 128, spec=spec, min_points=150)


def test_statistical_outlier_removal_flags_isolated_points():
    c = _cloud(500).astype(np.float64)
    strays = np.array([[5.0, 5, 5], [-6, 4, 0], [0, -7, 3]])
    mask = statistical_outliers(np.vstack([c, strays]), k=8, std_ratio=2.0)
    assert mask[-3:].all() and mask[:-3].mean() < 0.02
    spec = dict(ROBUST, outliers={"k": 8, "std_ratio": 2.0}, max_radius=None)
    r = preprocess(np.vstack([c, strays]), 256, spec=spec, return_stats=True)
    assert r.removed >= 3 and np.abs(r.points).max() < 2.5


def test_normalize_is_deterministic_float32():
    c = _cloud()
    assert normalize(c).dtype == np.float32
    np.testing.assert_array_equal(preprocess(c, 100, seed=3, spec=ROBUST), preprocess(c, 100, seed=3, spec=ROBUST))
