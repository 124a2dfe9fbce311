"""The versioned SPLT bitstream container (byte layout: ``docs/bitstream.md``).

Version 2 (written)::

    magic "SP" | version u8 = 2 | kind u8 | model digest (8 bytes) | ndim u8 | shape (varints)
    | payload count u8 | count x payload length (varint) | payloads | CRC-32 u32 BE

The CRC-32 covers every byte before it, header included. The model digest is the first
:data:`DIGEST_BYTES` bytes of the model's sha256 digest (``ModelConfig.digest``): a container is
bound to the exact model files that made it, and a receiver holding other files raises
:class:`ModelMismatch`.

Version 1 (read only, for one release: containers written before version 2)::

    magic "SPLT" | version u8 = 1 | kind u8 | model id (u8 len + UTF-8) | shape (u8 ndim + varints)
    | payload count u8 | count x (length varint | CRC-32 u32 BE | payload bytes)

Varints are unsigned LEB128, minimal length. Parsing raises a :class:`BitstreamError` subclass
(a ``ValueError``) for every malformed input, never anything else.
"""
from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass
from typing import Sequence

__all__ = [
    "BadMagic",
    "BitstreamError",
    "Container",
    "CorruptPayload",
    "DIGEST_BYTES",
    "FORMAT_VERSION",
    "InvalidHeader",
    "MAGIC",
    "MAGIC_V1",
    "MAX_DIM",
    "MAX_NDIM",
    "MAX_PAYLOADS",
    "MAX_PAYLOAD_BYTES",
    "ModelMismatch",
    "PayloadKind",
    "SymbolOutOfRange",
    "TrailingData",
    "TruncatedBitstream",
    "UnknownModel",
    "UnsupportedVersion",
    "check_model",
    "check_shape",
    "decode_varint",
    "encode_varint",
    "short_digest",
]

MAGIC = b"SP"
MAGIC_V1 = b"SPLT"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
#: Bytes of the model's sha256 digest a container carries (16 hex digits): see docs/bitstream.md
#: section 1.2 for the choice.
DIGEST_BYTES = 8
MAX_NDIM = 8
MAX_DIM = 2**24
MAX_PAYLOADS = 255
MAX_MODEL_ID_BYTES = 255
MAX_PAYLOAD_BYTES = 2**31
_MAX_VARINT_BYTES = 10  # enough for any value < 2**70; larger is rejected
_CRC_BYTES = 4


# ---------------------------------------------------------------------------- errors


class BitstreamError(ValueError):
    """Base class of every error raised while parsing or decoding a bitstream."""


class TruncatedBitstream(BitstreamError):
    """The data ends before the structure it announces is complete."""


class BadMagic(BitstreamError):
    """The data does not start with b"SP"."""


class UnsupportedVersion(BitstreamError):
    """The format version byte is not one this implementation reads."""


class InvalidHeader(BitstreamError):
    """A header field holds an impossible value (unknown kind, absurd shape, bad UTF-8, ...)."""


class CorruptPayload(BitstreamError):
    """The data fails its CRC-32 or a payload cannot be entropy-decoded."""


class TrailingData(BitstreamError):
    """Extra bytes follow the end of the container."""


class UnknownModel(BitstreamError):
    """The container names a model (id or digest) the receiver does not have."""


class ModelMismatch(BitstreamError):
    """The container was made by other model files than the receiver's model of that name."""


class SymbolOutOfRange(BitstreamError):
    """Decoded symbols lie far outside anything the model's encoder and tables produce."""


class PayloadKind(enum.IntEnum):
    POINTCLOUD_LATENT = 1
    IMAGE_LATENT = 2
    IMAGE_SIDE_INFO = 3
    POINTCLOUD_RAW_F32 = 4   # cloud-only input: points (N, 3) as float32 little-endian, row-major
    POINTCLOUD_DRACO = 5     # cloud-only input: one Draco point-cloud buffer of N points


def short_digest(digest: str | bytes) -> str:
    """The digest as a container carries it: the first DIGEST_BYTES bytes, in hex."""
    if isinstance(digest, (bytes, bytearray)):
        return bytes(digest[:DIGEST_BYTES]).hex()
    return str(digest)[:2 * DIGEST_BYTES].lower()


