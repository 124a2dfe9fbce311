"""Torch-free factorized-prior image codec: ONNX g_a / g_s (onnxruntime), range coding of y_hat
with the model's static CDF tables (or per-image adaptive ones), inside the SPLT container
bound to the model's digest.

Container (docs/bitstream.md): kind 2 (image latent), shape (H, W) of the image, payloads
``[y]`` with the static tables or ``[q, y]`` with adaptive encoding distributions (q is the side
information from which the decoder rebuilds p_hat, see :mod:`splitinfer.image.adaptive`).
"""
from __future__ import annotations

import numpy as np
from onnxruntime import InferenceSession

from ..codec import (CdfTables, Container, CorruptPayload, PayloadKind, UnknownModel, check_model,
                     decode_grid, encode_grid)
from ..onnx import session
from ..registry import Runtime, register_runtime
from ..repository import ModelConfig, load_tables

#: Largest image (pixels) the codec accepts; the sidecar applies its own, smaller limit.
MAX_PIXELS = 64 * 1024 * 1024


def check_image(rgb) -> np.ndarray:
    """A uint8 (H, W, 3) array, or ValueError naming what is wrong."""
    a = np.asarray(rgb)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {a.dtype}")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"empty image {a.shape}")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ValueError(f"image of {a.shape[0]}x{a.shape[1]} pixels exceeds {MAX_PIXELS}")
    return a


class ImageCodec(Runtime):
    """One shipped image codec (a quality level). Sessions are created lazily."""

    def __init__(self, config: ModelConfig, threads: int = 1):
        super().__init__(config, threads)
        self.tables: CdfTables = load_tables(config)
        self.channels: int = int(config.raw["M"])
        self.factor: int = int(config.raw.get("downsampling", 16))
        self._g_a: InferenceSession | None = None
        self._g_s: InferenceSession | None = None
        self._adaptive = None
        #: onnxruntime RunOptions of g_a / g_s runs (a server sets arena shrinkage here)
        self.run_options = None

    @property
    def adaptive(self):
        """The adaptive entropy bottleneck runtime, or None when this model ships none."""
        if self._adaptive is None and "h_s_q" in self.config.raw.get("files", {}):
            from .adaptive import AdaptiveDistributions
            self._adaptive = AdaptiveDistributions(self.config, self.tables, self.threads)
        return self._adaptive

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        f = self.factor
        return self.channels, -(-height // f), -(-width // f)

    # -- transforms ------------------------------------------------------------------------------
    def analysis(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> integer symbols y_hat (M, h, w); the image is edge-padded to 16."""
        a = check_image(rgb)
        H, W = a.shape[:2]
        _, h, w = self.latent_shape(H, W)
        f = self.factor
        x = np.pad(a, ((0, h * f - H), (0, w * f - W), (0, 0)), mode="edge")
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None], np.float32) / 255.0
        if self._g_a is None:
            self._g_a = session(self.config.file("g_a"), self.threads)
        return self._g_a.run(None, {"x": x}, self.run_options)[0][0]

    def synthesis(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        """y_hat (M, h, w) -> uint8 (height, width, 3)."""
        if self._g_s is None:
            self._g_s = session(self.config.file("g_s"), self.threads)
        x_hat = self._g_s.run(None, {"y_hat": np.asarray(y_hat, np.float32)[None]}, self.run_options)[0][0]
        x = np.clip(np.rint(x_hat * 255.0), 0, 255).astype(np.uint8).transpose(1, 2, 0)
        return np.ascontiguousarray(x[:height, :width])

    # -- bitstreams ------------------------------------------------------------------------------
    def pack(self, y_hat: np.ndarray, height: int, width: int, adaptive: bool = False) -> bytes:
        """Entropy-code y_hat into a container: static tables, or [q, y] with adaptive ones."""
        C, h, w = y_hat.shape
        flat = np.asarray(y_hat, np.int32).reshape(C, h * w)
        if adaptive:
            if self.adaptive is None:
                raise UnknownModel(f"model {self.name!r} ships no adaptive entropy bottleneck")
            side, tables = self.adaptive.side_information(flat)
            payloads = (side, encode_grid(flat, tables))
        else:
            payloads = (encode_grid(flat, self.tables),)
        return Container(self.digest, PayloadKind.IMAGE_LATENT, (height, width), payloads).pack()

    def compress(self, rgb: np.ndarray, adaptive: bool = False) -> bytes:
        """uint8 (H, W, 3) -> container bytes."""
        a = check_image(rgb)
        return self.pack(self.analysis(a), a.shape[0], a.shape[1], adaptive)

    def unpack(self, data: bytes) -> tuple[np.ndarray, int, int]:
        """Container bytes -> (y_hat (M, h, w) int32, H, W). Raises a BitstreamError subclass."""
        c = check_model(Container.unpack(data), self.digest, self.name, self.config.ref)
        if c.kind != PayloadKind.IMAGE_LATENT or len(c.shape) != 2:
            raise CorruptPayload(f"expected an image latent with shape (H, W), got kind "
                                 f"{int(c.kind)} shape {tuple(c.shape)}")
        H, W = c.shape
        if not (0 < H * W <= MAX_PIXELS):
            raise CorruptPayload(f"image size {H}x{W} out of range")
        C, h, w = self.latent_shape(H, W)
        if len(c.payloads) == 1:
            tables = self.tables
        elif len(c.payloads) == 2:
            if self.adaptive is None:
                raise UnknownModel(f"model {self.name!r} ships no adaptive entropy bottleneck")
            tables = self.adaptive.tables_from_side_information(c.payloads[0])
        else:
            raise CorruptPayload(f"expected 1 or 2 payloads, got {len(c.payloads)}")
        y = decode_grid(c.payloads[-1], tables, h * w)
        return y.reshape(C, h, w), H, W

    def decompress(self, data: bytes) -> np.ndarray:
        """Container bytes -> uint8 (H, W, 3)."""
        y_hat, H, W = self.unpack(data)
        return self.synthesis(y_hat, H, W)


register_runtime("image-compression", ImageCodec)
