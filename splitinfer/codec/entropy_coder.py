"""Range coding of one latent symbol vector under :class:`CdfTables`.

The range coder is constriction 0.5's (32-bit words, 64-bit state, 24-bit model precision),
run by one of two byte-identical backends (:mod:`.coders`: constriction itself where it
installs, a numpy/Python reimplementation everywhere else); ``coder=`` picks one.

Bitstream (details and rationale in ``docs/bitstream.md``):

1. Categorical part. Channels are grouped by their row length ``lengths[c] + 1`` (ascending;
   channels ascending within a group) and each group is coded with one batched
   ``constriction.stream.model.Categorical(perfect=False)`` call. Within a row the most
   probable entry (first argmax) is moved to index 0, the others keep their order. The integer
   frequency ``f`` (at ``precision`` bits) is passed as the float64 weight
   ``f * 2**(24 - precision) - 1``; constriction's fast quantizer at its 24-bit precision then
   reproduces exactly ``f / 2**precision`` for every entry (the weights sum to
   ``2**24 - row_length`` so its scale factor is exactly 1.0). Rows of length 1 (channels with
   no in-range symbol) are deterministic and not coded.
2. Escape part, for channels whose value was out of range, in channel order: first every
   escape header (one ``Uniform(64)`` symbol: ``32 * below + n``), then every mantissa (the
   ``n`` low bits of ``m``, as ``Uniform(2**(n-16))`` high part and ``Uniform(2**16)`` low part
   when ``n > 16``, else one ``Uniform(2**n)``; nothing when ``n == 0``).
3. The 32-bit words are written big-endian and the byte string is cut to the shortest
   prefix (or prefix plus one in its last byte) that still decodes to the same symbols when the
   decoder zero-pads it; a result never ends in a 0x00 byte.
"""
from __future__ import annotations

import contextlib
import math

import numpy as np

from . import coders
from .container import BitstreamError, CorruptPayload
from .tables import MAX_PRECISION, CdfTables, escape_magnitudes

__all__ = ["decode", "encode", "encoded_bits"]

_MODEL_PRECISION = 24  # the range coder's model precision
_HEADER_SIZE = 64
_CHUNK_BITS = 16
_INT32_MIN = -(2**31)
_INT32_MAX = 2**31 - 1
assert MAX_PRECISION <= _MODEL_PRECISION


class _Plan:
    """Per-tables data shared by encoder and decoder (built once, cached on the tables)."""

    def __init__(self, tables: CdfTables):
        f = tables.freqs.astype(np.int64)
        lengths = tables.lengths.astype(np.int64)
        self.low = tables.offsets.astype(np.int64)
        self.lengths = lengths
        self.high = self.low + lengths
        rl = lengths + 1
        width = f.shape[1]
        used = np.arange(width)[None, :] < rl[:, None]
        self.mode = (np.argmax(np.where(used, f, -1), axis=1).astype(np.int64)
                     if tables.channels else np.zeros(0, np.int64))
        scale = 1 << (_MODEL_PRECISION - tables.precision)
        self.groups = []  # (channels, 24-bit frequencies [k, L] in coded order)
        for L in np.unique(rl):
            if L < 2:
                continue
            chans = np.nonzero(rl == L)[0]
            k = np.arange(L)[None, :]
            m = self.mode[chans][:, None]
            cols = np.where(k == 0, m, np.where(k <= m, k - 1, k))
            self.groups.append((chans, f[chans[:, None], cols] * scale))
        self._models: dict[str, list] = {}
        # Generous upper bound on a valid payload: every symbol at its worst cost.
        worst = tables.precision + 6 + 31
        self.max_bytes = (tables.channels * worst + 7) // 8 + 8

    def models(self, backend) -> list:
        """(channels, model) per group, built once per backend."""
        out = self._models.get(backend.NAME)
        if out is None:
            out = [(chans, backend.rows_model(pmf)) for chans, pmf in self.groups]
            self._models[backend.NAME] = out
        return out


def _plan(tables: CdfTables) -> _Plan:
    plan = tables._cache.get("coder_plan")
    if plan is None:
        plan = _Plan(tables)
        tables._cache["coder_plan"] = plan
    return plan


# ---------------------------------------------------------------------------- encoding


