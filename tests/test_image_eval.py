"""Image evaluation: PSNR / MS-SSIM, the JPEG / WebP anchors (real Pillow bytes), evaluate_codec on
a tiny factorized-prior codec exported through the real export path, the ``eval image`` /
``baseline image`` commands and scripts/make_image_results.py on the JSONs those produce."""
from __future__ import annotations

import io
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from splitinfer.baselines import image_codecs as baselines
from splitinfer.image.data import load_rgb
from splitinfer.metrics.image_quality import (_filter_valid, gaussian_window, min_side, ms_ssim, ms_ssim_db,
                                      psnr, ssim, ssim_terms)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "splitinfer" / "data" / "images"


@pytest.fixture(scope="module")
def image():
    return load_rgb(sorted(IMAGES.glob("*.png"))[0])


def _noisy(a, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(a + rng.normal(0, sigma, a.shape)), 0, 255).astype(np.uint8)


# -- metrics ---------------------------------------------------------------------------------------
def test_psnr_known_values(image):
    assert psnr(image, image) == math.inf
    b = image.astype(np.int16)
    b = np.where(b < 255, b + 1, b - 1).astype(np.uint8)  # every value off by exactly 1: MSE 1
    assert psnr(image, b) == pytest.approx(20 * math.log10(255), abs=1e-9)
    c = _noisy(image, 8)
    assert psnr(image, c) == pytest.approx(psnr(c, image))
    mse = np.mean((image.astype(float) - c) ** 2)
    assert psnr(image, c) == pytest.approx(10 * math.log10(255 ** 2 / mse))
    with pytest.raises(ValueError):
        psnr(image, image[:-1])


def test_gaussian_filter_matches_direct_2d_window():
    rng = np.random.default_rng(1)
    x = rng.uniform(0, 255, (23, 19, 2))
    g = gaussian_window()
    assert g.sum() == pytest.approx(1) and np.argmax(g) == 5
    w2 = np.outer(g, g)
    direct = np.array([[[np.sum(w2 * x[i:i + 11, j:j + 11, c]) for c in range(2)]
                        for j in range(19 - 10)] for i in range(23 - 10)])
    np.testing.assert_allclose(_filter_valid(x.copy(), g), direct, rtol=1e-12)


def test_ssim_constant_images_and_luminance_term():
    a = np.full((40, 40, 3), 100, np.uint8)
    b = np.full((40, 40, 3), 150, np.uint8)
    s, cs = ssim_terms(a.astype(float), b.astype(float))
    c1 = (0.01 * 255) ** 2
    np.testing.assert_allclose(s, (2 * 100 * 150 + c1) / (100 ** 2 + 150 ** 2 + c1))
    np.testing.assert_allclose(cs, 1.0)  # no structure in either image
    assert ssim(a, a) == pytest.approx(1.0)


def test_ms_ssim_properties(image):
    assert min(image.shape[:2]) >= min_side() == 161
    assert ms_ssim(image, image) == pytest.approx(1.0, abs=1e-12)
    assert ms_ssim(image, image, mode="luma") == pytest.approx(1.0, abs=1e-12)
    values = [ms_ssim(image, _noisy(image, s)) for s in (2, 6, 15, 35)]
    assert all(0 < v < 1 for v in values)
    assert values == sorted(values, reverse=True) and values[0] > 0.99 > values[-1]
    luma = [ms_ssim(image, _noisy(image, s), mode="luma") for s in (2, 15)]
    assert luma[0] > luma[1]
    b = _noisy(image, 10)
    assert ms_ssim(image, b) == pytest.approx(ms_ssim(b, image), abs=1e-12)
    # a uniform brightness shift leaves structure intact: only the luminance term moves
    shifted = np.clip(image.astype(int) + 3, 0, 255).astype(np.uint8)
    assert ms_ssim(image, shifted) > 0.995
    assert ms_ssim_db(0.99) == pytest.approx(20.0)
    with pytest.raises(ValueError, match="161"):
        ms_ssim(image[:150], image[:150])


