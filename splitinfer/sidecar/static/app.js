// The sidecar's page: upload -> /v1/images:compress -> /v1/images:decompress -> side by side,
// then /v1/images:analyze -> three heatmaps of -log2 p (channel x bin offset). No frameworks.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { models: [], analysis: false, file: null, seq: 0, urls: {} };
  const MAPS = ["ideal", "static", "adaptive"];
  const VMAX_CAP = 20;          // bits: the colour scale ends here (rarer symbols saturate)
  const NULL_COLOUR = [34, 34, 40];
  // viridis, sampled at 9 points; t = 0 dark purple .. 1 yellow
  const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
                   [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

  function colour(bits, vmax) {
    if (bits === null || bits === undefined || !Number.isFinite(bits)) return NULL_COLOUR;
    const t = 1 - Math.min(Math.max(bits / vmax, 0), 1);   // 0 bits (certain) -> bright
    const x = t * (VIRIDIS.length - 1), i = Math.min(Math.floor(x), VIRIDIS.length - 2), f = x - i;
    return VIRIDIS[i].map((a, k) => Math.round(a + f * (VIRIDIS[i + 1][k] - a)));
  }

  function setStatus(el, text, kind) {
    el.textContent = text;
    el.className = "status" + (kind ? " " + kind : "");
  }

  async function errorText(resp) {
    try {
      const j = await resp.json();
      if (j && j.error) return `${j.error.message} (${resp.status} ${j.error.code})`;
    } catch (e) { /* not JSON */ }
    return `HTTP ${resp.status} ${resp.statusText}`;
  }

  const fmt = (x, d) => (x === null || x === undefined || !Number.isFinite(x)) ? "–" : x.toFixed(d);
  const fmtInt = (x) => (x === null || x === undefined) ? "–" : Math.round(x).toLocaleString("en");

  function objectUrl(key, blob) {
    if (state.urls[key]) URL.revokeObjectURL(state.urls[key]);
    state.urls[key] = URL.createObjectURL(blob);
    return state.urls[key];
  }

  // ------------------------------------------------------------------------------------ models
  async function loadModels() {
    const r = await fetch("/v1/models");
    if (!r.ok) throw new Error(await errorText(r));
    const j = await r.json();
    state.models = j.models;
    state.analysis = j.analysis;
    const sel = $("model");
    sel.replaceChildren();
    for (const m of j.models) {
      const o = document.createElement("option");
      o.value = m.name;
      o.textContent = m.name + (m.lmbda != null ? `  (λ = ${m.lmbda})` : "") + (m.adaptive ? "" : "  · static only");
      o.selected = m.default;
      sel.append(o);
    }
    sel.disabled = j.models.length === 0;
    $("limits").textContent = `up to ${(j.max_upload_bytes / 2 ** 20).toFixed(0)} MiB and ` +
      `${(j.max_pixels / 1e6).toFixed(1)} Mpixels`;
    updateOptions();
    if (!j.models.length) setStatus($("status"), "This server has no image models.", "error");
    else setStatus($("status"), "Choose or drop an image.");
  }

  function currentModel() { return state.models.find((m) => m.name === $("model").value); }

  function updateOptions() {
    const m = currentModel(), box = $("adaptive");
    box.disabled = !m || !m.adaptive;
    if (box.disabled) box.checked = false;
    box.parentElement.title = box.disabled ? "this model ships no adaptive entropy bottleneck" : "";
    $("model-info").textContent = m ? [`quality ${m.quality ?? "?"}`, m.N && m.M ? `N = ${m.N}, M = ${m.M}` : "",
      m.adaptive ? "adaptive: yes" : "adaptive: no"].filter(Boolean).join(" · ") : "";
  }

  // ------------------------------------------------------------------------------------ pixels
  async function pixels(blob) {
    const bmp = await createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
    const c = document.createElement("canvas");
    c.width = bmp.width; c.height = bmp.height;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.drawImage(bmp, 0, 0);
    bmp.close();
    return ctx.getImageData(0, 0, c.width, c.height);
  }

  async function psnr(original, decoded) {
    const [a, b] = await Promise.all([pixels(original), pixels(decoded)]);
    if (a.width !== b.width || a.height !== b.height) return null;
    let se = 0;
    for (let i = 0; i < a.data.length; i += 4) {
      for (let k = 0; k < 3; k++) { const d = a.data[i + k] - b.data[i + k]; se += d * d; }
    }
    const mse = se / (a.width * a.height * 3);
    return mse === 0 ? Infinity : 10 * Math.log10(255 * 255 / mse);
  }

  // ------------------------------------------------------------------------------------ run
  function resetResults() {
    for (const id of ["bytes", "bpp", "psnr", "res-model", "res-size"]) $(id).textContent = "–";
    $("recon").removeAttribute("src");
    $("recon-info").textContent = "";
    $("download").classList.add("disabled");
    $("download").removeAttribute("href");
    clearHeatmaps();
  }

  function setFile(file) {
    if (!file) return;
    state.file = file;
    $("original").src = objectUrl("original", file);
    $("orig-info").textContent = `${file.name} · ${fmtInt(file.size)} bytes`;
    run();
  }

  async function run() {
    if (!state.file || !currentModel()) return;
    const seq = ++state.seq, stale = () => seq !== state.seq;
    const model = currentModel().name, adaptive = $("adaptive").checked;
    const status = $("status");
    document.body.dataset.state = "working";
    document.body.dataset.analysis = "pending";
    resetResults();
    try {
      setStatus(status, "Compressing…");
      const form = new FormData();
      form.append("file", state.file, state.file.name);
      form.append("model", model);
      form.append("adaptive", String(adaptive));
      let r = await fetch("/v1/images:compress", { method: "POST", body: form });
      if (!r.ok) throw new Error(await errorText(r));
      const h = r.headers, bits = await r.blob();
      if (stale()) return;
      const nbytes = Number(h.get("X-Splitinfer-Bytes")), bpp = Number(h.get("X-Splitinfer-Bpp"));
      const W = Number(h.get("X-Splitinfer-Width")), H = Number(h.get("X-Splitinfer-Height"));
      setStatus(status, "Decompressing…");
      r = await fetch("/v1/images:decompress", { method: "POST", body: bits,
                                                  headers: { "Content-Type": "application/octet-stream" } });
      if (!r.ok) throw new Error(await errorText(r));
      const png = await r.blob();
      if (stale()) return;
      const recon = $("recon");
      recon.src = objectUrl("recon", png);
      await recon.decode();
      const p = await psnr(state.file, png);
      if (stale()) return;
      $("res-model").textContent = h.get("X-Splitinfer-Model") + (adaptive ? " (adaptive)" : "");
      $("res-size").textContent = `${W} × ${H}`;
      $("bytes").textContent = fmtInt(nbytes);
      $("bpp").textContent = fmt(bpp, 4);
      $("psnr").textContent = p === Infinity ? "∞" : fmt(p, 2);
      $("recon-info").textContent = `${fmt(bpp, 3)} bpp · ${p === Infinity ? "∞" : fmt(p, 2)} dB`;
      const dl = $("download");
      dl.href = objectUrl("bits", bits);
      dl.download = state.file.name.replace(/\.[^.]*$/, "") + ".splt";
      dl.classList.remove("disabled");
      setStatus(status, `Compressed to ${fmtInt(nbytes)} bytes (${fmt(bpp, 4)} bpp) with ${model}.`, "ok");
      document.body.dataset.state = "done";
    } catch (e) {
      if (stale()) return;
      setStatus(status, e.message, "error");
      document.body.dataset.state = "error";
      document.body.dataset.analysis = "skipped";
      return;
    }
    analyse(seq, model);
  }

  async function analyse(seq, model) {
    const el = $("heat-status");
    setStatus(el, "Analysing…");
    try {
      const form = new FormData();
      form.append("file", state.file, state.file.name);
      form.append("model", model);
      const r = await fetch("/v1/images:analyze", { method: "POST", body: form });
      if (seq !== state.seq) return;
      if (!r.ok) {
        setStatus(el, "No distributions: " + await errorText(r), r.status === 501 ? "" : "error");
        document.body.dataset.analysis = "unavailable";
        return;
      }
      const a = await r.json();
      if (seq !== state.seq) return;
      $("heatmaps").hidden = false;
      drawHeatmaps(a);
      showRates(a);
      setStatus(el, "");
      document.body.dataset.analysis = "done";
    } catch (e) {
      if (seq !== state.seq) return;
      setStatus(el, e.message, "error");
      document.body.dataset.analysis = "error";
    }
  }

  // ------------------------------------------------------------------------------------ heatmaps
  function clearHeatmaps() {
    for (const k of MAPS) {
      const c = $("heat-" + k);
      c.getContext("2d").clearRect(0, 0, c.width, c.height);
      delete c.dataset.drawn;
      $("cap-" + k).textContent = "";
    }
    $("legend").getContext("2d").clearRect(0, 0, $("legend").width, $("legend").height);
    $("rates").hidden = true;
    $("heatmaps").hidden = true;
    setStatus($("heat-status"), "");
  }

  function niceTicks(lo, hi, n) {
    const span = Math.max(hi - lo, 1), raw = span / n;
    const p = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) || raw;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + 1e-9; v += step) out.push(Math.round(v));
    return out;
  }

  function drawHeatmap(canvas, matrix, offsets, vmax) {
    const C = matrix.length, B = offsets.length;
    const cssW = 360, cssH = 240, dpr = window.devicePixelRatio || 1;
    canvas.width = cssW * dpr; canvas.height = cssH * dpr;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const L = 40, R = 6, T = 6, Bm = 34, pw = cssW - L - R, ph = cssH - T - Bm;
    // rows: offsets ascending from the bottom
    const order = offsets.map((o, i) => [o, i]).sort((x, y) => x[0] - y[0]).map((x) => x[1]);
    const img = new ImageData(C, B);
    for (let c = 0; c < C; c++) {
      for (let r = 0; r < B; r++) {
        const rgb = colour(matrix[c][order[r]], vmax), px = ((B - 1 - r) * C + c) * 4;
        img.data[px] = rgb[0]; img.data[px + 1] = rgb[1]; img.data[px + 2] = rgb[2]; img.data[px + 3] = 255;
      }
    }
    const off = document.createElement("canvas");
    off.width = C; off.height = B;
    off.getContext("2d").putImageData(img, 0, 0);
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(off, L, T, pw, ph);
    // axes
    ctx.strokeStyle = "#8a939e"; ctx.fillStyle = "#444c56"; ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.strokeRect(L - .5, T - .5, pw + 1, ph + 1);
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const c of niceTicks(0, C - 1, 6)) {
      const x = L + (c + .5) * pw / C;
      ctx.beginPath(); ctx.moveTo(x, T + ph); ctx.lineTo(x, T + ph + 3); ctx.stroke();
      ctx.fillText(String(c), x, T + ph + 5);
    }
    ctx.fillText("channel", L + pw / 2, T + ph + 19);
    const sorted = order.map((i) => offsets[i]);
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const o of niceTicks(sorted[0], sorted[B - 1], 5)) {
      const r = sorted.indexOf(o);
      if (r < 0) continue;
      const y = T + (B - 1 - r + .5) * ph / B;
      ctx.beginPath(); ctx.moveTo(L - 3, y); ctx.lineTo(L, y); ctx.stroke();
      ctx.fillText(String(o), L - 5, y);
    }
    ctx.save();
    ctx.translate(10, T + ph / 2); ctx.rotate(-Math.PI / 2);
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText("bin offset", 0, 0);
    ctx.restore();
    canvas.dataset.drawn = "true";
  }

  function drawEmpty(canvas, text) {
    const cssW = 360, cssH = 240, dpr = window.devicePixelRatio || 1;
    canvas.width = cssW * dpr; canvas.height = cssH * dpr;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.fillStyle = "#66707c"; ctx.font = "13px system-ui, sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "middle";
    ctx.fillText(text, cssW / 2, cssH / 2);
    canvas.dataset.drawn = "empty";
  }

  function drawLegend(vmax) {
    const canvas = $("legend"), cssW = 600, cssH = 56, dpr = window.devicePixelRatio || 1;
    canvas.width = cssW * dpr; canvas.height = cssH * dpr;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssW, cssH);
    const x0 = 10, w = 380, y0 = 4, h = 14;
    for (let i = 0; i < w; i++) {
      const rgb = colour(vmax * i / (w - 1), vmax);
      ctx.fillStyle = `rgb(${rgb})`;
      ctx.fillRect(x0 + i, y0, 1.5, h);
    }
    ctx.strokeStyle = "#8a939e";
    ctx.strokeRect(x0 - .5, y0 - .5, w + 1, h + 1);
    ctx.fillStyle = "#444c56"; ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "center"; ctx.textBaseline = "top";
    for (const v of niceTicks(0, vmax, 5)) {
      const x = x0 + v / vmax * (w - 1);
      ctx.fillRect(x, y0 + h, 1, 3);
      ctx.fillText(String(v), x, y0 + h + 4);
    }
    ctx.textAlign = "left";
    ctx.fillText("−log₂ p (bits): brighter = more probable; larger values are clipped to the darkest",
                 x0, y0 + h + 20);
    ctx.fillStyle = `rgb(${NULL_COLOUR})`;
    ctx.fillRect(x0 + w + 30, y0, 14, h);
    ctx.fillStyle = "#444c56"; ctx.textBaseline = "middle";
    ctx.fillText("p = 0 (∞ bits)", x0 + w + 50, y0 + h / 2);
  }

  function drawHeatmaps(a) {
    const d = a.distributions;
    let vmax = 0;
    for (const k of MAPS) {
      for (const row of d[k] || []) for (const v of row) if (v !== null && Number.isFinite(v)) vmax = Math.max(vmax, v);
    }
    vmax = Math.max(1, Math.min(VMAX_CAP, Math.ceil(vmax)));
    for (const k of MAPS) {
      if (d[k]) drawHeatmap($("heat-" + k), d[k], d.offsets, vmax);
      else drawEmpty($("heat-" + k), "this model has no adaptive entropy bottleneck");
      const bpp = a.bpp && a.bpp[k];
      $("cap-" + k).textContent = bpp != null ? `${fmt(bpp, 4)} bpp` : "";
    }
    drawLegend(vmax);
  }

  function showRates(a) {
    const b = a.bytes || {}, p = a.bpp || {}, s = p.static;
    const rows = [["static", "static", null], ["adaptive", "adaptive", "adaptive_side"],
                  ["ideal (bound)", "ideal", null], ["non-learned", "nonlearned", "nonlearned_side"]];
    const tbody = $("rates").tBodies[0];
    tbody.replaceChildren();
    for (const [label, key, side] of rows) {
      if (p[key] == null && b[key] == null) continue;
      const tr = document.createElement("tr");
      const sideText = side && b[side] != null ? ` (side info ${fmtInt(b[side])} B)` : "";
      const pct = s && p[key] != null && key !== "static" ? 100 * (s - p[key]) / s : null;
      const vs = pct === null ? "" : pct >= 0 ? `${fmt(pct, 1)} % smaller` : `${fmt(-pct, 1)} % larger`;
      for (const t of [label + sideText, fmtInt(b[key]), fmt(p[key], 4), vs]) {
        const td = document.createElement("td"); td.textContent = t; tr.append(td);
      }
      tbody.append(tr);
    }
    const gap = s && p.adaptive != null && p.ideal != null && s > p.ideal ? (s - p.adaptive) / (s - p.ideal) : null;
    $("rates").tFoot.rows[0].cells[0].textContent = gap === null ? "" :
      `The adaptive distributions capture ${fmt(100 * gap, 1)} % of the gap between the static and the ideal rate.`;
    $("rates").hidden = false;
  }

  // ------------------------------------------------------------------------------------ wiring
  const drop = $("drop");
  $("file").addEventListener("change", (e) => setFile(e.target.files[0]));
  $("model").addEventListener("change", () => { updateOptions(); run(); });
  $("adaptive").addEventListener("change", run);
  for (const ev of ["dragenter", "dragover"]) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) drop.addEventListener(ev, () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); setFile(e.dataTransfer.files[0]); });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => e.preventDefault());
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") $("file").click(); });

  window.splitinfer = { drawHeatmaps, run, state };
  loadModels().catch((e) => setStatus($("status"), "Cannot list models: " + e.message, "error"));
})();
