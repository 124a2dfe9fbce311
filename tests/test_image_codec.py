"""Image latent coding: the per-channel grid coder and the torch-free ImageCodec round trip."""
from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest

from splitinfer.codec import (BadMagic, CdfTables, Container, CorruptPayload, ModelMismatch,
                              PayloadKind, UnknownModel, decode_grid, encode_grid)

IMAGES = sorted((__import__("pathlib").Path(__file__).resolve().parents[1]
                 / "splitinfer" / "data" / "images").glob("*.png"))


def _laplace_tables(rng, C, support=12, tail=1e-4):
    xs = np.arange(-support, support + 1)
    pmfs = []
    for _ in range(C):
        p = np.exp(-np.abs(xs) / rng.uniform(0.3, 3.0))
        pmfs.append(p / p.sum() * (1 - tail))
    return CdfTables.from_pmfs(np.full(C, -support), pmfs, np.full(C, tail))


def test_grid_round_trip_with_escapes_and_size_close_to_information():
    rng = np.random.default_rng(1)
    t = _laplace_tables(rng, 16)
    s = np.round(rng.laplace(0, 1.5, (16, 500))).astype(np.int32)
    s[2, 7], s[5, 0], s[9, 499] = 40, -2**31, 2**31 - 1  # escapes, including the int32 extremes
    data = encode_grid(s, t)
    assert np.array_equal(decode_grid(data, t, 500), s)
    info = sum(t.information_bits(s[:, i]) for i in range(500))
    assert info <= 8 * len(data) <= info + 64


def test_grid_channel_without_in_range_symbols():
    t = CdfTables.from_pmfs([0, 3], [np.zeros(0), np.array([0.5, 0.5])], [1.0, 1e-3])
    s = np.array([[5, -1, 0], [3, 4, 3]], np.int32)
    assert np.array_equal(decode_grid(encode_grid(s, t), t, 3), s)


@pytest.mark.parametrize("bad", [b"\xff" * 5000, b"\x01"])
def test_grid_corrupt_payload_is_a_bitstream_error(bad):
    t = _laplace_tables(np.random.default_rng(0), 4)
    try:
        out = decode_grid(bad, t, 10)
    except CorruptPayload:
        return
    assert out.shape == (4, 10)  # undetectable corruption still decodes to a well-formed tensor


def test_grid_rejects_wrong_shapes():
    t = _laplace_tables(np.random.default_rng(0), 4)
    with pytest.raises(ValueError):
        encode_grid(np.zeros((3, 5), np.int32), t)
    with pytest.raises(ValueError):
        encode_grid(np.zeros((4, 5), np.float32), t)


# ---------------------------------------------------------------------------- ImageCodec

@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from splitinfer.nn.models import FactorizedPrior
    from splitinfer.repository import ModelRepository
    from splitinfer.training.export_image import export_image
    from splitinfer.training.image import ImageTrainConfig
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    cfg = ImageTrainConfig(N=8, M=8)
    model = FactorizedPrior(cfg.N, cfg.M)
    ckpt = root / "tiny.pt"
    torch.save({"model": model.state_dict(), "config": asdict(cfg), "epoch": 0, "wall": 0.0}, ckpt)
    export_image(ckpt, "image-tiny", quality=1, models=root)
    return ModelRepository(root)


def test_codec_round_trip_on_bundled_images(tiny_repo):
    from splitinfer.image.data import load_rgb
    codec = tiny_repo.load("image-tiny")
    for path in IMAGES:
        rgb = load_rgb(path)[:150, :201]  # not a multiple of 16: padded, then cropped back
        data = codec.compress(rgb)
        c = Container.unpack(data)
        assert c.kind == PayloadKind.IMAGE_LATENT and c.shape == (150, 201)
        y_hat, H, W = codec.unpack(data)
        assert np.array_equal(y_hat, codec.analysis(rgb)) and (H, W) == (150, 201)
        out = codec.decompress(data)
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.array_equal(out, codec.synthesis(codec.analysis(rgb), 150, 201))


def test_codec_errors(tiny_repo):
    codec = tiny_repo.load("image-tiny")
    rgb = np.zeros((32, 32, 3), np.uint8)
    data = codec.compress(rgb)
    with pytest.raises(BadMagic):
        codec.decompress(b"XXXX" + data[4:])
    other = Container("0" * 16, PayloadKind.IMAGE_LATENT, (32, 32), (b"",)).pack()
    with pytest.raises(ModelMismatch, match=codec.config.digest[:16]):
        codec.decompress(other)
    wrong_kind = Container(codec.digest, PayloadKind.POINTCLOUD_LATENT, (8,), (b"",)).pack()
    with pytest.raises(CorruptPayload):
        codec.decompress(wrong_kind)
    if codec.adaptive is None:
        with pytest.raises(UnknownModel):
            codec.compress(rgb, adaptive=True)
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError):
            codec.compress(bad)


def test_tiny_image_training_lowers_loss(tmp_path):
    torch = pytest.importorskip("torch")
    from splitinfer.nn.models import FactorizedPrior
    torch.manual_seed(0)
    model = FactorizedPrior(8, 8)
    x = torch.rand(2, 3, 32, 32)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(15):
        o = model.rate_distortion(x, 0.01)
        opt.zero_grad()
        o["loss"].backward()
        opt.step()
        losses.append(float(o["loss"].detach()))
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name", ["image-factorized-q1", "image-factorized-q2", "image-factorized-q3"])
def test_shipped_codec_round_trip_static_and_adaptive(name):
    """The shipped models (torch-free): both containers decode to the encoder's y_hat."""
    from splitinfer.image.data import load_rgb
    from splitinfer.repository import ModelRepository
    repo = ModelRepository()
    repo.verify(repo.config(name))
    codec = repo.load(name)
    rgb = load_rgb(IMAGES[0])
    y_hat = codec.analysis(rgb)
    static, adaptive = codec.compress(rgb), codec.compress(rgb, adaptive=True)
    assert len(Container.unpack(adaptive).payloads) == 2
    for data in (static, adaptive):
        decoded, H, W = codec.unpack(data)
        assert np.array_equal(decoded, y_hat) and (H, W) == rgb.shape[:2]
    assert np.array_equal(codec.decompress(adaptive), codec.decompress(static))
