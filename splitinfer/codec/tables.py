"""Quantized per-channel probability tables for a learned fully factorized entropy model.

A :class:`CdfTables` describes, for every channel ``c`` of a latent vector, an integer
frequency table at ``precision`` bits (each row sums to exactly ``2**precision``):

* columns ``0 .. lengths[c]-1`` are the in-range symbols ``offsets[c] + j``;
* column ``lengths[c]`` is the ESCAPE entry, used for any value outside that range; the
  value itself then follows as an escape payload (see :func:`escape_payload_bits` and
  ``docs/bitstream.md``);
* columns beyond ``lengths[c]`` are 0.

Every used entry (in-range and escape) is >= 1, so every int32 value is codable.

This module is torch-free (numpy only).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "CdfTables",
    "ESCAPE_HEADER_BITS",
    "MAX_ABS_OFFSET",
    "MAX_PRECISION",
    "MIN_PRECISION",
    "escape_payload_bits",
    "quantize_pmf",
]

#: Frequencies are scaled to the coder's 24-bit model precision exactly, so at most 24 bits.
MAX_PRECISION = 24
MIN_PRECISION = 4
#: |offsets| and |offsets + lengths| are bounded so that every int32 value's escape
#: distance fits the escape code (a 5-bit exponent, see ``docs/bitstream.md``).
MAX_ABS_OFFSET = 2**30
#: Escape payload: 1 sign bit + 5 exponent bits (coded as one uniform symbol of 64), then
#: ``n`` mantissa bits.
ESCAPE_HEADER_BITS = 6

_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1


def escape_magnitudes(values: np.ndarray, low: np.ndarray, high: np.ndarray):
    """Split out-of-range ``values`` (int64) into (below, m, n).

    ``low`` is the smallest in-range symbol and ``high`` one past the largest (``low + length``).
    ``below`` is True where value < low; ``m >= 1`` is the distance outside the range
    (``low - v`` below, ``v - high + 1`` above) and ``n = bit_length(m) - 1`` (0..31).
    """
    values = np.asarray(values, dtype=np.int64)
    below = values < low
    m = np.where(below, low - values, values - high + 1).astype(np.int64)
    # frexp is exact here: m < 2**33 is exactly representable as float64.
    n = np.frexp(m.astype(np.float64))[1].astype(np.int64) - 1
    return below, m, n


def escape_payload_bits(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Exact number of bits the escape payload of each out-of-range value costs: 6 + n."""
    _, _, n = escape_magnitudes(values, low, high)
    return (ESCAPE_HEADER_BITS + n).astype(np.float64)


def quantize_pmf(probs: np.ndarray, total: int) -> np.ndarray:
    """Integer frequencies ``f`` (int64, every entry >= 1, ``f.sum() == total``) for ``probs``.

    Maximises ``sum(q * log f)`` (i.e. minimises the expected code length under the
    normalised ``q``) over integer ``f >= 1`` summing to ``total``: start from the floor of the
    continuous optimum ``max(1, lam * q)``, fix the sum with the largest marginal gains
    (largest-remainder style), then apply single-unit exchanges until none improves. The objective is separable and
    concave, so exchange-optimality is global optimality.
    """
    q = np.asarray(probs, dtype=np.float64).ravel()
    n = q.size
    if n == 0:
        raise ValueError("quantize_pmf: empty probability vector")
    if n > total:
        raise ValueError(f"quantize_pmf: {n} entries cannot each get >= 1 of {total}")
    if not np.all(np.isfinite(q)):
        raise ValueError("quantize_pmf: probabilities must be finite")
    if np.any(q < 0):
        raise ValueError(f"quantize_pmf: negative probability {q.min()!r}")
    s = q.sum()
    q = np.full(n, 1.0 / n) if s <= 0 else q / s
    # Continuous optimum with f >= 1 ("water filling"): f = max(1, lam * q) with lam such
    # that the sum is total; the k largest q get lam * q, the rest 1.
    qs = np.sort(q)[::-1]
    k = np.arange(1, n + 1)
    lam = (total - (n - k)) / np.maximum(np.cumsum(qs), 1e-300)
    nxt = np.r_[qs[1:], 0.0]
    ok = (lam * qs > 1) & (lam * nxt <= 1)
    x = np.maximum(1.0, lam[int(np.argmax(ok))] * q) if ok.any() else q * total
    f = np.maximum(1, np.floor(x)).astype(np.int64)
    r = int(total - f.sum())
    while r != 0:
        if r > 0:
            gain = q * np.log1p(1.0 / f)
            k = min(r, n)
            idx = np.argpartition(-gain, k - 1)[:k] if k < n else np.arange(n)
            f[idx] += 1
            r -= k
        else:
            loss = np.where(f > 1, q * np.log(f / np.maximum(f - 1, 1)), np.inf)
            k = min(-r, int(np.count_nonzero(f > 1)))
            idx = np.argpartition(loss, k - 1)[:k]
            f[idx] -= 1
            r += k
    if n > 1:
        for _ in range(20 * n + 100):
            gain = q * np.log1p(1.0 / f)
            loss = np.where(f > 1, q * np.log(f / np.maximum(f - 1, 1)), np.inf)
            i = int(np.argmax(gain))
            loss[i] = np.inf
            j = int(np.argmin(loss))
            if not gain[i] > loss[j] * (1.0 + 1e-12) + 1e-300:
                break
            f[i] += 1
            f[j] -= 1
    assert f.sum() == total and f.min() >= 1
    return f


