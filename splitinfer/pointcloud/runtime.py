"""Torch-free point-cloud codec runtime: ONNX encoder and classifier (onnxruntime), range coding
of y_hat with the model's CDF tables (constriction), inside the bitstream container bound to the
model's digest (docs/bitstream.md)."""
from __future__ import annotations

import numpy as np
from onnxruntime import InferenceSession

from ..codec import (CdfTables, Container, CorruptPayload, PayloadKind, SymbolOutOfRange, check_model,
                     decode, encode)
from ..onnx import session
from ..registry import Runtime, register_runtime
from ..repository import ModelConfig, load_tables
from .preprocess import MIN_POINTS, PreprocessResult, preprocess

#: A decoded symbol may lie this many table ranges (``lengths[c]``, at least 2) outside its
#: channel's range before it is refused: the encoders' rare escapes reach 1 to 4 past the range
#: on the sample, a forged latent reaches the int32 limits.
ESCAPE_REACH = 8


def check_symbols(y_hat: np.ndarray, tables: CdfTables) -> np.ndarray:
    """``y_hat`` unchanged, or SymbolOutOfRange when a symbol lies far outside what the model's
    encoder and tables produce (a forged or corrupted latent)."""
    reach = ESCAPE_REACH * np.maximum(tables.lengths.astype(np.int64), 2)
    low = tables.offsets.astype(np.int64) - reach
    high = tables.offsets.astype(np.int64) + tables.lengths + reach
    y = np.asarray(y_hat, np.int64)
    bad = np.flatnonzero((y < low) | (y >= high))
    if bad.size:
        c = int(bad[0])
        raise SymbolOutOfRange(f"{bad.size} decoded symbols lie far outside the model's range, "
                               f"e.g. channel {c}: {int(y[c])} not in [{int(low[c])}, "
                               f"{int(high[c])}); the latent is forged or corrupted")
    return y_hat


class PointCloudModel(Runtime):
    """One shipped point-cloud model: the edge half (encode) and the cloud half (decode, classify).

    Sessions are created lazily, so an edge process never loads the classifier and vice versa.
    """

    def __init__(self, config: ModelConfig, threads: int = 1):
        super().__init__(config, threads)
        self.tables: CdfTables = load_tables(config)
        self.classes: list[str] = list(config.raw["classes"])
        self.points: int = int(config.raw["points"])
        self.channels: int = int(config.raw["channels"])
        self.preprocess_spec: dict | None = config.raw.get("preprocess")  # None: mean / max radius
        self.min_points: int = MIN_POINTS
        self._encoder: InferenceSession | None = None
        self._classifier: InferenceSession | None = None

    # -- edge -----------------------------------------------------------------------------------
    def preprocess(self, cloud: np.ndarray, seed: int = 0, name: str = "input",
                   return_stats: bool = False) -> np.ndarray | PreprocessResult:
        """Raw cloud (N, 3) -> the encoder's input (P, 3) by this model's preprocessing (its
        config's ``preprocess``); NaN/inf points dropped (counted with ``return_stats``)."""
        return preprocess(cloud, self.points, seed, name=name, spec=self.preprocess_spec,
                          min_points=self.min_points, return_stats=return_stats)

    def encode_symbols(self, points: np.ndarray) -> np.ndarray:
        """Preprocessed clouds (B, P, 3) -> integer symbols y_hat (B, C) with the ONNX encoder."""
        if self._encoder is None:
            self._encoder = session(self.config.file("encoder"), self.threads)
        return self._encoder.run(None, {"points": np.ascontiguousarray(points, np.float32)})[0]

    def pack(self, y_hat: np.ndarray) -> bytes:
        """Entropy-code one y_hat (C,) into a container."""
        payload = encode(np.asarray(y_hat, np.int32), self.tables)
        return Container(self.digest, PayloadKind.POINTCLOUD_LATENT, (self.channels,),
                         (payload,)).pack()

    def encode_latent(self, cloud: np.ndarray, seed: int = 0, name: str = "input") -> bytes:
        """Raw cloud (N, 3) -> the range-coded y_hat alone (no container): a stream frame's bytes."""
        x = self.preprocess(cloud, seed, name)[None]
        return encode(np.asarray(self.encode_symbols(x)[0], np.int32), self.tables)

    def decode_latent(self, payload: bytes) -> np.ndarray:
        """Range-coded y_hat bytes (no container) -> y_hat (C,) int32; raises a BitstreamError
        (SymbolOutOfRange for symbols far outside the model's range)."""
        return check_symbols(decode(payload, self.tables), self.tables)

    def encode(self, cloud: np.ndarray, seed: int = 0, name: str = "input") -> bytes:
        """Raw cloud (N, 3) -> container bytes: preprocess, ONNX encoder, range coding."""
        x = self.preprocess(cloud, seed, name)[None]
        return self.pack(self.encode_symbols(x)[0])

    # -- cloud ----------------------------------------------------------------------------------
    def decode(self, data: bytes) -> np.ndarray:
        """Container bytes -> y_hat (C,) int32. Raises a BitstreamError subclass on bad input:
        ModelMismatch for a container made by other model files (UnknownModel: a version-1
        container naming another model), SymbolOutOfRange for symbols far outside the range."""
        c = check_model(Container.unpack(data), self.digest, self.name, self.config.ref)
        if c.kind != PayloadKind.POINTCLOUD_LATENT or tuple(c.shape) != (self.channels,):
            raise CorruptPayload(f"expected a point-cloud latent of shape ({self.channels},), "
                                 f"got kind {int(c.kind)} shape {tuple(c.shape)}")
        if len(c.payloads) != 1:
            raise CorruptPayload(f"expected one payload, got {len(c.payloads)}")
        return self.decode_latent(c.payload)

    def classify(self, y_hat: np.ndarray) -> np.ndarray:
        """y_hat (B, C) -> logits (B, classes) with the ONNX classifier."""
        if self._classifier is None:
            self._classifier = session(self.config.file("classifier"), self.threads)
        return self._classifier.run(None, {"y_hat": np.asarray(y_hat, np.float32)})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


register_runtime("pointcloud-classification", PointCloudModel)
