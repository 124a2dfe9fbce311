#!/usr/bin/env python
"""Screenshot of the image sidecar's web page, driven in headless Chromium (Playwright).

Starts ``python -m splitinfer.sidecar`` on a free loopback port over a model repository
(:class:`splitinfer.sidecar.process.SidecarProcess`), waits for /readyz, opens the page, uploads
an image, waits until the reconstruction, the rates and the heatmaps are shown, and saves a
full-page screenshot (default results/image/sidecar_page.png) plus what the page displayed
(<out>.json) (:func:`splitinfer.plots.sidecar_page.drive`).

usage: python scripts/sidecar_screenshot.py [--models models] [--image IMG] [--model NAME]
       [--adaptive] [--out results/image/sidecar_page.png] [--chromium /usr/bin/chromium]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from splitinfer.plots.sidecar_page import CHROMIUM, drive  # noqa: E402
from splitinfer.sidecar.process import SidecarProcess  # noqa: E402

DEFAULT_IMAGE = ROOT / "splitinfer" / "data" / "images" / "bsds500_val_21077.png"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default=str(ROOT / "models"), help="model repository")
    ap.add_argument("--image", default=str(DEFAULT_IMAGE))
    ap.add_argument("--model", help="model to pick on the page (default: the server's default)")
    ap.add_argument("--adaptive", action="store_true", help="tick 'adaptive distributions'")
    ap.add_argument("--out", default=str(ROOT / "results" / "image" / "sidecar_page.png"))
    ap.add_argument("--chromium", default=CHROMIUM)
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with SidecarProcess(a.models, log=out.with_suffix(".log")) as server:
        shown = drive(server.url, a.image, out, a.model, a.adaptive, a.chromium)
    out.with_suffix(".log").unlink(missing_ok=True)
    shown.update(image=str(Path(a.image).name), models=str(a.models))
    out.with_suffix(".json").write_text(json.dumps(shown, indent=1) + "\n")
    print(json.dumps(shown, indent=1))
    print(f"wrote {out}")
    return 0 if shown["state"] == "done" and not shown["errors"] else 1


if __name__ == "__main__":
    sys.exit(main())
