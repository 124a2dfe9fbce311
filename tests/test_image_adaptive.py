"""Adaptive encoding distributions (Ulhaq & Bajić, ICIP 2024): the torch modules (histogram KDE,
h_a,q / h_s,q), a tiny real training run, export, and the torch-free runtime (exact round trips,
malformed side information), the non-learned baseline and the per-image analysis.

Everything runs on the bundled images (splitinfer/data/images) with a tiny FactorizedPrior made
here (random weights, its last analysis layer scaled so that y_hat spans a few integers); no
../shared data or runs/ needed."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from splitinfer.codec import CdfTables, Container, CorruptPayload, decode_grid, encode_grid
from splitinfer.image.adaptive import histogram, tables_from_p_hat
from splitinfer.image.data import image_files, load_rgb
from splitinfer.baselines.histogram import decode_histograms, encode_histograms

IMAGES = Path(__file__).resolve().parents[1] / "splitinfer" / "data" / "images"
NAME = "image-tiny-q1"


@pytest.fixture(scope="module")
def torch():
    t = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    t.set_num_threads(1)
    return t


@pytest.fixture(scope="module")
def rgbs():
    return [load_rgb(p) for p in image_files(IMAGES)]


# ------------------------------------------------------------------ torch-free pieces


def test_numpy_histogram_counts_window():
    flat = np.array([[0, 0, 1, -1, 5, -9], [3, 3, 3, 2, 2, 10]])
    counts = histogram(flat, low=np.array([-2, 1]), bins=4)
    assert counts.tolist() == [[0, 1, 2, 1], [0, 2, 3, 0]]  # 5, -9 and 10 fall outside


def test_tables_from_p_hat_deterministic_and_codable():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(16, 0.3), size=5).astype(np.float32)
    p = 2.0 ** -16 + (1 - 16 * 2.0 ** -16) * p
    low = np.array([-8, -7, -8, -9, -8])
    t1 = tables_from_p_hat(p, low)
    t2 = tables_from_p_hat(p * (1 + 1e-7), low)  # float noise below the log2 grid
    assert t1 == t2
    y = rng.integers(-40, 40, size=(5, 300)).astype(np.int32)  # escapes included
    assert np.array_equal(decode_grid(encode_grid(y, t1), t1, 300), y)


def test_nonlearned_histogram_round_trip():
    rng = np.random.default_rng(1)
    y = np.round(rng.laplace(0, [[0.5], [2.0], [6.0], [0.1]], size=(4, 500))).astype(np.int32)
    centres = np.zeros(4, np.int64)
    static = CdfTables.from_pmfs(np.full(4, -3), [np.full(7, 1 / 7)] * 4, np.full(4, 1e-3))
    for prior in (None, static):
        side, tables = encode_histograms(y, centres, 0.5, prior)
        assert decode_histograms(side, centres, 500, 0.5, prior) == tables
        assert np.array_equal(decode_grid(encode_grid(y, tables), tables, 500), y)
    for junk in (b"\xff" * 3, b"", b"\x00\x01" * 9):
        try:  # junk either decodes to some valid tables or is CorruptPayload
            assert isinstance(decode_histograms(junk, centres, 500, step=0.5), CdfTables)
        except CorruptPayload:
            pass


# ------------------------------------------------------------------ torch modules


def test_histogram_kde_forward_is_hard_histogram_and_gradient_flows(torch):
    from splitinfer.nn.entropy_models.adaptive import HistogramKDE
    kde = HistogramKDE(centres=[0, 1], bins=4)  # windows -2..1 and -1..2
    y = torch.tensor([[[0.3, -1.6, 0.0, 7.0], [1.2, 1.4, -0.4, 2.49]]], requires_grad=True)
    p = kde(y)
    ref = histogram(np.round(y.detach().numpy()[0]).astype(np.int64), kde.low.numpy(), 4) / 4
    assert np.allclose(p.detach().numpy()[0], ref)
    w = torch.arange(8, dtype=torch.float32).view(1, 2, 4) ** 2
    (p * w).sum().backward()
    g = y.grad.numpy()[0]
    # soft estimate: d/dy sum_b w_b max(0, 1 - |y - b|) / n = (w[ceil] - w[floor]) / n
    wn = w.numpy()[0]
    assert g[0, 0] == pytest.approx((wn[0, 3] - wn[0, 2]) / 4)   # 0.3: bins 0 (idx 2), 1 (idx 3)
    assert g[0, 1] == pytest.approx((wn[0, 1] - wn[0, 0]) / 4)   # -1.6: bins -2, -1
    assert g[0, 3] == 0.0                                         # far outside the window
    assert g[1, 0] == pytest.approx((wn[1, 3] - wn[1, 2]) / 4)   # 1.2 on window -1..2
    assert np.all(np.isfinite(g))


def test_transforms_shapes_and_p_hat_normalised(torch):
    from splitinfer.nn.entropy_models.adaptive import AdaptiveEntropyBottleneck
    m = AdaptiveEntropyBottleneck(np.zeros(16, np.int64), bins=32, q_channels=8, width=16)
    p = torch.rand(3, 16, 32).softmax(-1)
    q = m.h_a(p)
    assert q.shape == (3, 8, 4)
    p_hat = m.h_s(torch.round(q))
    assert p_hat.shape == (3, 16, 32)
    assert torch.allclose(p_hat.sum(-1), torch.ones(3, 16), atol=1e-5)
    assert float(p_hat.detach().min()) >= m.h_s.floor * 0.999
    o = m(torch.randint(-20, 20, (2, 16, 8, 8)).float(), training=True)
    assert o["R_y"].shape == (2,) and o["R_q"].shape == (2,)
    assert float(o["escapes"].sum()) > 0  # values beyond +-16 are escapes


# ------------------------------------------------------------------ tiny base + training + export


@pytest.fixture(scope="module")
def built(torch, tmp_path_factory):
    """A tiny base codec exported with export_image, an adaptive module trained on the bundled
    images and exported into the same folder."""
    from splitinfer.nn.models import FactorizedPrior
    from splitinfer.training.adaptive import AdaptiveTrainConfig, AdaptiveTrainer
    from splitinfer.training.export_adaptive import export_adaptive
    from splitinfer.training.export_image import export_image

    tmp = tmp_path_factory.mktemp("adaptive")
    torch.manual_seed(0)
    base = FactorizedPrior(8, 16)
    with torch.no_grad():
        base.g_a[-1].weight.mul_(30)
        base.g_a[-1].bias.mul_(30)
    ckpt = tmp / "base.pt"
    torch.save({"model": base.state_dict(), "epoch": 0, "wall": 0.0,
                "config": {"N": 8, "M": 16, "lmbda": 0.01, "patch": 128, "steps": 1,
                           "batch_size": 1, "lr": 1e-4}}, ckpt)
    data = tmp / "data"
    for split in ("train", "test", "val"):
        (data / split).mkdir(parents=True)
        for f in image_files(IMAGES):
            shutil.copy(f, data / split / f.name)
    cfg = AdaptiveTrainConfig(base=str(ckpt), out=str(tmp / "run"), data=str(data), bins=32,
                              q_channels=8, width=16, patch=128, crops_per_image=4,
                              batch_size=8, steps=25, epochs=2, lr=3e-3, seed=0)
    trainer = AdaptiveTrainer(cfg, progress=False)
    before = trainer.validate()
    record = trainer.fit()
    models = tmp / "models"
    folder = export_image(ckpt, NAME, 1, models=models)
    export_adaptive(tmp / "run" / "best.pt", folder)
    return {"tmp": tmp, "ckpt": ckpt, "models": models, "folder": folder, "before": before,
            "record": record, "trainer": trainer}


def test_tiny_training_lowers_the_rate(built):
    log = [json.loads(x) for x in (built["tmp"] / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2
    assert built["record"]["val_adaptive_bits"] < built["before"]["val_adaptive_bits"]
    assert (built["tmp"] / "run" / "best.pt").exists() and log[-1]["wall_s"] > 0


def test_export_writes_roles_and_config(built):
    from splitinfer.repository import ModelRepository
    cfg = json.loads((built["folder"] / "config.json").read_text())
    for role in ("h_a_q", "h_s_q", "q_tables"):
        assert cfg["files"][role] in cfg["sha256"]
    a = cfg["adaptive"]
    assert a["bins"] == 32 and len(a["centres"]) == 16 and a["training"]["epochs"] == 2
    assert a["training"]["lambda_q"] == pytest.approx(128 * 128 / (768 * 512), rel=1e-4)
    repo = ModelRepository(built["models"])
    repo.verify(repo.config(NAME))
    # the adaptive part is part of the model's identity: its digest is recorded
    assert cfg["digest"] == repo.config(NAME).digest
    # versions are immutable: exporting into the existing version is refused, nothing changes
    from splitinfer.training.export_image import export_image
    with pytest.raises(FileExistsError, match="immutable"):
        export_image(built["ckpt"], NAME, 1, models=built["models"], version=1)
    assert json.loads((built["folder"] / "config.json").read_text()) == cfg


def test_torch_free_round_trip_is_exact(built, rgbs):
    from splitinfer.repository import ModelRepository
    codec = ModelRepository(built["models"]).load(NAME)
    for rgb in rgbs:
        y = codec.analysis(rgb)
        data = codec.compress(rgb, adaptive=True)
        assert len(Container.unpack(data).payloads) == 2
        y2, H, W = codec.unpack(data)
        assert (H, W) == rgb.shape[:2] and np.array_equal(y2, y)
        y3, _, _ = codec.unpack(codec.compress(rgb))
        assert np.array_equal(y3, y)
        assert codec.decompress(data).shape == rgb.shape


def test_malformed_side_information_raises_corrupt_payload(built, rgbs):
    from splitinfer.repository import ModelRepository
    codec = ModelRepository(built["models"]).load(NAME)
    ad = codec.adaptive
    with pytest.raises(CorruptPayload):
        ad.tables_from_side_information(b"\x5a" * 100000)  # longer than any valid payload
    with pytest.raises(CorruptPayload):
        ad.tables_from_side_information("not bytes")
    rng = np.random.default_rng(0)
    for k in range(40):  # anything else either decodes to valid tables or is CorruptPayload
        junk = rng.integers(0, 256, size=int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        try:
            assert isinstance(ad.tables_from_side_information(junk), CdfTables)
        except CorruptPayload:
            pass
    # inside a container with a valid CRC: unpack raises a BitstreamError or returns a latent
    c = Container.unpack(codec.compress(rgbs[0], adaptive=True))
    bad = Container(c.digest, kind=c.kind, shape=c.shape,
                    payloads=(bytes([255 - b for b in c.payloads[0]]) + b"\x01", c.payloads[1]))
    try:
        codec.unpack(bad.pack())
    except ValueError as e:  # BitstreamError is a ValueError
        assert isinstance(e, CorruptPayload) or type(e).__module__.startswith("splitinfer")


def test_analyze_keys_and_ideal_below_static(built, rgbs):
    from splitinfer.image.analysis import analyze
    from splitinfer.repository import ModelRepository
    codec = ModelRepository(built["models"]).load(NAME)
    r = analyze(codec, rgbs[0])
    keys = {"static", "adaptive", "adaptive_side", "ideal", "nonlearned", "nonlearned_side"}
    assert set(r["bytes"]) == keys and set(r["bpp"]) == keys
    assert set(r["saving"]) == {"adaptive", "ideal", "nonlearned"}
    assert r["pixels"] == rgbs[0].shape[0] * rgbs[0].shape[1] == r["height"] * r["width"]
    assert r["bytes"]["ideal"] <= r["bytes"]["static"]
    assert r["bpp"]["static"] == pytest.approx(8 * r["bytes"]["static"] / r["pixels"])
    assert r["bytes"]["adaptive"] > r["bytes"]["adaptive_side"] > 0
    assert r["gap_captured"] == pytest.approx(r["saving"]["adaptive"] / r["saving"]["ideal"])
    d = r["distributions"]
    assert len(d["centres"]) == 16 and len(d["offsets"]) == 32
    for k in ("ideal", "static", "adaptive"):
        a = np.asarray(d[k])
        assert a.shape == (16, 32) and np.all((a >= 0) & (a <= 16))