def _digest_bytes(digest) -> bytes:
    if isinstance(digest, str):
        try:
            digest = bytes.fromhex(digest[:2 * DIGEST_BYTES])
        except ValueError:
            raise ValueError(f"model digest must be hex, got {digest!r}") from None
    if not isinstance(digest, (bytes, bytearray, memoryview)):
        raise TypeError(f"model digest must be hex str or bytes, got {type(digest).__name__}")
    digest = bytes(digest)[:DIGEST_BYTES]
    if len(digest) != DIGEST_BYTES:
        raise ValueError(f"model digest must hold at least {DIGEST_BYTES} bytes, got {len(digest)}")
    return digest


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
    """One SPLT container: the model digest, payload kind, shape and one or more payloads.

    ``digest`` is the model's digest (hex str of at least 16 digits, or bytes; kept as its first
    DIGEST_BYTES bytes). ``payloads`` may be a single ``bytes`` object (wrapped into a 1-tuple).
    A container parsed from version-1 data has ``version == 1``, ``digest is None`` and the model
    name in ``model_id``; it cannot be packed again (only version 2 is written).
    """

    digest: bytes | None
    kind: PayloadKind
    shape: tuple[int, ...]
    payloads: tuple[bytes, ...]
    model_id: str | None = None
    version: int = FORMAT_VERSION

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
        if self.version == 1:
            if not isinstance(self.model_id, str) or not 1 <= len(self.model_id.encode()) <= MAX_MODEL_ID_BYTES:
                raise ValueError(f"a version-1 container needs a model_id of 1..{MAX_MODEL_ID_BYTES} "
                                 f"UTF-8 bytes, got {self.model_id!r}")
        elif self.version == FORMAT_VERSION:
            object.__setattr__(self, "digest", _digest_bytes(self.digest))
        else:
            raise ValueError(f"container version must be one of {READ_VERSIONS}, got {self.version}")
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
    def digest_hex(self) -> str | None:
        """The carried model digest in hex (16 digits), None for version 1."""
        return None if self.digest is None else self.digest.hex()

    @property
    def header_size(self) -> int:
        """Container overhead in bytes: everything in the packed form but the payload bytes."""
        dims = sum(len(encode_varint(d)) for d in self.shape)
        lengths = sum(len(encode_varint(len(p))) for p in self.payloads)
        if self.version == 1:
            return (len(MAGIC_V1) + 3 + len(self.model_id.encode()) + 1 + dims + 1
                    + lengths + _CRC_BYTES * len(self.payloads))
        return len(MAGIC) + 2 + DIGEST_BYTES + 1 + dims + 1 + lengths + _CRC_BYTES

    def pack(self) -> bytes:
        """The version-2 bytes of this container."""
        if self.version != FORMAT_VERSION:
            raise ValueError(f"only version {FORMAT_VERSION} containers are written; this one "
                             f"was read from version {self.version} data")
        out = bytearray(MAGIC)
        out.append(FORMAT_VERSION)
        out.append(int(self.kind))
        out += self.digest
        out.append(len(self.shape))
        for d in self.shape:
            out += encode_varint(d)
        out.append(len(self.payloads))
        for p in self.payloads:
            out += encode_varint(len(p))
        for p in self.payloads:
            out += p
        out += zlib.crc32(out).to_bytes(_CRC_BYTES, "big")
        return bytes(out)

    @classmethod
    def unpack(cls, data) -> "Container":
        """Parse ``data`` (version 2, or version 1); raises a :class:`BitstreamError` subclass
        on any malformed input."""
        try:
            data = bytes(data)
        except TypeError:
            raise TypeError(f"expected bytes, got {type(data).__name__}") from None
        if data[:2] != MAGIC[:len(data[:2])]:
            raise BadMagic(f"expected magic {MAGIC!r} at byte 0, found {data[:2]!r}")
        if len(data) < 3:
            raise TruncatedBitstream(f"data ends after {len(data)} bytes, inside the 2-byte magic "
                                     "and the version byte")
        if data[2] == FORMAT_VERSION:
            return _Reader(data, 3).v2()
        head = data[:len(MAGIC_V1)]
        if head == MAGIC_V1:
            return _Reader(data, len(MAGIC_V1)).v1()
        if head == MAGIC_V1[:len(head)]:
            raise TruncatedBitstream(f"data ends after {len(data)} bytes, inside the version-1 "
                                     f"magic {MAGIC_V1!r}")
        raise UnsupportedVersion(f"format version {data[2]} at byte 2 is not supported; this "
                                 f"reader supports versions {READ_VERSIONS} (version 1 starts "
                                 f"with {MAGIC_V1!r})")


