"""Range coding of a latent *tensor* ``[C, n]`` (n positions per channel, e.g. an image latent
``y_hat`` of shape (C, h, w) flattened), channel by channel under one :class:`CdfTables` row per
channel: the fully factorized entropy model of an image codec.

Each channel's n symbols are coded with one fixed ``Categorical(perfect=False)`` model built from
the row's integer frequencies with the same exact-weight rule as :mod:`.entropy_coder` (so the
coded probabilities are exactly ``f / 2**precision``); out-of-range values take the ESCAPE entry
and their escape payloads follow all channels, in channel-major order. The 32-bit words are
written big-endian with trailing 0x00 bytes removed (the decoder zero-pads). Layout in
``docs/bitstream.md``.
"""
from __future__ import annotations

import constriction
import numpy as np

from .container import CorruptPayload
from .entropy_coder import decode_escapes, escape_symbols, rejected_as_corrupt
from .tables import CdfTables

__all__ = ["decode_grid", "encode_grid"]

_MODEL_PRECISION = 24
_UNIFORM = constriction.stream.model.Uniform()


def _models(tables: CdfTables) -> list:
    """One fixed categorical model per channel (None for a channel with no in-range symbol)."""
    models = tables._cache.get("grid_models")
    if models is None:
        scale = float(1 << (_MODEL_PRECISION - tables.precision))
        models = []
        for c in range(tables.channels):
            L = int(tables.lengths[c]) + 1
            if L < 2:
                models.append(None)
                continue
            w = tables.freqs[c, :L].astype(np.float64) * scale - 1.0
            models.append(constriction.stream.model.Categorical(w, perfect=False))
        tables._cache["grid_models"] = models
    return models


def _columns(symbols: np.ndarray, tables: CdfTables):
    low = tables.offsets.astype(np.int64)[:, None]
    length = tables.lengths.astype(np.int64)[:, None]
    idx = symbols.astype(np.int64) - low
    inr = (idx >= 0) & (idx < length)
    return np.where(inr, idx, length).astype(np.int32), inr


def encode_grid(symbols, tables: CdfTables) -> bytes:
    """Range-code ``symbols`` [C, n] (any int32 values) into bytes."""
    s = np.asarray(symbols)
    if s.ndim != 2 or s.shape[0] != tables.channels:
        raise ValueError(f"symbols must be [C={tables.channels}, n], got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got {s.dtype}")
    cols, inr = _columns(s, tables)
    enc = constriction.stream.queue.RangeEncoder()
    for c, model in enumerate(_models(tables)):
        if model is not None:
            enc.encode(cols[c], model)
    esc_c, esc_i = np.nonzero(~inr)
    if esc_c.size:
        low = tables.offsets.astype(np.int64)[esc_c]
        syms, sizes = escape_symbols(s[esc_c, esc_i], low, low + tables.lengths[esc_c])
        enc.encode(syms, _UNIFORM, sizes)
    return enc.get_compressed().astype(">u4").tobytes().rstrip(b"\x00")


def decode_grid(data, tables: CdfTables, n: int) -> np.ndarray:
    """Inverse of :func:`encode_grid`: bytes -> int32 symbols [C, n].

    Raises :class:`CorruptPayload` for data the range decoder rejects, a payload longer than any
    valid one, or escape values outside int32; the container's CRC-32 catches the rest.
    """
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_grid expects bytes, got {type(data).__name__}")
    data = bytes(data)
    n = int(n)
    C = tables.channels
    max_bytes = (C * n * (tables.precision + 6 + 31) + 7) // 8 + 8
    if len(data) > max_bytes:
        raise CorruptPayload(f"payload of {len(data)} bytes is longer than any valid payload "
                             f"for {C} x {n} symbols (at most {max_bytes})")
    with rejected_as_corrupt(len(data)):
        words = np.frombuffer(data + b"\x00" * ((-len(data)) % 4), dtype=">u4").astype(np.uint32)
        dec = constriction.stream.queue.RangeDecoder(words)
        low = tables.offsets.astype(np.int64)
        cols = np.zeros((C, n), dtype=np.int64)
        for c, model in enumerate(_models(tables)):
            if model is not None:
                cols[c] = dec.decode(model, n)
        length = tables.lengths.astype(np.int64)
        values = low[:, None] + cols
        esc_c, esc_i = np.nonzero(cols == length[:, None])
        if esc_c.size:
            values[esc_c, esc_i] = decode_escapes(dec, low[esc_c], low[esc_c] + length[esc_c],
                                                  esc_c * n + esc_i)
    return values.astype(np.int32)
