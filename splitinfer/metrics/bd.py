"""Bjontegaard deltas on (rate, quality) curves; here quality is top-1 accuracy.

BD-rate (Bjontegaard, VCEG-M33): fit log(rate) as a function of quality for each curve, integrate
both fits over the quality interval the two curves share, and turn the mean log-rate difference
into a percentage: ``100 * (exp(mean(log r_test - log r_anchor)) - 1)``. Negative = the test curve
needs fewer bits for the same accuracy. Two fits are offered:

- ``"cubic"``: the classic least-squares polynomial of degree 3 (degree n-1 for n < 4 points);
- ``"pchip"``: piecewise cubic Hermite interpolation (Fritsch-Carlson, as in the later
  VCEG-AL22 / JVET tools), monotone and without the cubic's overshoot.

BD-accuracy is the mirror image: the mean accuracy difference over the shared log-rate interval.
Curves are reduced to their Pareto front first (a point that needs more bits for no more accuracy
than another is dropped), so accuracy increases strictly with rate.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


class NoOverlapError(ValueError):
    """The two curves share no (or too small a) quality or rate interval to integrate over."""


def pareto_front(rates: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Points not dominated by another (less or equal rate and higher quality), sorted by rate."""
    r = np.asarray(rates, float)
    q = np.asarray(quality, float)
    if r.shape != q.shape or r.ndim != 1:
        raise ValueError(f"rates and quality must be 1-D and of equal length, got {r.shape} and {q.shape}")
    if len(r) == 0:
        raise ValueError("empty curve")
    if not (np.isfinite(r).all() and np.isfinite(q).all()) or (r <= 0).any():
        raise ValueError("rates must be positive and finite, quality finite")
    order = np.lexsort((-q, r))  # by rate, best quality first among equal rates
    keep, best = [], -np.inf
    for i in order:
        if q[i] > best:
            keep.append(i)
            best = q[i]
    return r[keep], q[keep]


def _pchip_slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Fritsch-Carlson derivatives of the monotone piecewise cubic Hermite interpolant."""
    h = np.diff(x)
    delta = np.diff(y) / h
    n = len(x)
    d = np.zeros(n)
    if n == 2:
        return np.full(2, delta[0])
    for k in range(1, n - 1):
        if delta[k - 1] * delta[k] <= 0:
            d[k] = 0.0
        else:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            d[k] = (w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k])

    def end(h0, h1, d0, d1):
        s = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
        if np.sign(s) != np.sign(d0):
            return 0.0
        if np.sign(d0) != np.sign(d1) and abs(s) > abs(3 * d0):
            return 3 * d0
        return s

    d[0] = end(h[0], h[1], delta[0], delta[1])
    d[-1] = end(h[-1], h[-2], delta[-1], delta[-2])
    return d


def _pchip_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    """Exact integral over [lo, hi] (inside [x0, xn]) of the PCHIP interpolant through (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        a, b = max(lo, x[k]), min(hi, x[k + 1])
        if b <= a:
            continue
        h = x[k + 1] - x[k]
        # Hermite cubic in t = (s - x_k) / h, integrated from ta to tb analytically
        ta, tb = (a - x[k]) / h, (b - x[k]) / h

        def prim(t):
            h00 = t**4 / 2 - t**3 + t
            h10 = t**4 / 4 - 2 * t**3 / 3 + t**2 / 2
            h01 = -t**4 / 2 + t**3
            h11 = t**4 / 4 - t**3 / 3
            return h * (h00 * y[k] + h10 * h * d[k] + h01 * y[k + 1] + h11 * h * d[k + 1])

        total += prim(tb) - prim(ta)
    return total


def _poly_integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float) -> float:
    deg = min(3, len(x) - 1)
    p = np.polyint(np.polyfit(x, y, deg))
    return float(np.polyval(p, hi) - np.polyval(p, lo))


