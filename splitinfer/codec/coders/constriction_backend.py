"""The range coder of constriction 0.5 (Rust, fast): ``stream.queue.RangeEncoder`` /
``RangeDecoder`` with ``Categorical(perfect=False)`` and ``Uniform`` models.

Categorical models come in as 24-bit integer frequencies ``f`` and are handed to constriction as
the float64 weights ``f - 1``: its fast quantizer then reproduces exactly ``f / 2**24`` for
every entry (``docs/bitstream.md`` section 2.2).
"""
from __future__ import annotations

import constriction
import numpy as np

NAME = "constriction"
_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_UNIFORM = constriction.stream.model.Uniform()


def _weights(pmf: np.ndarray) -> np.ndarray:
    w = np.ascontiguousarray(np.asarray(pmf, dtype=np.float64) - 1.0)
    w.setflags(write=False)
    return w


def rows_model(pmf: np.ndarray) -> np.ndarray:
    """One categorical model per row of ``pmf`` [k, L], each coding one symbol."""
    return _weights(pmf)


def iid_model(pmf: np.ndarray):
    """One categorical model (``pmf`` [L]) for many symbols."""
    return constriction.stream.model.Categorical(_weights(pmf), perfect=False)


class Encoder:
    def __init__(self):
        self._enc = constriction.stream.queue.RangeEncoder()

    def encode_rows(self, symbols, model: np.ndarray) -> None:
        self._enc.encode(np.asarray(symbols, dtype=np.int32), _CATEGORICAL, model)

    def encode_iid(self, symbols, model) -> None:
        self._enc.encode(np.asarray(symbols, dtype=np.int32), model)

    def encode_uniform(self, symbols, sizes) -> None:
        self._enc.encode(np.asarray(symbols, dtype=np.int32), _UNIFORM,
                         np.asarray(sizes, dtype=np.int32))

    def words(self) -> np.ndarray:
        return np.asarray(self._enc.get_compressed(), dtype=np.uint32)

    def interval(self):
        """Not exposed by constriction: the caller trims by trial decoding instead."""
        return None


class Decoder:
    def __init__(self, words):
        self._dec = constriction.stream.queue.RangeDecoder(np.asarray(words, dtype=np.uint32))

    def decode_rows(self, model: np.ndarray) -> np.ndarray:
        return np.asarray(self._dec.decode(_CATEGORICAL, model), dtype=np.int64)

    def decode_iid(self, model, n: int) -> np.ndarray:
        return np.asarray(self._dec.decode(model, int(n)), dtype=np.int64)

    def decode_uniform(self, sizes) -> np.ndarray:
        return np.asarray(self._dec.decode(_UNIFORM, np.asarray(sizes, dtype=np.int32)),
                          dtype=np.int64)
