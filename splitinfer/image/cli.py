"""Image subcommands (torch-free), mounted on the top-level CLI by :func:`add_parsers`:

    splitinfer eval image --model NAME --data DIR --json OUT [--limit N] [--no-adaptive] [--models DIR]
    splitinfer baseline image --codec {jpeg,webp} --data DIR --json OUT [--qualities Q ...] [--limit N]
"""
from __future__ import annotations

import argparse

from ..baselines.image_codecs import CODECS, DEFAULT_QUALITIES


def _subparsers(p) -> argparse._SubParsersAction:
    """``p`` itself when it is a subparsers action, else the subparsers action of parser ``p``."""
    if isinstance(p, argparse._SubParsersAction):
        return p
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise ValueError(f"parser {p.prog!r} has no subcommands")


def _eval_image(a: argparse.Namespace) -> int:
    from ..repository import ModelRepository
    from .evaluate import evaluate_codec, write_json
    r = evaluate_codec(a.model, a.data, ModelRepository(a.models), limit=a.limit,
                       adaptive=not a.no_adaptive, progress=True)
    if a.json:
        write_json(r, a.json)
    s = r["static"]
    msg = (f"{r['model']}: {r['count']} images, static {s['bpp']:.4f} bpp "
           f"(+{s['header_bytes']:.0f} B container header), PSNR {r['psnr_mean']:.2f} dB, "
           f"MS-SSIM {r['ms_ssim_mean'] if r['ms_ssim_mean'] is None else round(r['ms_ssim_mean'], 4)}, "
           f"encode {s['encode_ms_median']:.1f} ms, decode {s['decode_ms_median']:.1f} ms (median)")
    if r["adaptive_evaluated"]:
        ad = r["adaptive"]
        msg += (f"; adaptive {ad['bpp']:.4f} bpp ({r['saving_adaptive_pct']:+.2f}%, side "
                f"{ad['side_bits']:.0f} bits/image), encode {ad['encode_ms_median']:.1f} ms, "
                f"decode {ad['decode_ms_median']:.1f} ms")
    if "analysis" in r and "saving_pct" in r["analysis"]:
        sv = r["analysis"]["saving_pct"]
        msg += "; analysis savings " + ", ".join(f"{k} {v:+.2f}%" for k, v in sv.items())
    msg += f"; round trip exact: {r['roundtrip_exact_all']}"
    print(msg)
    return 0


def _baseline_image(a: argparse.Namespace) -> int:
    from .evaluate import evaluate_baseline, write_json
    r = evaluate_baseline(a.codec, a.qualities, a.data, limit=a.limit, progress=True)
    if a.json:
        write_json(r, a.json)
    print(f"{r['codec']} on {r['count']} images ({r['settings']}):")
    for p in r["points"]:
        ms = "-" if p["ms_ssim_mean"] is None else f"{p['ms_ssim_mean']:.4f}"
        print(f"  q{p['quality']:>3}: {p['bpp_mean']:.4f} bpp  PSNR {p['psnr_mean']:.2f} dB  "
              f"MS-SSIM {ms}")
    return 0


def add_eval_parser(eval_subparsers) -> argparse.ArgumentParser:
    e = _subparsers(eval_subparsers).add_parser(
        "image", help="learned image codec on real bitstreams: bpp, PSNR, MS-SSIM, times")
    e.add_argument("--model", required=True, help="image-compression model name")
    e.add_argument("--data", required=True, help="folder of images (e.g. ../shared/datasets/kodak)")
    e.add_argument("--json", help="write the full result (per-image bytes, quality, times) here")
    e.add_argument("--limit", type=int, help="first N images only")
    e.add_argument("--no-adaptive", action="store_true",
                   help="static tables only (skip the adaptive encoding distributions)")
    e.add_argument("--models", help="model repository (default: models/ or $SPLITINFER_MODELS)")
    e.set_defaults(func=_eval_image)
    return e


def add_baseline_parser(baseline_subparsers) -> argparse.ArgumentParser:
    b = _subparsers(baseline_subparsers).add_parser(
        "image", help="JPEG / WebP (Pillow) quality sweep: real file bytes, PSNR, MS-SSIM")
    b.add_argument("--codec", choices=CODECS, required=True, help="the Pillow codec to sweep")
    b.add_argument("--data", required=True, help="folder of images")
    b.add_argument("--json", help="write the result here")
    b.add_argument("--qualities", type=int, nargs="+",
                   help="encoder qualities (default: jpeg "
                        f"{' '.join(map(str, DEFAULT_QUALITIES['jpeg']))}; webp "
                        f"{' '.join(map(str, DEFAULT_QUALITIES['webp']))})")
    b.add_argument("--limit", type=int, help="first N images only")
    b.set_defaults(func=_baseline_image)
    return b


def add_parsers(eval_subparsers, baseline_subparsers) -> None:
    """Add ``eval image`` and ``baseline image``. Each argument may be the subparsers action
    (``parser.add_subparsers(...)``'s return value) or the ``eval`` / ``baseline`` parser itself."""
    add_eval_parser(eval_subparsers)
    add_baseline_parser(baseline_subparsers)


def main(argv: list[str] | None = None) -> int:
    """``python -m splitinfer.image.cli eval image ...`` / ``... baseline image ...`` (the same
    commands without the rest of the ``splitinfer`` CLI)."""
    p = argparse.ArgumentParser(prog="splitinfer")
    sub = p.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("eval", help="evaluate on real bitstreams (torch-free)")
    ev.add_subparsers(dest="task", required=True)
    bl = sub.add_parser("baseline", help="input-compression baselines (torch-free)")
    bl.add_subparsers(dest="baseline", required=True)
    add_parsers(ev, bl)
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    raise SystemExit(main())
