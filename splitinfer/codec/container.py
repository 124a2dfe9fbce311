"""The versioned SPLT bitstream container (byte layout: ``docs/bitstream.md``).

One format for every payload kind::

    magic "SPLT" | version u8 | kind u8 | model id (u8 len + UTF-8) | shape (u8 ndim + varints)
    | payload count u8 | count x (length varint | CRC-32 u32 BE | payload bytes)

Varints are unsigned LEB128, minimal length. Parsing raises a :class:`BitstreamError` subclass
(a ``ValueError``) for every malformed input, never anything else.
"""
from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = [
    "BadMagic",
    "BitstreamError",
    "Container",
    "CorruptPayload",
    "FORMAT_VERSION",
    "InvalidHeader",
    "MAGIC",
    "MAX_DIM",
    "MAX_NDIM",
    "MAX_PAYLOADS",
    "MAX_PAYLOAD_BYTES",
    "PayloadKind",
    "TrailingData",
    "TruncatedBitstream",
    "UnknownModel",
    "UnsupportedVersion",
    "check_model",
    "check_shape",
    "decode_varint",
    "encode_varint",
]

MAGIC = b"SPLT"
FORMAT_VERSION = 1
MAX_NDIM = 8
MAX_DIM = 2**24
MAX_PAYLOADS = 255
MAX_MODEL_ID_BYTES = 255
MAX_PAYLOAD_BYTES = 2**31
_MAX_VARINT_BYTES = 10  # enough for any value < 2**70; larger is rejected


# ---------------------------------------------------------------------------- errors


class BitstreamError(ValueError):
    """Base class of every error raised while parsing or decoding a bitstream."""


class TruncatedBitstream(BitstreamError):
    """The data ends before the structure it announces is complete."""


class BadMagic(BitstreamError):
    """The data does not start with b"SPLT"."""


class UnsupportedVersion(BitstreamError):
    """The format version byte is not one this implementation reads."""


class InvalidHeader(BitstreamError):
    """A header field holds an impossible value (unknown kind, absurd shape, bad UTF-8, ...)."""


class CorruptPayload(BitstreamError):
    """A payload fails its CRC-32 or cannot be entropy-decoded."""


class TrailingData(BitstreamError):
    """Extra bytes follow the last payload."""


class UnknownModel(BitstreamError):
    """The container names a model id the receiver does not have."""


class PayloadKind(enum.IntEnum):
    POINTCLOUD_LATENT = 1
    IMAGE_LATENT = 2
    IMAGE_SIDE_INFO = 3
    POINTCLOUD_RAW_F32 = 4   # cloud-only input: points (N, 3) as float32 little-endian, row-major
    POINTCLOUD_DRACO = 5     # cloud-only input: one Draco point-cloud buffer of N points