# -- JPEG / WebP -----------------------------------------------------------------------------------
@pytest.mark.parametrize("codec,magic", [("jpeg", b"\xff\xd8\xff"), ("webp", b"RIFF")])
def test_baseline_real_bytes_and_rate_falls_with_quality(image, codec, magic):
    from PIL import Image
    rows = baselines.sweep([("img", image)], codec, (10, 40, 90))
    assert [r["quality"] for r in rows] == [10, 40, 90]
    bpp = [r["bpp"] for r in rows]
    assert bpp == sorted(bpp) and bpp[0] < bpp[-1] / 2
    assert [r["psnr"] for r in rows] == sorted(r["psnr"] for r in rows)
    assert [r["ms_ssim"] for r in rows] == sorted(r["ms_ssim"] for r in rows)
    data = baselines.encode(image, codec, 40)
    assert data.startswith(magic) and (codec != "webp" or data[8:12] == b"WEBP")
    assert rows[1]["bytes"] == len(data)
    assert rows[1]["bpp"] == pytest.approx(8 * len(data) / (image.shape[0] * image.shape[1]))
    out = baselines.decode(data)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert rows[1]["psnr"] == pytest.approx(psnr(image, out))
    with Image.open(io.BytesIO(data)) as im:
        assert im.format == codec.upper()
    with pytest.raises(ValueError):
        baselines.encode(image, "png", 50)


def test_jpeg_uses_420_subsampling(image):
    from PIL import Image, JpegImagePlugin
    with Image.open(io.BytesIO(baselines.encode(image, "jpeg", 75))) as im:
        assert JpegImagePlugin.get_sampling(im) == 2  # 4:2:0


def test_evaluate_baseline(tmp_path):
    from splitinfer.image.evaluate import evaluate_baseline, write_json
    r = evaluate_baseline("webp", [5, 60], IMAGES, limit=1)
    assert r["kind"] == "image-baseline" and r["count"] == 1 and r["settings"]["method"] == 6
    assert [p["quality"] for p in r["points"]] == [5, 60]
    assert r["points"][0]["bpp_mean"] < r["points"][1]["bpp_mean"]
    assert len(r["images"]) == 2
    assert json.loads(write_json(r, tmp_path / "x" / "w.json").read_text())["codec"] == "webp"


# -- learned codec -----------------------------------------------------------------------------------
def _export_tiny(root: Path, name: str, quality: int, seed: int) -> None:
    """A random FactorizedPrior(N=8, M=8) (last analysis layer scaled so that y_hat spans a few
    integers) exported with export_image, plus a tiny adaptive bottleneck trained for a few steps
    on the bundled images and exported into the same folder (real, if barely trained)."""
    import torch
    from splitinfer.nn.models import FactorizedPrior
    from splitinfer.training.adaptive import AdaptiveTrainConfig, AdaptiveTrainer
    from splitinfer.training.export_adaptive import export_adaptive
    from splitinfer.training.export_image import export_image
    torch.manual_seed(seed)
    model = FactorizedPrior(N=8, M=8).eval()
    with torch.no_grad():
        model.g_a[-1].weight.mul_(30)
        model.g_a[-1].bias.mul_(30)
    ckpt = root / f"{name}.pt"
    torch.save({"model": model.state_dict(), "epoch": 0, "wall": 0.0,
                "config": {"N": 8, "M": 8, "lmbda": 0.01 * quality, "patch": 128, "steps": 1,
                           "batch_size": 1, "lr": 1e-4}}, ckpt)
    data = root / "bsds"
    for split in ("train", "test", "val"):
        (data / split).mkdir(parents=True, exist_ok=True)
        for f in IMAGES.glob("*.png"):
            shutil.copy(f, data / split / f.name)
    cfg = AdaptiveTrainConfig(base=str(ckpt), out=str(root / f"run-{name}"), data=str(data),
                              bins=32, q_channels=8, width=8, patch=128, crops_per_image=2,
                              batch_size=4, steps=3, epochs=1, lr=3e-3, seed=seed)
    AdaptiveTrainer(cfg, progress=False).fit()
    folder = export_image(ckpt, name, quality, models=root / "models", version=1, recipe="test")
    export_adaptive(root / f"run-{name}" / "best.pt", folder)


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("imgeval")
    for q, seed in ((1, 0), (2, 1)):
        _export_tiny(root, f"image-tiny-q{q}", q, seed)
    return root / "models"


@pytest.fixture(scope="module")
def tiny_evals(tiny_repo):
    from splitinfer.image.evaluate import evaluate_codec
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(tiny_repo)
    return {n: evaluate_codec(n, IMAGES, repo) for n in ("image-tiny-q1", "image-tiny-q2")}


