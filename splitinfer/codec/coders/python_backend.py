"""Range coder in numpy and plain Python, bit-exact with constriction 0.5's default range coder.

It reproduces ``constriction.stream.queue.RangeEncoder`` / ``RangeDecoder`` (32-bit words,
64-bit state, 24-bit model precision) for the two model families splitinfer uses:

- categorical models given as integer frequencies at 24 bits (what
  ``Categorical(perfect=False)`` realises exactly for the weights the codec passes it, see
  ``docs/bitstream.md`` section 2.2): symbol ``i`` has left cumulative ``F_i`` and probability
  ``f_i``;
- ``Uniform(size)``: ``ppb = 2**24 // size`` per symbol, the last symbol takes the rest.

Encoder state (as in constriction): ``lower`` (64 bits), ``range`` (64 bits), the words written
so far. Per symbol ``scale = range >> 24``, ``lower += scale * cum`` (a carry propagates into
the words already written), ``range = scale * prob``; when ``range < 2**32`` the top word of
``lower`` is written and both shift left by 32 bits. Sealing writes the top word of
``lower + 2**32 - 1`` and one more zero word when that equals the top word of
``lower + range``. Constriction holds back words that a later carry could still change; writing
them at once and propagating the carry gives the same words.

The decoder mirrors it: ``point`` holds the next 64 bits of the stream (zeros past its end),
``quantile = (point - lower) // scale`` must stay below ``2**24`` (else the data is invalid: the
same condition on which constriction raises), and the symbol is the last one whose left
cumulative is at most the quantile.

Per-symbol work is a handful of Python integer operations; the model lookups around it are
numpy. :meth:`Encoder.interval` also gives the exact final interval, which lets the payload
trimming of :mod:`..entropy_coder` find the shortest byte string without trial decoding.
"""
from __future__ import annotations

import itertools
from bisect import bisect_right

import numpy as np

NAME = "python"
PRECISION = 24
_TOTAL = 1 << PRECISION
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1
_WORD = 1 << 32


class InvalidData(ValueError):
    """The compressed data is not a stream these models can have produced."""

    def __init__(self):
        super().__init__("Tried to decode from compressed data that is invalid for the employed "
                         "entropy model.")


def _cdf_rows(pmf: np.ndarray) -> np.ndarray:
    pmf = np.asarray(pmf, dtype=np.int64)
    cdf = np.zeros(pmf.shape[:-1] + (pmf.shape[-1] + 1,), dtype=np.int64)
    np.cumsum(pmf, axis=-1, out=cdf[..., 1:])
    if pmf.shape[-1] < 2 or (pmf <= 0).any() or (cdf[..., -1] != _TOTAL).any():
        raise ValueError("a categorical model needs >= 2 positive frequencies summing to 2**24")
    return cdf


class RowsModel:
    """One categorical model per row of ``pmf`` [k, L] (24-bit integer frequencies), each
    coding one symbol."""

    def __init__(self, pmf: np.ndarray):
        self.cdf = _cdf_rows(pmf)
        self.cdf_lists = self.cdf.tolist()


class IidModel:
    """One categorical model (``pmf`` [L], 24-bit integer frequencies) for many symbols."""

    def __init__(self, pmf: np.ndarray):
        self.cdf = _cdf_rows(pmf)
        self.cdf_list = self.cdf.tolist()


def rows_model(pmf: np.ndarray) -> RowsModel:
    return RowsModel(pmf)


def iid_model(pmf: np.ndarray) -> IidModel:
    return IidModel(pmf)


def _uniform_slots(sizes: np.ndarray):
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size and (sizes.min() < 2 or sizes.max() >= _TOTAL):
        raise ValueError("Uniform sizes must be in [2, 2**24)")
    return _TOTAL // np.maximum(sizes, 1), sizes - 1


