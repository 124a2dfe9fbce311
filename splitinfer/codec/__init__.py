"""Torch-free codec core: CDF tables, range coding (constriction or its numpy twin) and the SPLT container."""
from .container import (
    FORMAT_VERSION,
    MAGIC,
    BadMagic,
    BitstreamError,
    Container,
    CorruptPayload,
    DIGEST_BYTES,
    InvalidHeader,
    ModelMismatch,
    PayloadKind,
    SymbolOutOfRange,
    TrailingData,
    TruncatedBitstream,
    UnknownModel,
    UnsupportedVersion,
    check_model,
    check_shape,
    short_digest,
)
from . import coders
from .entropy_coder import decode, encode, encoded_bits
from .grid_coder import decode_grid, encode_grid
from .tables import CdfTables, escape_payload_bits, quantize_pmf

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "BadMagic",
    "BitstreamError",
    "CdfTables",
    "Container",
    "CorruptPayload",
    "DIGEST_BYTES",
    "InvalidHeader",
    "ModelMismatch",
    "PayloadKind",
    "SymbolOutOfRange",
    "TrailingData",
    "TruncatedBitstream",
    "UnknownModel",
    "UnsupportedVersion",
    "check_model",
    "check_shape",
    "decode",
    "decode_grid",
    "encode",
    "encode_grid",
    "encoded_bits",
    "escape_payload_bits",
    "quantize_pmf",
    "short_digest",
]
