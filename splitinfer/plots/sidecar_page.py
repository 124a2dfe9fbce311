"""The image sidecar's web page as a picture: driven in headless Chromium (Playwright), an image
uploaded, the reconstruction, the rates and the heatmaps awaited, a full-page screenshot saved
(``scripts/sidecar_screenshot.py``)."""
from __future__ import annotations

from pathlib import Path

CHROMIUM = "/usr/bin/chromium"


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
