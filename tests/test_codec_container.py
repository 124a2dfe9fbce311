"""The SPLT container: version-2 layout, round trips, every typed error, version-1 reading."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from splitinfer.codec import (
    DIGEST_BYTES,
    BadMagic,
    BitstreamError,
    CdfTables,
    Container,
    CorruptPayload,
    InvalidHeader,
    ModelMismatch,
    PayloadKind,
    TrailingData,
    TruncatedBitstream,
    UnknownModel,
    UnsupportedVersion,
    check_model,
    check_shape,
    decode,
    encode,
)
from splitinfer.codec.container import decode_varint, encode_varint

DIGEST = "0123456789abcdef" + "0" * 48          # a model digest (64 hex digits)
OTHER = "fedcba9876543210" + "0" * 48
PC = Container(DIGEST, PayloadKind.POINTCLOUD_LATENT, (1024,), b"\x8a\x13\x77")


def _containers():
    return [
        PC,
        Container(OTHER, PayloadKind.POINTCLOUD_LATENT, (), b""),
        Container(DIGEST, PayloadKind.IMAGE_LATENT, (1, 192, 16, 24), bytes(range(256)) * 3),
        Container(bytes(range(8)), 3, (1, 128, 4, 6), [b"side", b"", b"x" * 300]),
        Container(OTHER[:16], PayloadKind.IMAGE_SIDE_INFO, (2**24, 0, 1, 2, 3, 4, 5, 6), b"\x01"),
    ]


def v1_bytes(model_id: str, kind: int, shape, payloads) -> bytes:
    """A version-1 container, byte by byte as version 1 wrote it."""
    mid = model_id.encode()
    out = bytearray(b"SPLT" + bytes([1, kind, len(mid)]) + mid + bytes([len(shape)]))
    for d in shape:
        out += encode_varint(d)
    out.append(len(payloads))
    for p in payloads:
        out += encode_varint(len(p)) + zlib.crc32(p).to_bytes(4, "big") + p
    return bytes(out)


# ---------------------------------------------------------------------------- layout


def test_point_cloud_layout_is_exact():
    data = PC.pack()
    body = (b"SP" + bytes([2, 1]) + bytes.fromhex("0123456789abcdef") + bytes([1, 0x80, 0x08])
            + bytes([1, 3]) + b"\x8a\x13\x77")
    assert data == body + zlib.crc32(body).to_bytes(4, "big")
    assert PC.header_size == len(data) - 3 == 21
    assert PC.payload == b"\x8a\x13\x77" and PC.payload_size == 3
    assert PC.digest == bytes.fromhex("0123456789abcdef") and PC.digest_hex == DIGEST[:16]
    assert DIGEST_BYTES == 8


def test_the_worked_example_of_the_docs_is_what_pack_writes():
    """docs/bitstream.md section 1.3 walks through this container byte by byte."""
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "bitstream.md").read_text()
    data = Container("6a3df97f33ef92e5a7acd6dcabe6bb8d", PayloadKind.POINTCLOUD_LATENT, (1024,),
                     b"\x1f\xb7").pack()
    assert data.hex(" ").upper() in " ".join(doc.split())


@pytest.mark.parametrize("c", _containers())
def test_round_trip(c):
    data = c.pack()
    u = Container.unpack(data)
    assert u == c
    assert u.header_size + u.payload_size == len(data)
    assert isinstance(u.kind, PayloadKind)
    assert Container.unpack(bytearray(data)) == c
    assert Container.unpack(memoryview(data)) == c


def test_varints():
    for v in (0, 1, 127, 128, 300, 2**14, 2**24, 2**35, 2**63):
        enc = encode_varint(v)
        assert decode_varint(enc, 0, "x") == (v, len(enc))
    assert encode_varint(1024) == b"\x80\x08"
    with pytest.raises(ValueError):
        encode_varint(-1)


def test_multi_payload_access():
    c = _containers()[3]
    assert c.payloads == (b"side", b"", b"x" * 300)
    with pytest.raises(ValueError, match="3 payloads"):
        c.payload


def test_pack_validation():
    with pytest.raises(ValueError, match="kind"):
        Container(DIGEST, 9, (1,), b"")
    with pytest.raises(ValueError, match="at least 8 bytes"):
        Container("0123", PayloadKind.IMAGE_LATENT, (1,), b"")
    with pytest.raises(ValueError, match="hex"):
        Container("micro-p1024-l1000", PayloadKind.IMAGE_LATENT, (1,), b"")
    with pytest.raises(TypeError, match="digest"):
        Container(None, PayloadKind.IMAGE_LATENT, (1,), b"")
    with pytest.raises(ValueError, match="dims"):
        Container(DIGEST, PayloadKind.IMAGE_LATENT, (1,) * 9, b"")
    with pytest.raises(ValueError, match="shape dim"):
        Container(DIGEST, PayloadKind.IMAGE_LATENT, (2**24 + 1,), b"")
    with pytest.raises(ValueError, match="payloads"):
        Container(DIGEST, PayloadKind.IMAGE_LATENT, (1,), [])


# ---------------------------------------------------------------------------- errors


def test_error_hierarchy():
    for cls in (TruncatedBitstream, BadMagic, UnsupportedVersion, InvalidHeader, CorruptPayload,
                TrailingData, UnknownModel, ModelMismatch):
        assert issubclass(cls, BitstreamError)
    assert issubclass(BitstreamError, ValueError)


@pytest.mark.parametrize("c", _containers())
def test_truncated_at_every_position(c):
    data = c.pack()
    for i in range(len(data)):
        with pytest.raises(TruncatedBitstream):
            Container.unpack(data[:i])


def test_truncation_messages_are_precise():
    data = PC.pack()
    with pytest.raises(TruncatedBitstream, match="inside a varint"):
        Container.unpack(data[:14])  # first byte of the 2-byte dim varint only
    with pytest.raises(TruncatedBitstream, match="model digest.*expected 8 bytes"):
        Container.unpack(data[:9])
    with pytest.raises(TruncatedBitstream, match=r"CRC-32: .*\(1 missing\)"):
        Container.unpack(data[:-1])
    with pytest.raises(TruncatedBitstream, match=r"payload 0: .*expected 3 bytes"):
        Container.unpack(data[:18])


def test_bad_magic():
    data = PC.pack()
    for bad in (b"XP" + data[2:], b"X", b"\x00\x00\x00\x00\x01", b"sp" + data[2:]):
        with pytest.raises(BadMagic, match="expected magic b'SP'"):
            Container.unpack(bad)


def test_wrong_version():
    data = bytearray(PC.pack())
    for v in (0, 1, 3, 255):
        data[2] = v
        with pytest.raises(UnsupportedVersion, match=f"format version {v}"):
            Container.unpack(bytes(data))
    v1 = bytearray(v1_bytes("m", 1, (1,), [b""]))
    v1[4] = 7
    with pytest.raises(UnsupportedVersion, match="format version 7 at byte 4"):
        Container.unpack(bytes(v1))


def _v2(head: bytes, rest: bytes) -> bytes:
    body = b"SP\x02" + head + rest
    return body + zlib.crc32(body).to_bytes(4, "big")


def test_invalid_header_fields():
    d = bytes.fromhex(DIGEST[:16])
    with pytest.raises(InvalidHeader, match="unknown payload kind 0"):
        Container.unpack(_v2(b"\x00" + d, b"\x01\x01\x01\x00"))
    tail = b"\x01\x00"  # one empty payload
    assert Container.unpack(_v2(b"\x01" + d, b"\x00" + tail)).shape == ()
    with pytest.raises(InvalidHeader, match="ndim 9"):
        Container.unpack(_v2(b"\x01" + d, b"\x09" + b"\x01" * 9 + tail))
    with pytest.raises(InvalidHeader, match="exceeds 16777216"):
        Container.unpack(_v2(b"\x01" + d, b"\x01" + encode_varint(2**24 + 1) + tail))
    with pytest.raises(InvalidHeader, match="non-minimal"):
        Container.unpack(_v2(b"\x01" + d, b"\x01\x81\x00" + tail))
    with pytest.raises(InvalidHeader, match="longer than"):
        Container.unpack(_v2(b"\x01" + d, b"\x01" + b"\xff" * 11 + tail))
    with pytest.raises(InvalidHeader, match="payload count"):
        Container.unpack(_v2(b"\x01" + d, b"\x00\x00"))
    with pytest.raises(InvalidHeader, match="payload 0 length"):
        Container.unpack(_v2(b"\x01" + d, b"\x00\x01" + encode_varint(2**31 + 1)))


def test_crc_covers_every_byte():
    """A single flipped bit anywhere (header, digest, lengths, payload, CRC) is caught."""
    for c in _containers()[:4]:
        data = c.pack()
        for i in range(len(data)):
            for bit in range(8):
                bad = bytearray(data)
                bad[i] ^= 1 << bit
                with pytest.raises(BitstreamError):
                    Container.unpack(bytes(bad))
    data = PC.pack()
    for i in (3 + 1, 10, len(data) - 5, len(data) - 1):   # digest, payload and CRC bytes
        bad = bytearray(data)
        bad[i] ^= 0x10
        with pytest.raises(CorruptPayload, match="CRC-32 mismatch"):
            Container.unpack(bytes(bad))


def test_trailing_data():
    for c in _containers():
        with pytest.raises(TrailingData, match="1 unexpected bytes"):
            Container.unpack(c.pack() + b"\x00")
        with pytest.raises(TrailingData):
            Container.unpack(c.pack() + c.pack())


def test_model_mismatch_names_both_digests_and_the_fix():
    assert check_model(PC, DIGEST, "micro-p1024-l1000") is PC
    assert check_model(PC, DIGEST[:16], "micro-p1024-l1000") is PC
    with pytest.raises(ModelMismatch) as e:
        check_model(PC, OTHER, "micro-p1024-l1000", "micro-p1024-l1000@2")
    msg = str(e.value)
    assert DIGEST[:16] in msg and OTHER[:16] in msg and "micro-p1024-l1000@2" in msg
    assert "splitinfer models pull --server ADDR micro-p1024-l1000" in msg


def test_shape_check():
    assert check_shape(PC, (1024,)) is PC
    with pytest.raises(InvalidHeader, match="does not match"):
        check_shape(PC, (512,))


def test_random_bytes_raise_only_bitstream_errors():
    rng = np.random.default_rng(0)
    prefixes = [b"", b"SP", b"SP\x02", b"SP\x02\x01", b"SP\x02\x01" + bytes(8) + b"\x01\x05\x01",
                b"SPLT", b"SPLT\x01", b"SPLT\x01\x01\x01m\x01"]
    for _ in range(3000):
        data = rng.choice(prefixes) + rng.integers(0, 256, rng.integers(0, 48),
                                                   dtype=np.uint8).tobytes()
        try:
            c = Container.unpack(data)
        except BitstreamError:
            continue
        assert c.version == 1 or c.pack() == data  # anything accepted is canonical


# ---------------------------------------------------------------------------- version 1


def test_version_1_containers_are_still_read():
    data = v1_bytes("micro-p1024-l1000", 1, (1024,), [b"\x8a\x13\x77"])
    c = Container.unpack(data)
    assert (c.version, c.model_id, c.digest, c.shape, c.payload) == \
        (1, "micro-p1024-l1000", None, (1024,), b"\x8a\x13\x77")
    assert c.header_size == len(data) - 3 == 33
    assert check_model(c, DIGEST, "micro-p1024-l1000") is c
    with pytest.raises(UnknownModel, match="micro-p1024-l1000"):
        check_model(c, DIGEST, "full-p1024-l4000")
    with pytest.raises(ValueError, match="only version 2"):
        c.pack()


def test_version_1_errors():
    data = v1_bytes("img-q3", 3, (1, 128, 4, 6), [b"side", b"", b"x" * 300])
    for i in range(len(data)):
        with pytest.raises(TruncatedBitstream):
            Container.unpack(data[:i])
    with pytest.raises(TrailingData):
        Container.unpack(data + b"\x00")
    bad = bytearray(data)
    bad[-1] ^= 1
    with pytest.raises(CorruptPayload, match="CRC-32"):
        Container.unpack(bytes(bad))
    with pytest.raises(InvalidHeader, match="UTF-8"):
        Container.unpack(b"SPLT\x01\x01\x01\xff\x00\x01\x00" + zlib.crc32(b"").to_bytes(4, "big"))
    with pytest.raises(InvalidHeader, match="model id length"):
        Container.unpack(b"SPLT\x01\x01\x00\x00")


# ---------------------------------------------------------------------------- end to end


def test_end_to_end_with_entropy_coder():
    rng = np.random.default_rng(1)
    C = 64
    t = CdfTables.from_pmfs(np.full(C, -3), [rng.dirichlet(np.full(7, 0.2)) * 0.999
                                             for _ in range(C)], np.full(C, 1e-3))
    s = rng.integers(-3, 4, C)
    s[3] = 123456
    c = Container(DIGEST, PayloadKind.POINTCLOUD_LATENT, (C,), encode(s, t))
    u = check_model(Container.unpack(c.pack()), DIGEST, "test-model")
    np.testing.assert_array_equal(decode(u.payload, t), s)
