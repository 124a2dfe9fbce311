"""The scan simulator: seeded, partial, noisy, in sensor coordinates."""
import numpy as np
import pytest

from splitinfer.pointcloud.scans import (ScanParams, hidden_point_removal, scan_set, simulate,
                                         zbuffer_visibility)


def _sphere(n=1024, seed=0):
    p = np.random.default_rng(seed).normal(size=(n, 3))
    return p / np.linalg.norm(p, axis=1, keepdims=True)


@pytest.mark.parametrize("visible", [hidden_point_removal, zbuffer_visibility])
def test_visibility_keeps_the_near_side_of_a_sphere(visible):
    pts = _sphere()
    camera = np.array([5.0, 0.0, 0.0])
    mask = visible(pts, camera) if visible is hidden_point_removal else visible(pts, camera, 16, 0.2)
    assert mask is not None
    assert 0.25 < mask.mean() < 0.65
    assert (pts[mask, 0] > -0.2).all()          # nothing from the far side
    assert (pts[mask, 0] > 0.5).sum() > 0.9 * (pts[:, 0] > 0.5).sum()  # most of the near cap


def test_simulate_is_seeded_partial_and_in_sensor_coordinates():
    pts = _sphere()
    a = simulate(pts, ScanParams(), np.random.default_rng(3))
    b = simulate(pts, ScanParams(), np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert 8 <= len(a) < 0.7 * len(pts)
    p = ScanParams(scale=1000.0, offset=(10.0, -5.0, 2.0), yaw=0.7, noise=0.0, dropout=0.0)
    s = simulate(pts, p, np.random.default_rng(0))
    assert np.allclose(np.median(s, axis=0) / 1000.0, (10.0, -5.0, 2.0), atol=1.5)
    assert 1000.0 < np.ptp(s, axis=0).max() < 2500.0


def test_random_params_span_wide_ranges_and_scan_set_is_per_cloud():
    rng = np.random.default_rng(0)
    ps = [ScanParams.random(rng) for _ in range(200)]
    assert {p.visibility for p in ps} == {"hpr", "zbuffer"}
    assert {p.crop for p in ps} == {"none", "frustum", "halfspace"}
    scales = np.array([p.scale for p in ps])
    assert scales.min() < 0.1 and scales.max() > 1000
    clouds = np.stack([_sphere(256, s) for s in range(4)])
    full, part = scan_set(clouds, seed=5), scan_set(clouds[:2], seed=5)
    for x, y in zip(full, part):       # cloud i's scan depends on the seed and i alone
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(scan_set(clouds[:1], seed=6)[0], full[0])