@dataclass(eq=False)
class CdfTables:
    """Integer frequency tables, one row per channel (see module docstring)."""

    offsets: np.ndarray  # int32 [C]
    lengths: np.ndarray  # int32 [C]
    freqs: np.ndarray  # uint32 [C, Lmax + 1]
    precision: int = 16
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        self.offsets = _as_int_array(self.offsets, "offsets", np.int32)
        self.lengths = _as_int_array(self.lengths, "lengths", np.int32)
        freqs = np.asarray(self.freqs)
        if freqs.ndim != 2 or not np.issubdtype(freqs.dtype, np.integer):
            raise ValueError(f"freqs must be a 2-D integer array, got {freqs.dtype} {freqs.shape}")
        if freqs.size and (freqs.min() < 0 or freqs.max() > 2**32 - 1):
            raise ValueError("freqs must fit uint32")
        self.freqs = freqs.astype(np.uint32)
        self.precision = int(self.precision)
        self.validate()

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_pmfs(cls, offsets, pmfs: Sequence[np.ndarray], tails, precision: int = 16
                  ) -> "CdfTables":
        """Quantize float PMFs plus tail (escape) mass to integer frequency tables.

        ``pmfs[c]`` holds the probabilities of symbols ``offsets[c] .. offsets[c] + len - 1``;
        ``tails[c]`` the mass outside that range (the escape probability). Each row
        ``[pmf..., tail]`` is normalised and quantized with :func:`quantize_pmf`.
        """
        offsets = np.asarray(offsets).astype(np.int64).ravel()
        tails = np.asarray(tails, dtype=np.float64).ravel()
        pmfs = [np.asarray(p, dtype=np.float64).ravel() for p in pmfs]
        C = len(pmfs)
        if offsets.shape != (C,) or tails.shape != (C,):
            raise ValueError(f"offsets {offsets.shape}, pmfs ({C}) and tails {tails.shape} "
                             "must all have one entry per channel")
        precision = _check_precision(precision)
        total = 1 << precision
        lengths = np.array([p.size for p in pmfs], dtype=np.int64)
        lmax = int(lengths.max()) if C else 0
        freqs = np.zeros((C, lmax + 1), dtype=np.uint32)
        for c, p in enumerate(pmfs):
            row = np.concatenate([p, tails[c:c + 1]])
            freqs[c, :row.size] = quantize_pmf(row, total)
        return cls(offsets=offsets, lengths=lengths, freqs=freqs, precision=precision)

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write an uncompressed .npz with keys offsets, lengths, freqs, precision."""
        with open(path, "wb") as fh:
            np.savez(fh, offsets=self.offsets, lengths=self.lengths, freqs=self.freqs,
                     precision=np.array(self.precision, dtype=np.int32))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CdfTables":
        try:
            z = np.load(path, allow_pickle=False)
        except ValueError as e:  # pickled data, or not a numpy file at all
            raise ValueError(f"{path}: not an npz file ({e})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{path}: a single numpy array, not an npz file of tables")
        with z:
            missing = {"offsets", "lengths", "freqs", "precision"} - set(z.files)
            if missing:
                raise ValueError(f"{path}: not a CdfTables file, missing keys {sorted(missing)}")
            return cls(offsets=z["offsets"], lengths=z["lengths"], freqs=z["freqs"],
                       precision=int(z["precision"]))

    # ------------------------------------------------------------------ properties

    @property
    def channels(self) -> int:
        return int(self.offsets.shape[0])

    @property
    def total(self) -> int:
        return 1 << self.precision

    @property
    def cdf(self) -> np.ndarray:
        """[C, Lmax + 2] int64 cumulative frequencies, ``cdf[:, 0] == 0``."""
        out = np.zeros((self.channels, self.freqs.shape[1] + 1), dtype=np.int64)
        np.cumsum(self.freqs, axis=1, dtype=np.int64, out=out[:, 1:])
        return out

    @property
    def bits_table(self) -> np.ndarray:
        """[C, Lmax + 1] float64 code length ``-log2(freq / 2**precision)`` (inf for unused)."""
        t = self._cache.get("bits")
        if t is None:
            with np.errstate(divide="ignore"):
                t = self.precision - np.log2(self.freqs.astype(np.float64))
            t.setflags(write=False)
            self._cache["bits"] = t
        return t

    def __eq__(self, other):
        if not isinstance(other, CdfTables):
            return NotImplemented
        return (self.precision == other.precision
                and np.array_equal(self.offsets, other.offsets)
                and np.array_equal(self.lengths, other.lengths)
                and np.array_equal(self.freqs, other.freqs))

    __hash__ = None

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Raise ValueError unless the tables satisfy every invariant listed above."""
        _check_precision(self.precision)
        C = self.offsets.shape[0]
        if self.lengths.shape != (C,) or self.freqs.shape[0] != C:
            raise ValueError(f"offsets {self.offsets.shape}, lengths {self.lengths.shape} and "
                             f"freqs {self.freqs.shape} disagree on the channel count")
        if C == 0:
            return
        width = self.freqs.shape[1]
        if self.lengths.min() < 0:
            raise ValueError(f"negative length {self.lengths.min()}")
        if self.lengths.max() + 1 > width:
            raise ValueError(f"freqs has {width} columns but a channel needs "
                             f"{self.lengths.max() + 1} (length + escape)")
        if self.lengths.max() + 1 > self.total:
            raise ValueError(f"a channel has {self.lengths.max() + 1} entries, more than "
                             f"2**precision = {self.total}")
        lo = self.offsets.astype(np.int64)
        hi = lo + self.lengths
        if np.abs(lo).max() > MAX_ABS_OFFSET or np.abs(hi).max() > MAX_ABS_OFFSET:
            raise ValueError("offsets and offsets + lengths must lie within +-2**30")
        used = np.arange(width)[None, :] <= self.lengths[:, None]
        f = self.freqs.astype(np.int64)
        if np.any(f[used] < 1):
            c = int(np.nonzero((f < 1) & used)[0][0])
            raise ValueError(f"channel {c}: every used entry must be >= 1")
        if np.any(f[~used] != 0):
            c = int(np.nonzero((f != 0) & ~used)[0][0])
            raise ValueError(f"channel {c}: entries past the escape column must be 0")
        sums = f.sum(axis=1)
        if np.any(sums != self.total):
            c = int(np.nonzero(sums != self.total)[0][0])
            raise ValueError(f"channel {c}: frequencies sum to {sums[c]}, expected "
                             f"2**{self.precision} = {self.total}")

    # ------------------------------------------------------------------ information content

    def information_bits(self, symbols) -> float:
        """Ideal code length (bits) of one symbol vector [C] under these tables, escape
        payloads included; equals what the range coder spends before byte alignment."""
        s = np.asarray(symbols)
        if s.ndim != 1:
            raise ValueError(f"symbols must be 1-D [C], got shape {s.shape}")
        return float(self.information_bits_batch(s[None, :])[0])

    def information_bits_batch(self, symbols) -> np.ndarray:
        """Vectorised :meth:`information_bits` for symbols [B, C] -> float64 [B]."""
        s = self._check_symbols(symbols, ndim=2)
        idx = s - self.offsets.astype(np.int64)[None, :]
        lengths = self.lengths.astype(np.int64)[None, :]
        inr = (idx >= 0) & (idx < lengths)
        col = np.where(inr, idx, lengths)
        rows = np.broadcast_to(np.arange(self.channels)[None, :], s.shape)
        bits = self.bits_table[rows, col]
        if not inr.all():
            esc = ~inr
            c = np.nonzero(esc)[1]
            low = self.offsets.astype(np.int64)[c]
            extra = np.zeros(s.shape, dtype=np.float64)
            extra[esc] = escape_payload_bits(s[esc], low, low + self.lengths[c])
            bits = bits + extra
        return bits.sum(axis=1)

    def _check_symbols(self, symbols, ndim: int) -> np.ndarray:
        s = np.asarray(symbols)
        if s.ndim != ndim or s.shape[-1] != self.channels:
            want = "[C]" if ndim == 1 else "[B, C]"
            raise ValueError(f"symbols must have shape {want} with C = {self.channels}, "
                             f"got {s.shape}")
        if not (np.issubdtype(s.dtype, np.integer) or s.dtype == np.bool_):
            raise TypeError(f"symbols must be integers, got dtype {s.dtype}")
        s = s.astype(np.int64)
        if s.size and (s.min() < _INT32_MIN or s.max() > _INT32_MAX):
            raise ValueError("symbols must lie in the int32 range")
        return s


def _as_int_array(a, name: str, dtype) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"{name} must be a 1-D integer array, got {a.dtype} {a.shape}")
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise ValueError(f"{name} does not fit {np.dtype(dtype).name}")
    return a.astype(dtype)


def _check_precision(precision) -> int:
    p = int(precision)
    if not MIN_PRECISION <= p <= MAX_PRECISION:
        raise ValueError(f"precision must be in [{MIN_PRECISION}, {MAX_PRECISION}], got {p}")
    return p
