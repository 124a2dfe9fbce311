"""Torch-free point-cloud codec runtime: ONNX encoder and classifier (onnxruntime), range coding
of y_hat with the model's CDF tables (constriction), inside the bitstream container."""
from __future__ import annotations

import numpy as np
from onnxruntime import InferenceSession

from ..codec import CdfTables, Container, PayloadKind, UnknownModel, decode, encode
from ..onnx import session
from ..repository import ModelConfig
from .preprocess import preprocess


class PointCloudModel:
    """One shipped point-cloud model: the edge half (encode) and the cloud half (decode, classify).

    Sessions are created lazily, so an edge process never loads the classifier and vice versa.
    """

    def __init__(self, config: ModelConfig, threads: int = 1):
        self.config = config
        self.threads = threads
        self.tables = CdfTables.load(config.file("tables"))
        self.classes: list[str] = list(config.raw["classes"])
        self.points: int = int(config.raw["points"])
        self.channels: int = int(config.raw["channels"])
        self._encoder: InferenceSession | None = None
        self._classifier: InferenceSession | None = None

    @property
    def name(self) -> str:
        return self.config.name

    # -- edge -----------------------------------------------------------------------------------
    def encode_symbols(self, points: np.ndarray) -> np.ndarray:
        """Preprocessed clouds (B, P, 3) -> integer symbols y_hat (B, C) with the ONNX encoder."""
        if self._encoder is None:
            self._encoder = session(self.config.file("encoder"), self.threads)
        return self._encoder.run(None, {"points": np.ascontiguousarray(points, np.float32)})[0]

    def pack(self, y_hat: np.ndarray) -> bytes:
        """Entropy-code one y_hat (C,) into a container."""
        payload = encode(np.asarray(y_hat, np.int32), self.tables)
        return Container(model_id=self.name, kind=PayloadKind.POINTCLOUD_LATENT,
                         shape=(self.channels,), payloads=(payload,)).pack()

    def encode_latent(self, cloud: np.ndarray, seed: int = 0, name: str = "input") -> bytes:
        """Raw cloud (N, 3) -> the range-coded y_hat alone (no container): a stream frame's bytes."""
        x = preprocess(cloud, self.points, seed, name=name)[None]
        return encode(np.asarray(self.encode_symbols(x)[0], np.int32), self.tables)

    def decode_latent(self, payload: bytes) -> np.ndarray:
        """Range-coded y_hat bytes (no container) -> y_hat (C,) int32; raises a BitstreamError."""
        return decode(payload, self.tables)

    def encode(self, cloud: np.ndarray, seed: int = 0, name: str = "input") -> bytes:
        """Raw cloud (N, 3) -> container bytes: preprocess, ONNX encoder, range coding."""
        x = preprocess(cloud, self.points, seed, name=name)[None]
        return self.pack(self.encode_symbols(x)[0])

    # -- cloud ----------------------------------------------------------------------------------
    def decode(self, data: bytes) -> np.ndarray:
        """Container bytes -> y_hat (C,) int32. Raises a BitstreamError subclass on bad input."""
        c = Container.unpack(data)
        if c.model_id != self.name:
            raise UnknownModel(f"payload is for model {c.model_id!r}, not {self.name!r}")
        if c.kind != PayloadKind.POINTCLOUD_LATENT or tuple(c.shape) != (self.channels,):
            from ..codec import CorruptPayload
            raise CorruptPayload(f"expected a point-cloud latent of shape ({self.channels},), "
                                 f"got kind {int(c.kind)} shape {tuple(c.shape)}")
        return decode(c.payload, self.tables)

    def classify(self, y_hat: np.ndarray) -> np.ndarray:
        """y_hat (B, C) -> logits (B, classes) with the ONNX classifier."""
        if self._classifier is None:
            self._classifier = session(self.config.file("classifier"), self.threads)
        return self._classifier.run(None, {"y_hat": np.asarray(y_hat, np.float32)})[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