def _integral(x, y, lo, hi, method):
    if method == "cubic":
        return _poly_integral(x, y, lo, hi)
    if method == "pchip":
        return _pchip_integral(x, y, lo, hi)
    raise ValueError(f"unknown method {method!r}: use 'cubic' or 'pchip'")


def _check(n_a: int, n_b: int) -> None:
    if min(n_a, n_b) < 2:
        raise ValueError(f"each curve needs at least 2 distinct points on its Pareto front "
                         f"(got {n_a} and {n_b})")


def bd_rate(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "cubic",
            min_overlap: float = 0.0) -> float:
    """Average rate difference (%) of the test curve against the anchor at equal quality.

    Raises NoOverlapError when the two curves' quality ranges overlap by ``min_overlap`` or less
    (accuracy units, e.g. 0.02 = 2 points).
    """
    ra, qa = pareto_front(anchor_rate, anchor_quality)
    rb, qb = pareto_front(test_rate, test_quality)
    _check(len(ra), len(rb))
    lo, hi = max(qa.min(), qb.min()), min(qa.max(), qb.max())
    if hi - lo <= min_overlap:
        raise NoOverlapError(
            f"no usable quality overlap: anchor spans [{qa.min():.4g}, {qa.max():.4g}], test spans "
            f"[{qb.min():.4g}, {qb.max():.4g}] (overlap {max(hi - lo, 0):.4g} <= {min_overlap:.4g})")
    ia = _integral(qa, np.log(ra), lo, hi, method)
    ib = _integral(qb, np.log(rb), lo, hi, method)
    return float(100.0 * (np.exp((ib - ia) / (hi - lo)) - 1.0))


def bd_accuracy(anchor_rate, anchor_quality, test_rate, test_quality, method: str = "cubic",
                min_overlap: float = 0.0) -> float:
    """Average quality difference (test - anchor) at equal rate, over the shared log-rate range.

    ``min_overlap`` is in natural-log units of rate (log(2) = one doubling).
    """
    ra, qa = pareto_front(anchor_rate, anchor_quality)
    rb, qb = pareto_front(test_rate, test_quality)
    _check(len(ra), len(rb))
    la, lb = np.log(ra), np.log(rb)
    lo, hi = max(la.min(), lb.min()), min(la.max(), lb.max())
    if hi - lo <= min_overlap:
        raise NoOverlapError(
            f"no usable rate overlap: anchor spans [{ra.min():.4g}, {ra.max():.4g}] bits, test spans "
            f"[{rb.min():.4g}, {rb.max():.4g}] bits")
    ia = _integral(la, qa, lo, hi, method)
    ib = _integral(lb, qb, lo, hi, method)
    return float((ib - ia) / (hi - lo))


def cubic_fit_monotone(rates, quality, lo: float | None = None, hi: float | None = None) -> bool:
    """Whether the classic cubic fit of log(rate) against quality rises monotonically over
    [lo, hi] (default: the curve's own quality range). A curve that saturates (several points of
    almost equal quality at very different rates) makes the polynomial oscillate, and the cubic
    BD-rate is then meaningless; PCHIP is monotone by construction."""
    r, q = pareto_front(rates, quality)
    lo = q.min() if lo is None else lo
    hi = q.max() if hi is None else hi
    coef = np.polyfit(q, np.log(r), min(3, len(q) - 1))
    vals = np.polyval(coef, np.linspace(lo, hi, 512))
    return bool((np.diff(vals) >= -1e-12).all())


def interpolate_rate(rates, quality, target: float) -> float | None:
    """Rate at which the curve reaches ``target`` quality: linear in log rate between the two
    Pareto points around it; None when the curve never reaches it (or starts above it)."""
    r, q = pareto_front(rates, quality)
    if target > q.max() or target < q.min():
        return None
    k = int(np.searchsorted(q, target))
    if q[k] == target:
        return float(r[k])
    t = (target - q[k - 1]) / (q[k] - q[k - 1])
    return float(np.exp(np.log(r[k - 1]) + t * (np.log(r[k]) - np.log(r[k - 1]))))