def escape_symbols(values, low, high):
    below, m, n = escape_magnitudes(values, low, high)
    rem = m - (np.int64(1) << n)
    syms = list((below.astype(np.int64) * 32 + n).tolist())
    sizes = [_HEADER_SIZE] * len(syms)
    for r, nb in zip(rem.tolist(), n.tolist()):
        if nb > _CHUNK_BITS:
            syms += [r >> _CHUNK_BITS, r & ((1 << _CHUNK_BITS) - 1)]
            sizes += [1 << (nb - _CHUNK_BITS), 1 << _CHUNK_BITS]
        elif nb > 0:
            syms.append(r)
            sizes.append(1 << nb)
    return np.array(syms, dtype=np.int32), np.array(sizes, dtype=np.int32)


def _encoder(s: np.ndarray, plan: _Plan, backend):
    idx = s - plan.low
    inr = (idx >= 0) & (idx < plan.lengths)
    col = np.where(inr, idx, plan.lengths)
    mode = plan.mode
    coded = np.where(col == mode, 0, np.where(col < mode, col + 1, col)).astype(np.int32)
    enc = backend.Encoder()
    for chans, model in plan.models(backend):
        enc.encode_rows(coded[chans], model)
    esc = np.nonzero(~inr)[0]
    if esc.size:
        syms, sizes = escape_symbols(s[esc], plan.low[esc], plan.high[esc])
        enc.encode_uniform(syms, sizes)
    return enc


def _in_interval(interval):
    """Exact test "does this zero-padded byte string decode to the encoded symbols"."""
    low, width, bits = interval

    def fits(cand: bytes) -> bool:
        v, nbits = int.from_bytes(cand, "big"), 8 * len(cand)
        top = max(bits, nbits)
        v <<= top - nbits
        return (low << (top - bits)) <= v < ((low + width) << (top - bits))
    return fits


def _increment(prefix: bytes) -> bytes | None:
    k = len(prefix)
    if k == 0:
        return None
    v = int.from_bytes(prefix, "big") + 1
    if v >> (8 * k):
        return None
    return v.to_bytes(k, "big")


def encode(symbols, tables: CdfTables, coder: str | None = None) -> bytes:
    """Range-code one symbol vector ``[C]`` (any int32 values) into a byte-trimmed payload.

    ``coder``: ``constriction``, ``python`` or ``auto`` (see :mod:`.coders`); same bytes.
    """
    s = tables._check_symbols(symbols, ndim=1)
    plan = _plan(tables)
    backend = coders.get(coder)
    enc = _encoder(s, plan, backend)
    words = enc.words()
    if words.size == 0:
        return b""
    full = words.astype(">u4").tobytes()
    interval = enc.interval()
    decodes = _in_interval(interval) if interval is not None else None

    def decodes_by_trial(cand: bytes) -> bool:
        try:
            out = _decode_bytes(cand, plan, backend)
        except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
            raise
        except BaseException:  # noqa: BLE001 - any failure just means "not this candidate"
            return False
        return np.array_equal(out, s)

    decodes = decodes or decodes_by_trial

    def shortest_at(k: int) -> bytes | None:
        prefix = full[:k]
        if decodes(prefix):
            return prefix
        inc = _increment(prefix)
        if inc is not None and decodes(inc):
            return inc
        return None

    # Decodability is monotone in the length k (a k-byte solution is also a (k+1)-byte
    # candidate), so search down (or up) from the information-content estimate.
    n = len(full)
    k0 = min(n, max(0, math.ceil(tables.information_bits(s) / 8)))
    best = full if k0 >= n else shortest_at(k0)
    if best is None:
        best = full
        for k in range(k0 + 1, n):
            cand = shortest_at(k)
            if cand is not None:
                best = cand
                break
    else:
        for k in range(len(best) - 1, -1, -1):
            cand = shortest_at(k)
            if cand is None:
                break
            best = cand
    # Same value under zero padding; guarantees the canonical "no trailing 0x00" form.
    return best.rstrip(b"\x00")


def encoded_bits(symbols, tables: CdfTables, coder: str | None = None) -> int:
    """``8 * len(encode(symbols, tables))``."""
    return 8 * len(encode(symbols, tables, coder))


# ---------------------------------------------------------------------------- decoding


