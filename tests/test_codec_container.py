"""The SPLT container: layout, round trips and every typed error."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

from splitinfer.codec import (
    BadMagic,
    BitstreamError,
    CdfTables,
    Container,
    CorruptPayload,
    InvalidHeader,
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

PC = Container("micro-p1024-l1000", PayloadKind.POINTCLOUD_LATENT, (1024,), b"\x8a\x13\x77")


def _containers():
    return [
        PC,
        Container("m", PayloadKind.POINTCLOUD_LATENT, (), b""),
        Container("img-q3", PayloadKind.IMAGE_LATENT, (1, 192, 16, 24), bytes(range(256)) * 3),
        Container("img-q3", 3, (1, 128, 4, 6), [b"side", b"", b"x" * 300]),
        Container("ünïcode-model", PayloadKind.IMAGE_SIDE_INFO, (2**24, 0, 1, 2, 3, 4, 5, 6),
                  b"\x01"),
    ]


# ---------------------------------------------------------------------------- layout


def test_point_cloud_layout_is_exact():
    data = PC.pack()
    expected = (b"SPLT" + bytes([1, 1, 17]) + b"micro-p1024-l1000" + bytes([1, 0x80, 0x08])
                + bytes([1, 3]) + zlib.crc32(b"\x8a\x13\x77").to_bytes(4, "big")
                + b"\x8a\x13\x77")
    assert data == expected
    assert PC.header_size == len(data) - 3 == 33
    assert PC.payload == b"\x8a\x13\x77" and PC.payload_size == 3


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
        Container("m", 9, (1,), b"")
    with pytest.raises(ValueError, match="model_id"):
        Container("", PayloadKind.IMAGE_LATENT, (1,), b"")
    with pytest.raises(ValueError, match="model_id"):
        Container("x" * 256, PayloadKind.IMAGE_LATENT, (1,), b"")
    with pytest.raises(ValueError, match="dims"):
        Container("m", PayloadKind.IMAGE_LATENT, (1,) * 9, b"")
    with pytest.raises(ValueError, match="shape dim"):
        Container("m", PayloadKind.IMAGE_LATENT, (2**24 + 1,), b"")
    with pytest.raises(ValueError, match="payloads"):
        Container("m", PayloadKind.IMAGE_LATENT, (1,), [])


# ---------------------------------------------------------------------------- errors


def test_error_hierarchy():
    for cls in (TruncatedBitstream, BadMagic, UnsupportedVersion, InvalidHeader, CorruptPayload,
                TrailingData, UnknownModel):
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
        Container.unpack(data[:26])  # first byte of the 2-byte dim varint only
    with pytest.raises(TruncatedBitstream, match=r"expected 3 bytes .* \(1 missing\)"):
        Container.unpack(data[:-1])


def test_bad_magic():
    data = PC.pack()
    for bad in (b"SPLX" + data[4:], b"X", b"\x00\x00\x00\x00\x01", b"splt" + data[4:]):
        with pytest.raises(BadMagic, match="expected magic b'SPLT'"):
            Container.unpack(bad)


def test_wrong_version():
    data = bytearray(PC.pack())
    for v in (0, 2, 255):
        data[4] = v
        with pytest.raises(UnsupportedVersion, match=f"format version {v}"):
            Container.unpack(bytes(data))


def test_invalid_header_fields():
    base = PC.pack()
    bad_kind = bytearray(base)
    bad_kind[5] = 0
    with pytest.raises(InvalidHeader, match="unknown payload kind 0"):
        Container.unpack(bytes(bad_kind))
    head = b"SPLT\x01\x01\x01m"
    tail = b"\x01\x00" + zlib.crc32(b"").to_bytes(4, "big")
    assert Container.unpack(head + b"\x00" + tail).shape == ()
    with pytest.raises(InvalidHeader, match="ndim 9"):
        Container.unpack(head + b"\x09" + b"\x01" * 9 + tail)
    with pytest.raises(InvalidHeader, match="exceeds 16777216"):
        Container.unpack(head + b"\x01" + encode_varint(2**24 + 1) + tail)
    with pytest.raises(InvalidHeader, match="non-minimal"):
        Container.unpack(head + b"\x01\x81\x00" + tail)
    with pytest.raises(InvalidHeader, match="longer than"):
        Container.unpack(head + b"\x01" + b"\xff" * 11 + tail)
    with pytest.raises(InvalidHeader, match="UTF-8"):
        Container.unpack(b"SPLT\x01\x01\x01\xff\x00" + tail)
    with pytest.raises(InvalidHeader, match="model id length"):
        Container.unpack(b"SPLT\x01\x01\x00\x00" + tail)
    with pytest.raises(InvalidHeader, match="payload count"):
        Container.unpack(head + b"\x00\x00")


def test_crc_mismatch():
    data = PC.pack()
    for i in range(len(data) - 3, len(data)):  # payload bytes
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(CorruptPayload, match="CRC-32 mismatch"):
                Container.unpack(bytes(bad))
    bad = bytearray(data)
    bad[-4] ^= 0xFF  # CRC field
    with pytest.raises(CorruptPayload):
        Container.unpack(bytes(bad))


def test_trailing_data():
    for c in _containers():
        with pytest.raises(TrailingData, match="1 unexpected bytes"):
            Container.unpack(c.pack() + b"\x00")
        with pytest.raises(TrailingData):
            Container.unpack(c.pack() + c.pack())


def test_unknown_model_and_shape_check():
    assert check_model(PC, ["micro-p1024-l1000", "other"]) is PC
    with pytest.raises(UnknownModel, match="micro-p1024-l1000"):
        check_model(PC, {"full-p1024-l4000"})
    assert check_shape(PC, (1024,)) is PC
    with pytest.raises(InvalidHeader, match="does not match"):
        check_shape(PC, (512,))


def test_random_bytes_raise_only_bitstream_errors():
    rng = np.random.default_rng(0)
    prefixes = [b"", b"SPLT", b"SPLT\x01", b"SPLT\x01\x01", b"SPLT\x01\x02\x03abc",
                b"SPLT\x01\x01\x01m\x01"]
    for _ in range(3000):
        data = rng.choice(prefixes) + rng.integers(0, 256, rng.integers(0, 48),
                                                   dtype=np.uint8).tobytes()
        try:
            c = Container.unpack(data)
        except BitstreamError:
            continue
        assert c.pack() == data  # anything accepted is canonical


def test_bit_flips_raise_only_bitstream_errors():
    for c in _containers()[:4]:
        data = c.pack()
        for i in range(min(len(data), 64)):
            for bit in range(8):
                bad = bytearray(data)
                bad[i] ^= 1 << bit
                try:
                    u = Container.unpack(bytes(bad))
                except BitstreamError:
                    continue
                assert u.pack() == bytes(bad)


# ---------------------------------------------------------------------------- end to end


def test_end_to_end_with_entropy_coder():
    rng = np.random.default_rng(1)
    C = 64
    t = CdfTables.from_pmfs(np.full(C, -3), [rng.dirichlet(np.full(7, 0.2)) * 0.999
                                             for _ in range(C)], np.full(C, 1e-3))
    s = rng.integers(-3, 4, C)
    s[3] = 123456
    c = Container("test-model", PayloadKind.POINTCLOUD_LATENT, (C,), encode(s, t))
    u = check_model(Container.unpack(c.pack()), {"test-model"})
    np.testing.assert_array_equal(decode(u.payload, t), s)
