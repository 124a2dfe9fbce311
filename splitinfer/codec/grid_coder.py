"""Range coding of a latent *tensor* ``[C, n]`` (n positions per channel, e.g. an image latent
``y_hat`` of shape (C, h, w) flattened), channel by channel under one :class:`CdfTables` row per
channel: the fully factorized entropy model of an image codec.

Each channel's n symbols are coded with one fixed categorical model (constriction's
``Categorical(perfect=False)`` with the same exact-weight rule as :mod:`.entropy_coder`, so the
coded probabilities are exactly ``f / 2**precision``; either backend of :mod:`.coders`); out-of-range values take the ESCAPE entry
and their escape payloads follow all channels, in channel-major order. The 32-bit words are
written big-endian with trailing 0x00 bytes removed (the decoder zero-pads). Layout in
``docs/bitstream.md``.
"""
from __future__ import annotations

import numpy as np

from . import coders
from .container import CorruptPayload
from .entropy_coder import (decode_escapes, escape_symbols, payload_words,
                            rejected_as_corrupt)
from .tables import CdfTables

__all__ = ["decode_grid", "encode_grid"]

_MODEL_PRECISION = 24


def _models(tables: CdfTables, backend) -> list:
    """One fixed categorical model per channel (None for a channel with no in-range symbol)."""
    key = ("grid_models", backend.NAME)
    models = tables._cache.get(key)
    if models is None:
        scale = 1 << (_MODEL_PRECISION - tables.precision)
        models = []
        for c in range(tables.channels):
            L = int(tables.lengths[c]) + 1
            models.append(None if L < 2 else
                          backend.iid_model(tables.freqs[c, :L].astype(np.int64) * scale))
        tables._cache[key] = models
    return models


def _columns(symbols: np.ndarray, tables: CdfTables):
    low = tables.offsets.astype(np.int64)[:, None]
    length = tables.lengths.astype(np.int64)[:, None]
    idx = symbols.astype(np.int64) - low
    inr = (idx >= 0) & (idx < length)
    return np.where(inr, idx, length).astype(np.int32), inr


def encode_grid(symbols, tables: CdfTables, coder: str | None = None) -> bytes:
    """Range-code ``symbols`` [C, n] (any int32 values) into bytes (``coder``: see
    :mod:`.coders`; same bytes either way)."""
    s = np.asarray(symbols)
    if s.ndim != 2 or s.shape[0] != tables.channels:
        raise ValueError(f"symbols must be [C={tables.channels}, n], got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got {s.dtype}")
    backend = coders.get(coder)
    cols, inr = _columns(s, tables)
    enc = backend.Encoder()
    for c, model in enumerate(_models(tables, backend)):
        if model is not None:
            enc.encode_iid(cols[c], model)
    esc_c, esc_i = np.nonzero(~inr)
    if esc_c.size:
        low = tables.offsets.astype(np.int64)[esc_c]
        syms, sizes = escape_symbols(s[esc_c, esc_i], low, low + tables.lengths[esc_c])
        enc.encode_uniform(syms, sizes)
    return enc.words().astype(">u4").tobytes().rstrip(b"\x00")


def decode_grid(data, tables: CdfTables, n: int, coder: str | None = None) -> np.ndarray:
    """Inverse of :func:`encode_grid`: bytes -> int32 symbols [C, n].

    Raises :class:`CorruptPayload` for data the range decoder rejects, a payload longer than any
    valid one, or escape values outside int32; the container's CRC-32 catches the rest.
    """
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode_grid expects bytes, got {type(data).__name__}")
    data = bytes(data)
    n = int(n)
    backend = coders.get(coder)
    C = tables.channels
    max_bytes = (C * n * (tables.precision + 6 + 31) + 7) // 8 + 8
    if len(data) > max_bytes:
        raise CorruptPayload(f"payload of {len(data)} bytes is longer than any valid payload "
                             f"for {C} x {n} symbols (at most {max_bytes})")
    with rejected_as_corrupt(len(data)):
        dec = backend.Decoder(payload_words(data))
        low = tables.offsets.astype(np.int64)
        cols = np.zeros((C, n), dtype=np.int64)
        for c, model in enumerate(_models(tables, backend)):
            if model is not None:
                cols[c] = dec.decode_iid(model, n)
        length = tables.lengths.astype(np.int64)
        values = low[:, None] + cols
        esc_c, esc_i = np.nonzero(cols == length[:, None])
        if esc_c.size:
            values[esc_c, esc_i] = decode_escapes(dec, low[esc_c], low[esc_c] + length[esc_c],
                                                  esc_c * n + esc_i)
    return values.astype(np.int32)
