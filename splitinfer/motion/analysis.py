"""The whole analysis: sweeps, random affines and video for one model, written to a folder
(``results.json``, ``summary.md`` and PNG figures)."""
from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..plots import motion as plots
from .extractors import ARCHS, DEFAULT_LAYERS, PROFILE_LAYERS, ROLES, build_extractor
from .images import default_data_dir, default_video_dir, list_images, load_image, make_canvas
from .metrics import nrmse_to_psnr
from .sweeps import full_sweeps, quick_sweeps, run_random, run_sweeps
from .video import analyse_video, frame_features, load_frames, synthetic_frames

__all__ = ["MotionConfig", "BAR", "run_analysis", "summary_markdown"]

# the acceptance bar of issue 6 (EfficientNet-Lite0): random-affine mean NRMSE
BAR = {"early_max": 0.015, "deep_max": 0.05, "deep_over_early_max": 6.0}


@dataclass
class MotionConfig:
    out: str
    arch: str = "efficientnet-lite0"
    weights: str | None = None
    layers: list[str] | None = None
    profile: bool = False  # also every block of the built-in model (profile figure)
    data: str | None = None  # image folder; None: ../shared/datasets/kodak if present, else the sample
    max_images: int | None = None
    video: str | None = None  # frame folder; None: ../shared/datasets/video/basketballpass, else synthetic
    video_frames: int | None = None
    gaps: tuple[int, ...] = (1, 4)
    sweeps: bool = True
    random: bool = True
    do_video: bool = True
    draws: int = 2048
    quick: bool = False
    seed: int = 0
    batch: int = 16
    canvas: int = 384
    crop: int = 224
    threads: int | None = None
    progress: bool = True

    @classmethod
    def quick_defaults(cls, out: str, **kw) -> "MotionConfig":
        base = dict(max_images=3, draws=96, video_frames=8, gaps=(1,), quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(out=out, **base)


def _round(x, sig: int = 6):
    if isinstance(x, float):
        return x if not math.isfinite(x) or x == 0 else float(f"{x:.{sig}g}")
    if isinstance(x, dict):
        return {k: _round(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v, sig) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return _round(x.item(), sig)
    return x


def _select_images(folder: Path | None, max_images: int | None) -> list[Path]:
    paths = list_images(folder)
    if max_images and len(paths) > max_images:
        idx = np.unique(np.linspace(0, len(paths) - 1, max_images).round().astype(int))
        paths = [paths[i] for i in idx]
    return paths


def _layer_list(cfg: MotionConfig) -> tuple[list[str], list[str]]:
    """(selected layers, all layers to compute)."""
    builtin = cfg.arch in ARCHS
    selected = list(cfg.layers) if cfg.layers else list(DEFAULT_LAYERS.get(cfg.arch, []))
    if not selected:
        raise ValueError("--layers is required for a custom model")
    if cfg.profile and builtin:
        allnames = list(PROFILE_LAYERS[cfg.arch]) + [n for n in selected if n not in PROFILE_LAYERS[cfg.arch]]
    else:
        allnames = selected
    return selected, allnames


def _summary(cfg, selected, geoms, random, videos) -> dict:
    roles = ROLES.get(cfg.arch, {}) if not cfg.layers else {}
    role_of = {v: k for k, v in roles.items()}
    rows = []
    for n in selected:
        row = {"layer": n, "role": role_of.get(n, ""), "stride": geoms[n]["stride"][0]}
        if random:
            st, zs = random["layers"][n]["stats"], random["layers"][n]["zero_stats"]
            row |= {"random_mean": st["mean"], "random_median": st["median"], "random_p95": st["p95"],
                    "random_psnr_db": nrmse_to_psnr(st["mean"]), "random_zero_mean": zs["mean"]}
        for v in videos:
            L = v["layers"][n]
            g = v["gap"]
            row |= {f"video_gap{g}_flow": L["summary"]["flow"]["mean"],
                    f"video_gap{g}_zero": L["summary"]["zero_flow_mask"]["mean"],
                    f"video_gap{g}_affine": L["summary"]["affine"]["mean"],
                    f"video_gap{g}_zero_affine_mask": L["summary"]["zero_affine_mask"]["mean"],
                    f"video_gap{g}_flow_wins": L["flow_beats_zero_fraction"],
                    f"video_gap{g}_affine_wins": L["affine_beats_zero_fraction"]}
        rows.append(row)
    out = {"rows": rows, "roles": roles}
    if random and "early" in roles and "deep" in roles:
        e = random["layers"][roles["early"]]["stats"]["mean"]
        d = random["layers"][roles["deep"]]["stats"]["mean"]
        bar = {"early_mean": e, "deep_mean": d, "deep_over_early": d / e,
               "early_ok": e < BAR["early_max"], "deep_ok": d < BAR["deep_max"],
               "ratio_ok": d / e <= BAR["deep_over_early_max"], "thresholds": BAR}
        v1 = next((v for v in videos if v["gap"] == 1), None)
        if v1 is not None:
            bar["video_flow_beats_zero_all_layers"] = all(v1["layers"][n]["flow_beats_zero_on_mean"] for n in selected)
            bar["video_affine_beats_zero_all_layers"] = all(v1["layers"][n]["affine_beats_zero_on_mean"] for n in selected)
        out["bar"] = bar
    return out


def summary_markdown(res: dict) -> str:
    s = res["summary"]
    gaps = [v["gap"] for v in res.get("video", [])]
    head = ["layer", "role", "stride", "random affine: mean NRMSE (median, p95)", "zero motion"]
    for g in gaps:
        head += [f"video t->t+{g}: flow-warped", "global affine", "zero motion", "flow wins"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in s["rows"]:
        cells = [f"`{r['layer']}`", r["role"], f"{r['stride']:g}"]
        if "random_mean" in r:
            cells += [f"{r['random_mean']:.4f} ({r['random_median']:.4f}, {r['random_p95']:.4f})", f"{r['random_zero_mean']:.4f}"]
        else:
            cells += ["-", "-"]
        for g in gaps:
            cells += [f"{r[f'video_gap{g}_flow']:.4f}", f"{r[f'video_gap{g}_affine']:.4f}",
                      f"{r[f'video_gap{g}_zero']:.4f}", f"{100 * r[f'video_gap{g}_flow_wins']:.0f} %"]
        lines.append("| " + " | ".join(cells) + " |")
    txt = [f"# Latent motion analysis: {res['model']}", "",
           f"{res['config']['n_images']} images, {res['config'].get('draws_done', 0)} random affines, "
           f"wall time {res['wall_time_s']:.0f} s.", ""] + lines
    if "bar" in s:
        b = s["bar"]
        txt += ["", f"Bar: early mean {b['early_mean']:.4f} < {b['thresholds']['early_max']} -> {b['early_ok']}; "
                    f"deep mean {b['deep_mean']:.4f} < {b['thresholds']['deep_max']} -> {b['deep_ok']}; "
                    f"deep/early {b['deep_over_early']:.2f} <= {b['thresholds']['deep_over_early_max']:g} -> {b['ratio_ok']}"
                    + (f"; video (t->t+1) flow-warped beats zero motion at every layer -> "
                       f"{b['video_flow_beats_zero_all_layers']}" if "video_flow_beats_zero_all_layers" in b else "")]
    return "\n".join(txt) + "\n"


def run_analysis(cfg: MotionConfig) -> dict:
    t0 = time.time()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    selected, allnames = _layer_list(cfg)
    ex = build_extractor(cfg.arch, allnames, cfg.weights)
    if cfg.arch not in ARCHS:  # label=module:stride:offset specs -> labels
        selected = allnames = ex.names
    crop_hw = (cfg.crop, cfg.crop)

    data_dir = Path(cfg.data) if cfg.data else default_data_dir()
    paths = _select_images(data_dir, cfg.max_images)
    canvases = [make_canvas(load_image(p), cfg.canvas) for p in paths]
    geoms = {n: {"stride": list(ex.geometry(n, crop_hw).stride), "offset": list(ex.geometry(n, crop_hw).offset),
                 "module": ex.spec(n).module} for n in allnames}

    res: dict = {"model": ex.description, "arch": cfg.arch, "layers": allnames, "selected_layers": selected,
                 "geometry_224": geoms}
    strides = {n: geoms[n]["stride"][0] for n in allnames}
    timings = {}
    if cfg.sweeps:
        t = time.time()
        res["sweeps"] = run_sweeps(ex, canvases, quick_sweeps() if cfg.quick else full_sweeps(), cfg.crop,
                                   cfg.batch, cfg.progress)
        timings["sweeps_s"] = time.time() - t
    random = None
    if cfg.random and cfg.draws > 0:
        t = time.time()
        random = res["random_affine"] = run_random(ex, canvases, cfg.draws, cfg.seed, cfg.crop, cfg.batch, cfg.progress)
        timings["random_s"] = time.time() - t
    videos = []
    video_source = None
    if cfg.do_video:
        t = time.time()
        vdir = Path(cfg.video) if cfg.video else default_video_dir()
        if vdir is not None:
            frames = load_frames(vdir, cfg.video_frames)
            video_source = str(vdir)
        else:
            frames = synthetic_frames(cfg.video_frames or 6)
            video_source = "synthetic: the sample image under a smooth camera motion"
        feats = frame_features(ex, frames, progress=cfg.progress)
        for g in cfg.gaps:
            if g < len(frames):
                videos.append(analyse_video(ex, frames, gap=g, progress=cfg.progress, feats=feats))
        res["video"] = videos
        res["geometry_video"] = {n: {"stride": list(ex.geometry(n, tuple(frames[0].shape[-2:])).stride),
                                     "offset": list(ex.geometry(n, tuple(frames[0].shape[-2:])).offset)}
                                 for n in allnames}
        timings["video_s"] = time.time() - t
    res["summary"] = _summary(cfg, selected, geoms, random, videos)
    res["wall_time_s"] = time.time() - t0
    res["timings"] = timings
    c = asdict(cfg)
    c |= {"images": [str(p) for p in paths], "n_images": len(paths), "video_source": video_source,
          "draws_done": cfg.draws if random else 0, "torch": torch.__version__, "threads": torch.get_num_threads(),
          "python": platform.python_version(), "machine": platform.machine()}
    res["config"] = c

    # figures
    figs = []
    title = res["model"]
    if "sweeps" in res:
        figs.append(plots.plot_sweeps(res["sweeps"], selected, out / "sweeps.png", f"{title}: one-parameter sweeps",
                                      strides))
    if random:
        figs.append(plots.plot_random_hist(random, selected, out / "random_affine_hist.png",
                                           f"{title}: {cfg.draws} random affines", strides))
        if len(allnames) > len(selected):
            v1 = next((v for v in videos if v["gap"] == 1), None)
            figs.append(plots.plot_profile(random, allnames, strides, out / "layer_profile.png", v1, selected,
                                           f"{title}: error per layer"))
    if videos:
        figs.append(plots.plot_video(videos, selected, out / "video.png", f"{title}: video", strides))
    res["figures"] = [f.name for f in figs]
    res["wall_time_s"] = time.time() - t0
    (out / "results.json").write_text(json.dumps(_round(res), indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    (out / "summary.md").write_text(summary_markdown(res))
    return res