# ---------------------------------------------------------------------------- varints


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 (7 bits per byte, least significant group first, minimal length)."""
    value = int(value)
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def decode_varint(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """Read a minimal unsigned LEB128 at ``pos``; return (value, new_pos)."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(data):
            raise TruncatedBitstream(
                f"{what}: data ends at byte {pos} inside a varint that starts at byte {start} "
                f"(total length {len(data)})")
        b = data[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            if b == 0 and pos - start > 1:
                raise InvalidHeader(f"{what}: non-minimal varint at byte {start} "
                                    f"(trailing 0x00 group)")
            return value, pos
        if pos - start >= _MAX_VARINT_BYTES:
            raise InvalidHeader(f"{what}: varint at byte {start} is longer than "
                                f"{_MAX_VARINT_BYTES} bytes")


# ---------------------------------------------------------------------------- container


@dataclass(frozen=True)
class Container:
    """One SPLT container: header fields plus one or more payloads.

    ``payloads`` may be given as a single ``bytes`` object (wrapped into a 1-tuple).
    """

    model_id: str
    kind: PayloadKind
    shape: tuple[int, ...]
    payloads: tuple[bytes, ...]

    def __post_init__(self):
        kind = self.kind
        try:
            kind = PayloadKind(int(kind))
        except (ValueError, TypeError):
            raise ValueError(f"unknown payload kind {self.kind!r}; expected one of "
                             f"{[int(k) for k in PayloadKind]}") from None
        payloads = self.payloads
        if isinstance(payloads, (bytes, bytearray, memoryview)):
            payloads = (payloads,)
        payloads = tuple(bytes(p) for p in payloads)
        shape = tuple(int(d) for d in self.shape)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "payloads", payloads)
        object.__setattr__(self, "shape", shape)
        if not isinstance(self.model_id, str):
            raise TypeError(f"model_id must be str, got {type(self.model_id).__name__}")
        mid = self.model_id.encode("utf-8")
        if not 1 <= len(mid) <= MAX_MODEL_ID_BYTES:
            raise ValueError(f"model_id must be 1..{MAX_MODEL_ID_BYTES} UTF-8 bytes, "
                             f"got {len(mid)}")
        if len(shape) > MAX_NDIM:
            raise ValueError(f"shape has {len(shape)} dims, at most {MAX_NDIM} allowed")
        for d in shape:
            if not 0 <= d <= MAX_DIM:
                raise ValueError(f"shape dim {d} outside [0, {MAX_DIM}]")
        if not 1 <= len(payloads) <= MAX_PAYLOADS:
            raise ValueError(f"need 1..{MAX_PAYLOADS} payloads, got {len(payloads)}")
        for p in payloads:
            if len(p) > MAX_PAYLOAD_BYTES:
                raise ValueError(f"payload of {len(p)} bytes exceeds {MAX_PAYLOAD_BYTES}")

    @property
    def payload(self) -> bytes:
        """The payload of a single-payload container."""
        if len(self.payloads) != 1:
            raise ValueError(f"container holds {len(self.payloads)} payloads; use .payloads")
        return self.payloads[0]

    @property
    def payload_size(self) -> int:
        """Total entropy-coded payload bytes."""
        return sum(len(p) for p in self.payloads)

    @property
    def header_size(self) -> int:
        """Container overhead in bytes: everything in :meth:`pack` except the payload bytes."""
        mid = self.model_id.encode("utf-8")
        n = len(MAGIC) + 1 + 1 + 1 + len(mid) + 1
        n += sum(len(encode_varint(d)) for d in self.shape)
        n += 1
        n += sum(len(encode_varint(len(p))) + 4 for p in self.payloads)
        return n

    def pack(self) -> bytes:
        out = bytearray(MAGIC)
        out.append(FORMAT_VERSION)
        out.append(int(self.kind))
        mid = self.model_id.encode("utf-8")
        out.append(len(mid))
        out += mid
        out.append(len(self.shape))
        for d in self.shape:
            out += encode_varint(d)
        out.append(len(self.payloads))
        for p in self.payloads:
            out += encode_varint(len(p))
            out += zlib.crc32(p).to_bytes(4, "big")
            out += p
        return bytes(out)

    @classmethod
    def unpack(cls, data) -> "Container":
        """Parse ``data``; raises a :class:`BitstreamError` subclass on any malformed input."""
        try:
            data = bytes(data)
        except TypeError:
            raise TypeError(f"expected bytes, got {type(data).__name__}") from None
        n = len(data)
        head = data[:len(MAGIC)]
        if head != MAGIC[:len(head)]:
            raise BadMagic(f"expected magic {MAGIC!r} at byte 0, found {data[:4]!r}")
        if n < len(MAGIC):
            raise TruncatedBitstream(f"data ends after {n} bytes, inside the 4-byte magic")
        pos = len(MAGIC)

        def u8(what: str) -> int:
            nonlocal pos
            if pos >= n:
                raise TruncatedBitstream(f"{what}: data ends at byte {pos}, expected 1 more byte")
            v = data[pos]
            pos += 1
            return v

        version = u8("format version")
        if version != FORMAT_VERSION:
            raise UnsupportedVersion(f"format version {version} at byte 4 is not supported; "
                                     f"this reader supports version {FORMAT_VERSION}")
        kind_byte = u8("payload kind")
        try:
            kind = PayloadKind(kind_byte)
        except ValueError:
            raise InvalidHeader(f"unknown payload kind {kind_byte} at byte 5; expected one of "
                                f"{[int(k) for k in PayloadKind]}") from None
        mid_len = u8("model id length")
        if mid_len == 0:
            raise InvalidHeader(f"model id length at byte {pos - 1} is 0; expected 1..255")
        if n - pos < mid_len:
            raise TruncatedBitstream(f"model id: data ends at byte {n}, expected {mid_len} bytes "
                                     f"from byte {pos}")
        try:
            model_id = data[pos:pos + mid_len].decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidHeader(f"model id at byte {pos} is not valid UTF-8: {e.reason}") from None
        pos += mid_len
        ndim = u8("shape ndim")
        if ndim > MAX_NDIM:
            raise InvalidHeader(f"shape ndim {ndim} at byte {pos - 1} exceeds {MAX_NDIM}")
        shape = []
        for i in range(ndim):
            at = pos
            d, pos = decode_varint(data, pos, f"shape dim {i}")
            if d > MAX_DIM:
                raise InvalidHeader(f"shape dim {i} = {d} at byte {at} exceeds {MAX_DIM}")
            shape.append(d)
        count = u8("payload count")
        if count == 0:
            raise InvalidHeader(f"payload count at byte {pos - 1} is 0; expected 1..255")
        payloads = []
        for i in range(count):
            at = pos
            length, pos = decode_varint(data, pos, f"payload {i} length")
            if length > MAX_PAYLOAD_BYTES:
                raise InvalidHeader(f"payload {i} length {length} at byte {at} exceeds "
                                    f"{MAX_PAYLOAD_BYTES}")
            if n - pos < 4:
                raise TruncatedBitstream(f"payload {i} CRC-32: data ends at byte {n}, expected "
                                         f"4 bytes from byte {pos}")
            crc = int.from_bytes(data[pos:pos + 4], "big")
            pos += 4
            if n - pos < length:
                raise TruncatedBitstream(f"payload {i}: data ends at byte {n}, expected {length} "
                                         f"bytes from byte {pos} ({length - (n - pos)} missing)")
            p = data[pos:pos + length]
            actual = zlib.crc32(p)
            if actual != crc:
                raise CorruptPayload(f"payload {i} ({length} bytes at byte {pos}): CRC-32 "
                                     f"mismatch, header says {crc:08x}, data gives {actual:08x}")
            pos += length
            payloads.append(p)
        if pos != n:
            raise TrailingData(f"{n - pos} unexpected bytes after the end of the container at "
                               f"byte {pos} (total length {n})")
        return cls(model_id=model_id, kind=kind, shape=tuple(shape), payloads=tuple(payloads))


def check_model(container: Container, known_ids: Iterable[str]) -> Container:
    """Raise :class:`UnknownModel` unless ``container.model_id`` is in ``known_ids``."""
    known = known_ids if isinstance(known_ids, (set, frozenset, dict)) else set(known_ids)
    if container.model_id not in known:
        raise UnknownModel(f"unknown model id {container.model_id!r}; this receiver knows "
                           f"{sorted(known)!r}")
    return container


def check_shape(container: Container, expected: Sequence[int]) -> Container:
    """Raise :class:`InvalidHeader` unless ``container.shape`` equals ``expected``."""
    if tuple(container.shape) != tuple(int(d) for d in expected):
        raise InvalidHeader(f"shape {container.shape} does not match the model's "
                            f"{tuple(expected)}")
    return container
