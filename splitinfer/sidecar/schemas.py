"""Pydantic models of every JSON body the sidecar sends: results, model listings, health and the
uniform error body ``{"error": {"code", "message"}}``."""
from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field


# ---------------------------------------------------------------------------- errors


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable error code, e.g. PayloadTooLarge, "
                                  "NotAnImage, UnknownModel, AdaptiveUnavailable, or the name of "
                                  "the BitstreamError subclass (BadMagic, TruncatedBitstream, ...)",
                      examples=["BadMagic"])
    message: str = Field(description="What went wrong, for people", examples=[
        "bitstream rejected (BadMagic): expected magic b'SP' at byte 0, found b'\\x89P'"])


class ErrorBody(BaseModel):
    error: ErrorDetail


# ---------------------------------------------------------------------------- models


class ModelInfo(BaseModel):
    name: str
    version: int
    quality: Optional[int] = Field(None, description="Quality level (higher: more bits, better)")
    lmbda: Optional[float] = Field(None, description="Rate-distortion trade-off it was trained at")
    N: Optional[int] = Field(None, description="Channels of the transforms' hidden layers")
    M: Optional[int] = Field(None, description="Channels of the latent y")
    downsampling: Optional[int] = None
    adaptive: bool = Field(description="Ships the adaptive entropy bottleneck (adaptive=true "
                                       "and /v1/images:analyze work)")
    default: bool = Field(description="The model used when a request names none")
    metrics: Optional[dict[str, Any]] = None
    training: Optional[dict[str, Any]] = None


class ModelList(BaseModel):
    models: list[ModelInfo]
    default: Optional[str] = Field(None, description="Name of the default (lowest quality) model")
    analysis: bool = Field(description="Whether this server can run /v1/images:analyze at all")
    max_upload_bytes: int
    max_pixels: int


# ---------------------------------------------------------------------------- health


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class BrokenModel(BaseModel):
    path: str = Field(description="The file at fault (a config.json or a model file)")
    error: str = Field(description="What is wrong and how to fix it")


class Ready(BaseModel):
    status: str = Field(examples=["ready"])
    models: list[str] = Field(description="Image models loaded and answering")
    broken: list[BrokenModel] = Field(default_factory=list,
                                      description="Models skipped because they are broken")


# ---------------------------------------------------------------------------- analysis


class Reconstruction(BaseModel):
    bytes: int = Field(description="Container bytes of this coding of the image")
    bpp: float = Field(description="Bits per pixel: 8 * bytes / (height * width)")
    psnr: Optional[float] = Field(description="PSNR in dB of the decoded image against the "
                                              "upload (null when identical)")


class Reconstructions(BaseModel):
    static: Reconstruction
    adaptive: Optional[Reconstruction] = Field(description="null: the model has no adaptive "
                                                           "entropy bottleneck")


class Distributions(BaseModel):
    model_config = ConfigDict(extra="allow")
    centres: list[int] = Field(description="Per channel: the symbol the bins are centred on [C]")
    offsets: list[int] = Field(description="Bin offsets from the centre [B]")
    ideal: list[list[Optional[float]]] = Field(
        description="C x B: -log2 of the image's own symbol frequencies (null: probability 0)")
    static: list[list[Optional[float]]] = Field(
        description="C x B: -log2 probability under the model's static distributions")
    adaptive: Optional[list[list[Optional[float]]]] = Field(
        description="C x B: -log2 probability under the per-image adaptive distributions (null: "
                    "the model has no adaptive entropy bottleneck)")


class Analysis(BaseModel):
    """``splitinfer.image.analysis.analyze`` plus the decoded reconstructions: payload bytes and
    bpp of each variant (``static``, ``adaptive`` = side information + y, ``adaptive_side``,
    ``ideal``, ``nonlearned``, ``nonlearned_side``; null where the model has no adaptive part),
    ``saving`` relative to static (negative = smaller), ``gap_captured`` = adaptive saving /
    ideal saving."""
    model_config = ConfigDict(extra="allow")
    model: str
    height: int
    width: int
    pixels: int
    bytes: dict[str, Optional[float]]
    bpp: dict[str, Optional[float]]
    saving: dict[str, Optional[float]]
    gap_captured: Optional[float] = None
    distributions: Distributions
    reconstruction: Reconstructions