def test_evaluate_codec_bytes_metrics_and_round_trip(tiny_repo, tiny_evals):
    from splitinfer.codec import Container
    from splitinfer.repository import ModelRepository
    r = tiny_evals["image-tiny-q1"]
    files = sorted(IMAGES.glob("*.png"))
    assert r["kind"] == "image-codec-eval" and r["count"] == len(files) == len(r["images"])
    assert r["quality"] == 1 and r["N"] == 8 and r["M"] == 8
    assert r["roundtrip_exact_all"] is True
    assert r["adaptive_available"] and r["adaptive_evaluated"] and r["analysis_available"]
    assert r["adaptive_decoded_matches_static_all"] is True
    codec = ModelRepository(tiny_repo).load("image-tiny-q1")
    for rec, f in zip(r["images"], files):
        rgb = load_rgb(f)
        assert rec["image"] == f.name and (rec["height"], rec["width"]) == rgb.shape[:2]
        out = None
        for mode in ("static", "adaptive"):
            s = rec[mode]
            data = codec.compress(rgb, adaptive=mode == "adaptive")  # deterministic: same bytes
            c = Container.unpack(data)
            assert len(c.payloads) == (2 if mode == "adaptive" else 1)
            assert s["container_bytes"] == len(data) and s["payload_bytes"] == c.payload_size
            assert s["header_bytes"] == c.header_size == len(data) - c.payload_size
            assert s["bpp"] == pytest.approx(8 * s["payload_bytes"] / rgb.shape[0] / rgb.shape[1])
            assert s["bpp_container"] > s["bpp"] > 0
            assert s["encode_ms"] > 0 and s["decode_ms"] > 0
            decoded = codec.decompress(data)
            out = decoded if out is None else out
            assert np.array_equal(decoded, out)
        assert rec["adaptive"]["side_bytes"] == len(c.payloads[0])
        assert rec["adaptive"]["side_bytes"] + rec["adaptive"]["y_bytes"] == rec["adaptive"]["payload_bytes"]
        assert rec["psnr"] == pytest.approx(psnr(rgb, out))
        assert rec["ms_ssim"] == pytest.approx(ms_ssim(rgb, out))
        assert rec["latent_shape"] == [8, -(-rgb.shape[0] // 16), -(-rgb.shape[1] // 16)]
        a = rec["analysis"]  # analyze() counts the same payload bytes as the containers
        assert a["bytes"]["static"] == rec["static"]["payload_bytes"]
        assert a["bytes"]["adaptive"] == rec["adaptive"]["payload_bytes"]
        assert a["bytes"]["adaptive_side"] == rec["adaptive"]["side_bytes"]
        assert "distributions" not in a
    assert r["bpp_mean"] == pytest.approx(np.mean([i["static"]["bpp"] for i in r["images"]]))
    assert r["bpp_adaptive_mean"] == pytest.approx(np.mean([i["adaptive"]["bpp"] for i in r["images"]]))
    assert r["saving_adaptive_pct"] == pytest.approx(100 * (r["bpp_adaptive_mean"] / r["bpp_mean"] - 1))
    assert r["psnr_mean"] == pytest.approx(np.mean([i["psnr"] for i in r["images"]]))
    assert r["static"]["encode_ms_median"] == pytest.approx(
        np.median([i["static"]["encode_ms"] for i in r["images"]]))
    an = r["analysis"]
    assert set(an["bpp_mean"]) == {"static", "adaptive", "adaptive_side", "ideal", "nonlearned",
                                   "nonlearned_side"}
    assert an["bpp_mean"]["static"] == pytest.approx(r["bpp_mean"])
    assert an["bpp_mean"]["ideal"] < an["bpp_mean"]["static"]  # exact histograms, free side info
    s_, a_, i_ = (an["bpp_mean"][k] for k in ("static", "adaptive", "ideal"))
    assert an["saving_pct"]["ideal"] == pytest.approx(100 * (i_ / s_ - 1))
    assert an["gap_captured"] == pytest.approx((s_ - a_) / (s_ - i_))
    assert an["side_bits_mean"] == pytest.approx(8 * r["adaptive"]["side_bytes"])
    json.dumps(r, allow_nan=False)  # plain JSON


def test_evaluate_codec_static_only(tiny_repo):
    from splitinfer.image.evaluate import evaluate_codec
    from splitinfer.repository import ModelRepository
    r = evaluate_codec("image-tiny-q2", IMAGES, ModelRepository(tiny_repo), limit=1, adaptive=False)
    assert r["count"] == 1 and r["adaptive_available"] and not r["adaptive_evaluated"]
    assert "adaptive" not in r and "analysis" not in r and "adaptive" not in r["images"][0]
    assert r["roundtrip_exact_all"]


def test_cli_eval_and_baseline(tiny_repo, tmp_path, capsys):
    from splitinfer.image.cli import main
    out = tmp_path / "e.json"
    assert main(["eval", "image", "--model", "image-tiny-q2", "--models", str(tiny_repo),
                 "--data", str(IMAGES), "--json", str(out), "--limit", "1"]) == 0
    r = json.loads(out.read_text())
    assert r["count"] == 1 and r["model"] == "image-tiny-q2" and r["roundtrip_exact_all"]
    assert r["adaptive_evaluated"] and "distributions" not in r["images"][0]["analysis"]
    printed = capsys.readouterr().out
    assert "image-tiny-q2: 1 images" in printed and "; adaptive " in printed
    out = tmp_path / "j.json"
    assert main(["baseline", "image", "--codec", "jpeg", "--data", str(IMAGES), "--json", str(out),
                 "--qualities", "20", "80", "--limit", "1"]) == 0
    assert [p["quality"] for p in json.loads(out.read_text())["points"]] == [20, 80]


def test_cli_parsers_mount_on_existing_subcommands():
    import argparse

    from splitinfer.baselines.draco import register as draco
    from splitinfer.image.cli import add_parsers
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval")
    ev.add_subparsers(dest="task", required=True).add_parser("pointcloud")
    draco(sub)
    add_parsers(ev, sub.choices["baseline"])
    a = p.parse_args(["eval", "image", "--model", "m", "--data", "d", "--json", "o"])
    assert (a.model, a.limit, a.no_adaptive) == ("m", None, False)
    a = p.parse_args(["eval", "image", "--model", "m", "--data", "d", "--limit", "3", "--no-adaptive"])
    assert (a.limit, a.no_adaptive) == (3, True)
    a = p.parse_args(["baseline", "image", "--codec", "webp", "--data", "d", "--json", "o"])
    assert a.codec == "webp" and a.qualities is None
    assert p.parse_args(["baseline", "draco", "--plain-model", "x", "--data", "d"]).baseline == "draco"


def test_results_script(tiny_evals, tmp_path):
    from splitinfer.image.evaluate import evaluate_baseline, write_json
    res = tmp_path / "results"
    for name, r in tiny_evals.items():
        write_json(r, res / f"{name}_kodak.json")
    for codec in ("jpeg", "webp"):
        write_json(evaluate_baseline(codec, [1, 5, 30, 90], IMAGES, with_ms_ssim=False),
                   res / f"{codec}_kodak.json")
    (res / "notes.json").write_text('{"unrelated": 1}')
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_image_results.py"),
                        "--results", str(res)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    s = json.loads((res / "summary.json").read_text())
    fam = s["learned"]["image-tiny"]
    assert [pt["model"] for pt in sorted(fam["points"], key=lambda x: x["quality"])] == \
        ["image-tiny-q1", "image-tiny-q2"]
    assert set(s["baselines"]) == {"jpeg", "webp"}
    assert [pt["quality"] for pt in s["baselines"]["jpeg"]["points"]] == [1, 5, 30, 90]
    for key in ("static_vs_jpeg_psnr", "static_vs_webp_psnr"):
        d = fam["bd_rate"][key]  # a number where the PSNR ranges overlap, else None and the reason
        overlap = d.get("quality_overlap")
        if overlap is None or overlap[1] - overlap[0] < 0.1:  # MIN_OVERLAP_DB
            assert d["pchip"] is None and d["error"], d
        else:
            assert isinstance(d["pchip"], float) and "error" not in d, d
    ad = fam["adaptive"]
    assert [row["model"] for row in sorted(ad["rows"], key=lambda x: x["quality"])] == \
        ["image-tiny-q1", "image-tiny-q2"]
    for row in ad["rows"]:
        r = tiny_evals[row["model"]]
        assert row["static_bpp"] == pytest.approx(r["analysis"]["bpp_mean"]["static"])
        assert row["saving_adaptive"] == pytest.approx(r["analysis"]["saving_pct"]["adaptive"])
        assert row["saving_ideal"] < 0 and row["side_bits"] > 0
    assert ad["mean"]["saving_ideal"] == pytest.approx(
        np.mean([r["analysis"]["saving_pct"]["ideal"] for r in tiny_evals.values()]))
    assert set(ad["bd_rate_vs_static"]) == {"adaptive", "ideal", "nonlearned"}
    assert s["published"]["bd_rate_adaptive_mean"] == -6.95
    for png in ("rd_kodak.png", "adaptive_savings.png"):
        assert (res / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| image-tiny-q1 |" in p.stdout and "### JPEG" in p.stdout
    assert "adaptive encoding distributions" in p.stdout
