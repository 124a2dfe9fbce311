#!/usr/bin/env python
"""Screenshot of the image sidecar's web page, driven in headless Chromium (Playwright).

Starts ``python -m splitinfer.sidecar`` on a free loopback port over a model repository, waits
for /readyz, opens the page, uploads an image, waits until the reconstruction, the rates and the
heatmaps are shown, and saves a full-page screenshot (default results/image/sidecar_page.png)
plus what the page displayed (<out>.json).

usage: python scripts/sidecar_screenshot.py [--models models] [--image IMG] [--model NAME]
       [--adaptive] [--out results/image/sidecar_page.png] [--chromium /usr/bin/chromium]

The test suite (tests/test_sidecar_process.py) uses :class:`SidecarProcess` and :func:`drive`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT / "splitinfer" / "data" / "images" / "bsds500_val_21077.png"
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SidecarProcess:
    """``python -m splitinfer.sidecar`` on a free loopback port, ready on enter, stopped (SIGTERM)
    on exit; ``returncode`` is its exit status afterwards."""

    def __init__(self, models: str | Path, extra: list[str] | None = None, log: Path | None = None,
                 ready_timeout: float = 90.0, pythonpath: list[str | Path] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.models, self.extra, self.ready_timeout = str(models), list(extra or []), ready_timeout
        self.log_path = Path(log) if log else None
        self.pythonpath = [str(p) for p in pythonpath]
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    def __enter__(self) -> "SidecarProcess":
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        env["PYTHONPATH"] = os.pathsep.join(self.pythonpath + [str(ROOT)] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        cmd = [sys.executable, "-m", "splitinfer.sidecar", "--host", "127.0.0.1", "--port",
               str(self.port), "--models", self.models, "--log-level", "warning", *self.extra]
        self._log = open(self.log_path, "w") if self.log_path else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     cwd=ROOT)
        deadline = time.monotonic() + self.ready_timeout
        while True:  # /readyz answers 503 until the models are loaded
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"sidecar exited with {self.proc.returncode}: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise TimeoutError(f"sidecar not ready after {self.ready_timeout} s: {self.log()}")
            time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.returncode is None:
            self.proc.terminate()
            try:
                self.returncode = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.returncode = self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if getattr(self, "_log", None) not in (None, subprocess.DEVNULL):
            self._log.close()
            self._log = None

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""


def drive(url: str, image: str | Path, screenshot: str | Path | None = None,
          model: str | None = None, adaptive: bool = False, chromium: str = CHROMIUM,
          timeout_ms: int = 60_000) -> dict:
    """Open the page at ``url``, upload ``image`` and wait for the result and the heatmaps;
    returns what the page shows (texts, heatmap states, console errors) and saves a full-page
    screenshot to ``screenshot``."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}")
                    if m.type == "error" else None)
            page.set_default_timeout(timeout_ms)
            page.goto(url + "/")
            page.wait_for_selector("#model option", state="attached")
            if model:
                page.select_option("#model", model)
            if adaptive:
                page.check("#adaptive")
            page.set_input_files("#file", str(image))
            page.wait_for_function("document.body.dataset.state === 'error' || "
                                   "(document.body.dataset.state === 'done' && ['done', "
                                   "'unavailable', 'error'].includes(document.body.dataset.analysis))")
            shown = page.evaluate("""() => {
                const t = (id) => document.getElementById(id).textContent.trim();
                const recon = document.getElementById('recon');
                const heat = {};
                for (const k of ['ideal', 'static', 'adaptive']) {
                    const c = document.getElementById('heat-' + k);
                    let lit = 0;
                    if (c.dataset.drawn) {
                        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                        for (let i = 3; i < d.length; i += 4) if (d[i]) lit++;
                    }
                    heat[k] = {drawn: c.dataset.drawn || null, lit_pixels: lit};
                }
                return {state: document.body.dataset.state, analysis: document.body.dataset.analysis,
                        status: t('status'), heat_status: t('heat-status'), model: t('res-model'),
                        size: t('res-size'), bytes: t('bytes'), bpp: t('bpp'), psnr: t('psnr'),
                        recon_width: recon.naturalWidth, recon_height: recon.naturalHeight,
                        rates_shown: !document.getElementById('rates').hidden, heatmaps: heat};
            }""")
            shown["errors"] = errors
            if screenshot:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            return shown
        finally:
            browser.close()


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