class Encoder:
    """Collects (left cumulative, probability) pairs; codes them when the words are asked for."""

    def __init__(self):
        self._cums: list[np.ndarray] = []
        self._probs: list[np.ndarray] = []
        self._result = None

    def _push(self, cum: np.ndarray, prob: np.ndarray) -> None:
        self._cums.append(np.asarray(cum, dtype=np.int64).reshape(-1))
        self._probs.append(np.asarray(prob, dtype=np.int64).reshape(-1))
        self._result = None

    def encode_rows(self, symbols, model: RowsModel) -> None:
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if s.shape[0] != model.cdf.shape[0]:
            raise ValueError(f"{s.shape[0]} symbols for {model.cdf.shape[0]} models")
        if s.size and (s.min() < 0 or s.max() >= model.cdf.shape[1] - 1):
            raise ValueError("a symbol is outside its model's alphabet")
        rows = np.arange(s.size)
        cum = model.cdf[rows, s]
        self._push(cum, model.cdf[rows, s + 1] - cum)

    def encode_iid(self, symbols, model: IidModel) -> None:
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        if s.size and (s.min() < 0 or s.max() >= model.cdf.shape[0] - 1):
            raise ValueError("a symbol is outside the model's alphabet")
        cum = model.cdf[s]
        self._push(cum, model.cdf[s + 1] - cum)

    def encode_uniform(self, symbols, sizes) -> None:
        s = np.asarray(symbols, dtype=np.int64).reshape(-1)
        ppb, last = _uniform_slots(sizes)
        if s.shape != ppb.shape:
            raise ValueError(f"{s.size} symbols for {ppb.size} uniform sizes")
        if s.size and (s.min() < 0 or (s > last).any()):
            raise ValueError("a symbol is outside its uniform alphabet")
        cum = s * ppb
        self._push(cum, np.where(s == last, _TOTAL - cum, ppb))

    def _run(self):
        if self._result is not None:
            return self._result
        cums = np.concatenate(self._cums).tolist() if self._cums else []
        probs = np.concatenate(self._probs).tolist() if self._probs else []
        words: list[int] = []
        lower, rng = 0, _MASK64
        for cum, prob in zip(cums, probs):
            scale = rng >> PRECISION
            rng = scale * prob
            lower += scale * cum
            if lower > _MASK64:  # carry into the words already written
                lower &= _MASK64
                i = len(words) - 1
                while words[i] == _MASK32:
                    words[i] = 0
                    i -= 1
                words[i] += 1
            if rng < _WORD:
                words.append(lower >> 32)
                lower = (lower & _MASK32) << 32
                rng <<= 32
        self._result = (words, lower, rng, len(cums) == 0)
        return self._result

    def words(self) -> np.ndarray:
        """The sealed stream, as constriction's ``get_compressed()`` gives it (uint32)."""
        words, lower, rng, empty = self._run()
        if empty:
            return np.zeros(0, dtype=np.uint32)
        out = list(words)
        point = lower + _MASK32
        if point > _MASK64:
            point &= _MASK64
            i = len(out) - 1
            while out[i] == _MASK32:
                out[i] = 0
                i -= 1
            out[i] += 1
        out.append(point >> 32)
        if ((lower + rng) & _MASK64) >> 32 == point >> 32:
            out.append(0)
        return np.array(out, dtype=np.uint32)

    def interval(self) -> tuple[int, int, int]:
        """The exact final interval ``[low, low + width)`` of the stream as a binary fraction
        with ``bits`` bits after the point: every zero-padded bit string in it decodes to the
        encoded symbols, and no other does."""
        words, lower, rng, empty = self._run()
        if empty:
            return 0, 1, 0
        low = 0
        for w in words:
            low = (low << 32) | w
        return (low << 64) + lower, rng, 32 * (len(words) + 2)


class Decoder:
    """Reads symbols back from uint32 words, in the order they were encoded."""

    def __init__(self, words):
        w = np.asarray(words, dtype=np.uint32).reshape(-1).tolist()
        self._words = w
        self._pos = min(2, len(w))
        point = 0
        for x in w[:2]:
            point = (point << 32) | x
        self._point = point << (32 * (2 - len(w[:2])))
        self._lower = 0
        self._range = _MASK64

    def _step_state(self):
        return self._point, self._lower, self._range, self._pos

    def decode_rows(self, model: RowsModel) -> np.ndarray:
        return self._decode_cdfs(model.cdf_lists, len(model.cdf_lists))

    def decode_iid(self, model: IidModel, n: int) -> np.ndarray:
        return self._decode_cdfs(itertools.repeat(model.cdf_list, int(n)), int(n))

    def _decode_cdfs(self, cdfs, n: int) -> np.ndarray:
        """One symbol under each of ``n`` integer CDFs (each ending at the total)."""
        out = [0] * n
        point, lower, rng, pos = self._step_state()
        words, nwords = self._words, len(self._words)
        for k, cdf in enumerate(cdfs):
            scale = rng >> PRECISION
            q = ((point - lower) & _MASK64) // scale
            if q >= _TOTAL:
                raise InvalidData()
            s = bisect_right(cdf, q) - 1
            left = cdf[s]
            lower = (lower + scale * left) & _MASK64
            rng = scale * (cdf[s + 1] - left)
            if rng < _WORD:
                lower = (lower << 32) & _MASK64
                rng <<= 32
                point = ((point << 32) & _MASK64) | (words[pos] if pos < nwords else 0)
                pos += 1
            out[k] = s
        self._point, self._lower, self._range, self._pos = point, lower, rng, pos
        return np.array(out, dtype=np.int64)

    def decode_uniform(self, sizes) -> np.ndarray:
        ppbs, lasts = _uniform_slots(sizes)
        out = [0] * ppbs.size
        point, lower, rng, pos = self._step_state()
        words, nwords = self._words, len(self._words)
        for k, (ppb, last) in enumerate(zip(ppbs.tolist(), lasts.tolist())):
            scale = rng >> PRECISION
            q = ((point - lower) & _MASK64) // scale
            if q >= _TOTAL:
                raise InvalidData()
            s = q // ppb
            if s >= last:
                s = last
                left = last * ppb
                prob = _TOTAL - left
            else:
                left = s * ppb
                prob = ppb
            lower = (lower + scale * left) & _MASK64
            rng = scale * prob
            if rng < _WORD:
                lower = (lower << 32) & _MASK64
                rng <<= 32
                point = ((point << 32) & _MASK64) | (words[pos] if pos < nwords else 0)
                pos += 1
            out[k] = s
        self._point, self._lower, self._range, self._pos = point, lower, rng, pos
        return np.array(out, dtype=np.int64)