@contextlib.contextmanager
def rejected_as_corrupt(nbytes: int):
    """Re-raise anything the range decoder throws on bad data (including constriction's
    AssertionError and pyo3's PanicException, a BaseException) as :class:`CorruptPayload`;
    BitstreamErrors and interrupts pass through."""
    try:
        yield
    except BitstreamError:
        raise
    except (KeyboardInterrupt, SystemExit, GeneratorExit, MemoryError):
        raise
    except BaseException as e:  # noqa: BLE001 - includes pyo3 PanicException
        raise CorruptPayload(f"range decoder rejected the {nbytes}-byte payload: "
                             f"{type(e).__name__}: {e}") from e


def decode_escapes(dec, low: np.ndarray, high: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Read the escape payloads of ``len(low)`` out-of-range values (headers, then mantissas).

    ``low``/``high`` bound each value's in-range window; ``where`` names the values in errors.
    """
    headers = dec.decode_uniform(np.full(low.size, _HEADER_SIZE, np.int32)).astype(np.int64)
    below = headers >= 32
    n = headers & 31
    sizes = []
    for nb in n.tolist():
        if nb > _CHUNK_BITS:
            sizes += [1 << (nb - _CHUNK_BITS), 1 << _CHUNK_BITS]
        elif nb > 0:
            sizes.append(1 << nb)
    chunks = dec.decode_uniform(np.array(sizes, dtype=np.int32)).tolist() if sizes else []
    rem = []
    pos = 0
    for nb in n.tolist():
        if nb > _CHUNK_BITS:
            rem.append((chunks[pos] << _CHUNK_BITS) | chunks[pos + 1])
            pos += 2
        elif nb > 0:
            rem.append(chunks[pos])
            pos += 1
        else:
            rem.append(0)
    m = (np.int64(1) << n) + np.array(rem, dtype=np.int64)
    v = np.where(below, low - m, high - 1 + m)
    bad = (v < _INT32_MIN) | (v > _INT32_MAX)
    if bad.any():
        raise CorruptPayload(f"escape value at {int(where[np.argmax(bad)])} decodes to "
                             f"{int(v[bad][0])}, outside the int32 range")
    return v


def payload_words(data: bytes) -> np.ndarray:
    """Payload bytes -> uint32 words, zero-padded to a whole word (big-endian)."""
    pad = (-len(data)) % 4
    return np.frombuffer(data + b"\x00" * pad, dtype=">u4").astype(np.uint32)


def _decode_bytes(data: bytes, plan: _Plan, backend=None) -> np.ndarray:
    backend = backend or coders.get()
    dec = backend.Decoder(payload_words(data))
    C = plan.low.shape[0]
    coded = np.zeros(C, dtype=np.int64)
    for chans, model in plan.models(backend):
        coded[chans] = dec.decode_rows(model)
    mode = plan.mode
    col = np.where(coded == 0, mode, np.where(coded <= mode, coded - 1, coded))
    values = plan.low + col
    esc = np.nonzero(col == plan.lengths)[0]
    if esc.size:
        values[esc] = decode_escapes(dec, plan.low[esc], plan.high[esc], esc)
    return values


def decode(data, tables: CdfTables, coder: str | None = None) -> np.ndarray:
    """Inverse of :func:`encode`: payload bytes -> int32 symbols ``[C]`` (either coder reads
    what either wrote).

    Raises :class:`CorruptPayload` where corruption is detectable (over-long payload,
    non-canonical trailing 0x00, data the range decoder rejects, escape values outside int32).
    Most corruption is *not* detectable here; the container's CRC-32 covers that.
    """
    if isinstance(data, str) or not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"decode expects bytes, got {type(data).__name__}")
    data = bytes(data)
    plan = _plan(tables)
    backend = coders.get(coder)
    if len(data) > plan.max_bytes:
        raise CorruptPayload(f"payload of {len(data)} bytes is longer than any valid payload "
                             f"for {tables.channels} channels (at most {plan.max_bytes})")
    if data.endswith(b"\x00"):
        raise CorruptPayload(f"payload of {len(data)} bytes ends in 0x00; a canonical "
                             "byte-trimmed payload never does")
    with rejected_as_corrupt(len(data)):
        out = _decode_bytes(data, plan, backend)
    return out.astype(np.int32)
