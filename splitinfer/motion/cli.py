"""``splitinfer motion``: latent-space motion analysis.

Mount on the main CLI with :func:`register` (``register(subparsers)`` adds the ``motion``
subcommand and sets ``func``); or run standalone: ``python -m splitinfer.motion ...``.
Importing this module does not import torch.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_arguments", "register", "run", "main", "build_parser"]

DESCRIPTION = """Latent-space motion analysis: move the input image by an affine motion, warp the reference
feature tensor by the same motion (translation rescaled by the layer's stride) and measure the NRMSE
against the moved image's tensor over the predictable elements; one-parameter sweeps, random
6-parameter affines, and real video (dense flow / global affine vs zero motion). Writes
results.json, summary.md and PNG figures to --out."""


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", required=True, help="output folder (results.json, summary.md, *.png)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run, under 2 minutes on a CPU: 3 images, 96 random draws, coarse sweeps, 8 video frames")
    p.add_argument("--arch", default="efficientnet-lite0",
                   help="efficientnet-lite0 (pretrained, default), resnet34, densenet121 (random weights unless "
                        "--weights), or package.module:callable returning any torch.nn.Module")
    p.add_argument("--weights", help="state_dict file to load into the model (torchvision key names for resnet34/densenet121)")
    p.add_argument("--layers", nargs="+",
                   help="layers: built-in names (e.g. stem_conv blocks.7 blocks.15; conv0 block3 block7; pool3 pool4) or, "
                        "for any model, label=module.name[:stride[:offset]] (stride inferred, offset estimated if omitted)")
    p.add_argument("--profile", action="store_true", help="also score every block of the built-in model (layer_profile.png)")
    p.add_argument("--data", help="folder of test images (default ../shared/datasets/kodak when present, else the shipped sample)")
    p.add_argument("--max-images", type=int, help="use at most N images (evenly spaced)")
    p.add_argument("--draws", type=int, help="random affine draws (default 2048; --quick 96)")
    p.add_argument("--video", help="folder of frames (default ../shared/datasets/video/basketballpass when present, "
                                   "else a synthetic pan of the sample image)")
    p.add_argument("--video-frames", type=int, help="use the first N frames")
    p.add_argument("--gaps", type=int, nargs="+", help="frame gaps to predict across (default 1 4; --quick 1)")
    p.add_argument("--no-sweeps", action="store_true", help="skip the single-parameter motion sweeps")
    p.add_argument("--no-random", action="store_true", help="skip the random affine motions")
    p.add_argument("--no-video", action="store_true", help="skip the video frame pairs")
    p.add_argument("--seed", type=int, default=0, help="seed of the random motions (default 0)")
    p.add_argument("--batch", type=int, default=16, help="moved views per forward pass")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def run(a: argparse.Namespace) -> int:
    from .analysis import MotionConfig, run_analysis  # torch is imported here, not at registration

    common = dict(arch=a.arch, weights=a.weights, layers=a.layers, profile=a.profile, data=a.data,
                  video=a.video, sweeps=not a.no_sweeps, random=not a.no_random, do_video=not a.no_video,
                  seed=a.seed, batch=a.batch, threads=a.threads, progress=not a.no_progress)
    opt = dict(max_images=a.max_images, draws=a.draws, video_frames=a.video_frames,
               gaps=tuple(a.gaps) if a.gaps else None)
    if a.quick:
        cfg = MotionConfig.quick_defaults(a.out, **common, **opt)
    else:
        cfg = MotionConfig(out=a.out, **common, **{k: v for k, v in opt.items() if v is not None})
    res = run_analysis(cfg)
    from .analysis import summary_markdown
    print(summary_markdown(res))
    print(f"wrote {a.out}/results.json, summary.md, " + ", ".join(res["figures"]))
    return 0


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``motion`` subcommand to an ``argparse`` sub-parsers object; sets ``func=run``."""
    p = subparsers.add_parser("motion", help="latent-space motion analysis (needs torch)", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="splitinfer motion", description=DESCRIPTION)
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
