"""Draco point-cloud coding (DracoPy, imported on first use): encode, decode, the header's point
count read without decoding, and the per-buffer overhead.

Used by the cloud-only input models (container kind 5, :mod:`.input_model`) and by the Draco
input-compression baseline (:mod:`splitinfer.baselines.draco`)."""
from __future__ import annotations

import time

import numpy as np

from ..codec import CorruptPayload

DRACO_MAGIC = b"DRACO"
_DRACO_POINT_CLOUD = 0          # encoder type of a Draco point-cloud buffer (1: a mesh)
_DRACO_METADATA_FLAG = 0x8000   # header flag: a metadata block precedes the geometry


def encode_draco(points: np.ndarray, qbits: int, level: int = 10) -> bytes:
    """Points (N, 3) -> one Draco point-cloud buffer (``quantization_bits`` = qbits,
    ``compression_level`` = level)."""
    import DracoPy
    p = np.ascontiguousarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"expected points (N, 3), got {p.shape}")
    return bytes(DracoPy.encode(p, quantization_bits=int(qbits), compression_level=int(level)))


def decode_draco(data: bytes) -> np.ndarray:
    """A Draco buffer -> points (M, 3) float32; raises CorruptPayload for what DracoPy refuses."""
    import DracoPy
    try:
        return np.asarray(DracoPy.decode(data).points, np.float32).reshape(-1, 3)
    except Exception as e:  # DracoPy raises its own types on garbage
        raise CorruptPayload(f"Draco payload rejected: {type(e).__name__}: {e}") from None


def draco_point_count(data: bytes) -> int:
    """The point count a Draco point-cloud buffer declares, read from its header without
    decoding (magic "DRACO", version major.minor, encoder type, method, flags u16, then the
    geometry's point count int32 for major version 2). Raises CorruptPayload for a buffer that
    is not a metadata-free Draco 2.x point cloud."""
    if len(data) < 15 or data[:5] != DRACO_MAGIC:
        raise CorruptPayload("the payload is not a Draco buffer (no 'DRACO' header)")
    major, encoder_type, flags = data[5], data[7], int.from_bytes(data[9:11], "little")
    if major != 2:
        raise CorruptPayload(f"Draco bitstream version {major}.{data[6]} is not accepted (2.x is)")
    if encoder_type != _DRACO_POINT_CLOUD:
        raise CorruptPayload(f"the Draco buffer is not a point cloud (encoder type {encoder_type})")
    if flags & _DRACO_METADATA_FLAG:
        raise CorruptPayload("Draco metadata is not accepted")
    return int.from_bytes(data[11:15], "little", signed=True)


def draco_roundtrip(points: np.ndarray, qbits: int, level: int = 10) -> tuple[np.ndarray, int, float, float]:
    """(decoded points, encoded bytes, encode ms, decode ms) for one cloud."""
    t0 = time.perf_counter()
    data = encode_draco(points, qbits, level)
    t1 = time.perf_counter()
    decoded = decode_draco(data)
    t2 = time.perf_counter()
    return decoded, len(data), (t1 - t0) * 1e3, (t2 - t1) * 1e3


def fixed_overhead_bytes(qbits: int, level: int = 10) -> int:
    """Size of a one-point Draco buffer: the header and attribute/quantization metadata that every
    cloud pays whatever its content (~171 bytes with DracoPy 2.2)."""
    return len(encode_draco(np.zeros((1, 3), np.float32), qbits, level))