class _Reader:
    """A cursor over container bytes that raises the typed errors."""

    def __init__(self, data: bytes, pos: int):
        self.data, self.pos, self.n = data, pos, len(data)

    def u8(self, what: str) -> int:
        if self.pos >= self.n:
            raise TruncatedBitstream(f"{what}: data ends at byte {self.pos}, expected 1 more byte")
        v = self.data[self.pos]
        self.pos += 1
        return v

    def take(self, k: int, what: str) -> bytes:
        if self.n - self.pos < k:
            raise TruncatedBitstream(f"{what}: data ends at byte {self.n}, expected {k} bytes "
                                     f"from byte {self.pos} ({k - (self.n - self.pos)} missing)")
        b = self.data[self.pos:self.pos + k]
        self.pos += k
        return b

    def kind(self) -> PayloadKind:
        b = self.u8("payload kind")
        try:
            return PayloadKind(b)
        except ValueError:
            raise InvalidHeader(f"unknown payload kind {b} at byte {self.pos - 1}; expected one "
                                f"of {[int(k) for k in PayloadKind]}") from None

    def shape(self) -> tuple[int, ...]:
        ndim = self.u8("shape ndim")
        if ndim > MAX_NDIM:
            raise InvalidHeader(f"shape ndim {ndim} at byte {self.pos - 1} exceeds {MAX_NDIM}")
        shape = []
        for i in range(ndim):
            at = self.pos
            d, self.pos = decode_varint(self.data, self.pos, f"shape dim {i}")
            if d > MAX_DIM:
                raise InvalidHeader(f"shape dim {i} = {d} at byte {at} exceeds {MAX_DIM}")
            shape.append(d)
        return tuple(shape)

    def count(self) -> int:
        count = self.u8("payload count")
        if count == 0:
            raise InvalidHeader(f"payload count at byte {self.pos - 1} is 0; expected 1..255")
        return count

    def length(self, i: int) -> int:
        at = self.pos
        length, self.pos = decode_varint(self.data, self.pos, f"payload {i} length")
        if length > MAX_PAYLOAD_BYTES:
            raise InvalidHeader(f"payload {i} length {length} at byte {at} exceeds "
                                f"{MAX_PAYLOAD_BYTES}")
        return length

    def end(self) -> None:
        if self.pos != self.n:
            raise TrailingData(f"{self.n - self.pos} unexpected bytes after the end of the "
                               f"container at byte {self.pos} (total length {self.n})")

    def v2(self) -> Container:
        kind = self.kind()
        digest = self.take(DIGEST_BYTES, "model digest")
        shape = self.shape()
        lengths = [self.length(i) for i in range(self.count())]
        payloads = [self.take(length, f"payload {i}") for i, length in enumerate(lengths)]
        crc = int.from_bytes(self.take(_CRC_BYTES, "CRC-32"), "big")
        self.end()
        actual = zlib.crc32(self.data[:-_CRC_BYTES])
        if actual != crc:
            raise CorruptPayload(f"CRC-32 mismatch over bytes 0..{self.n - _CRC_BYTES - 1}: the "
                                 f"container says {crc:08x}, the data gives {actual:08x}")
        return Container(digest, kind, shape, tuple(payloads))

    def v1(self) -> Container:
        version = self.u8("format version")
        if version != 1:
            raise UnsupportedVersion(f"format version {version} at byte 4 is not supported; "
                                     f"this reader supports versions {READ_VERSIONS}")
        kind = self.kind()
        mid_len = self.u8("model id length")
        if mid_len == 0:
            raise InvalidHeader(f"model id length at byte {self.pos - 1} is 0; expected 1..255")
        at = self.pos
        try:
            model_id = self.take(mid_len, "model id").decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidHeader(f"model id at byte {at} is not valid UTF-8: {e.reason}") from None
        shape = self.shape()
        payloads = []
        for i in range(self.count()):
            length = self.length(i)
            crc = int.from_bytes(self.take(_CRC_BYTES, f"payload {i} CRC-32"), "big")
            at = self.pos
            p = self.take(length, f"payload {i}")
            actual = zlib.crc32(p)
            if actual != crc:
                raise CorruptPayload(f"payload {i} ({length} bytes at byte {at}): CRC-32 "
                                     f"mismatch, header says {crc:08x}, data gives {actual:08x}")
            payloads.append(p)
        self.end()
        return Container(None, kind, shape, tuple(payloads), model_id=model_id, version=1)


def check_model(container: Container, digest: str, name: str, label: str | None = None) -> Container:
    """Raise unless ``container`` was made by the model ``name`` whose digest is ``digest``.

    Version 2: the carried digest must be the model's (:class:`ModelMismatch`, naming both
    digests and how to get the right files). Version 1: the model id must be ``name``
    (:class:`UnknownModel`). ``label`` names the receiver's model in messages (default ``name``).
    """
    label = label or name
    if container.version == 1:
        if container.model_id != name:
            raise UnknownModel(f"payload is for model {container.model_id!r}, not {label!r}")
        return container
    want = short_digest(digest)
    if container.digest_hex != want:
        raise ModelMismatch(
            f"payload was made by model digest {container.digest_hex}, but {label} here has "
            f"digest {want}: the sender's model files differ from the receiver's; pull the model "
            f"the server serves: splitinfer models pull --server ADDR {name}")
    return container


def check_shape(container: Container, expected: Sequence[int]) -> Container:
    """Raise :class:`InvalidHeader` unless ``container.shape`` equals ``expected``."""
    if tuple(container.shape) != tuple(int(d) for d in expected):
        raise InvalidHeader(f"shape {container.shape} does not match the model's "
                            f"{tuple(expected)}")
    return container
