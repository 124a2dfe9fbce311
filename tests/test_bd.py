"""Bjontegaard deltas: known shifts give known answers; no overlap is a clear error."""
import numpy as np
import pytest

from splitinfer.metrics import NoOverlapError, bd_accuracy, bd_rate, interpolate_rate, pareto_front

RATES = np.array([20.0, 35.0, 60.0, 110.0, 300.0])
ACC = np.array([0.60, 0.72, 0.80, 0.85, 0.88])


@pytest.mark.parametrize("method", ["cubic", "pchip"])
@pytest.mark.parametrize("factor", [0.5, 2.0, 0.1])
def test_scaled_rates_give_known_bd_rate(method, factor):
    assert bd_rate(RATES, ACC, RATES * factor, ACC, method) == pytest.approx(100 * (factor - 1), abs=1e-9)


@pytest.mark.parametrize("method", ["cubic", "pchip"])
def test_identical_curves_and_order_invariance(method):
    assert bd_rate(RATES, ACC, RATES, ACC, method) == pytest.approx(0, abs=1e-9)
    perm = [3, 0, 4, 2, 1]
    assert bd_rate(RATES[perm], ACC[perm], RATES * 0.5, ACC, method) == pytest.approx(-50, abs=1e-9)


def test_partial_overlap_uses_shared_interval():
    # the test curve only covers the upper part of the anchor's range (log rate linear in
    # accuracy, so every fit is exact): the shift is measured on the shared interval only
    lin_acc = np.log(RATES) / 10
    for method in ("cubic", "pchip"):
        assert bd_rate(RATES, lin_acc, RATES[2:] * 0.5, lin_acc[2:], method) == pytest.approx(-50, abs=1e-9)
    # with two points the cubic falls back to a line
    assert bd_rate(RATES, lin_acc, RATES[:2] * 0.25, lin_acc[:2], "cubic") == pytest.approx(-75, abs=1e-9)


def test_bd_accuracy_of_shifted_curve():
    assert bd_accuracy(RATES, ACC, RATES, ACC + 0.03, "pchip") == pytest.approx(0.03, abs=1e-12)
    assert bd_accuracy(RATES, ACC, RATES, ACC - 0.01, "cubic") == pytest.approx(-0.01, abs=1e-12)


def test_no_overlap_raises():
    with pytest.raises(NoOverlapError, match="overlap"):
        bd_rate(RATES, ACC, [10.0, 20.0], [0.30, 0.40])
    with pytest.raises(NoOverlapError):
        bd_rate(RATES, ACC, RATES, ACC + 0.3)  # [0.9, 1.18] vs [0.6, 0.88]
    with pytest.raises(NoOverlapError):  # overlap exists but below the requested minimum
        bd_rate(RATES, ACC, [10.0, 20.0], [0.50, 0.61], min_overlap=0.02)
    with pytest.raises(NoOverlapError):
        bd_accuracy(RATES, ACC, [1000.0, 2000.0], [0.7, 0.8])


def test_bad_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        bd_rate(RATES, ACC, [10.0], [0.7])
    with pytest.raises(ValueError):
        bd_rate(RATES, ACC, [10.0, -1.0], [0.7, 0.8])
    with pytest.raises(ValueError, match="unknown method"):
        bd_rate(RATES, ACC, RATES, ACC, "spline")


def test_pareto_front_drops_dominated_points():
    r, q = pareto_front([10, 20, 30, 40], [0.5, 0.7, 0.65, 0.8])
    assert r.tolist() == [10, 20, 40] and q.tolist() == [0.5, 0.7, 0.8]


def test_pchip_is_monotone_where_cubic_overshoots():
    # a steep knee: the pchip integral stays between the neighbouring log-rates
    rates, acc = np.array([8.0, 16.0, 30.0, 800.0]), np.array([0.45, 0.72, 0.81, 0.885])
    v = bd_rate(rates, acc, rates * 0.8, acc, "pchip")
    assert v == pytest.approx(-20, abs=1e-9)


def test_interpolate_rate():
    assert interpolate_rate(RATES, ACC, 0.80) == pytest.approx(60.0)
    mid = interpolate_rate(RATES, ACC, 0.76)  # half-way between 35 and 60 in log rate
    assert mid == pytest.approx(np.sqrt(35 * 60))
    assert interpolate_rate(RATES, ACC, 0.95) is None
    assert interpolate_rate(RATES, ACC, 0.50) is None


def test_cubic_monotone_check_flags_saturating_curve():
    from splitinfer.metrics import cubic_fit_monotone
    assert cubic_fit_monotone(RATES, ACC)
    # Draco-like: a steep rise, then a plateau of almost equal accuracies at doubling rates
    assert not cubic_fit_monotone([2000, 3400, 5600, 11300], [0.665, 0.773, 0.793, 0.794])
