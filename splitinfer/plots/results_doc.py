"""docs/results.md from the measured results (results/*): every table rendered from the JSON the
benchmarks and evaluations wrote, with the method notes that say how each number is measured.
``scripts/make_results_doc.py`` writes it; nothing in it is typed by hand."""
from __future__ import annotations

import json
from pathlib import Path

CITE_PC = ('Ulhaq & Bajić, "Learned point cloud compression for classification", IEEE MMSP 2023, '
           '[arXiv:2308.05959](https://arxiv.org/abs/2308.05959)')
CITE_ENC = ('Ulhaq & Bajić, "Learned compression of encoding distributions", IEEE ICIP 2024, '
            '[arXiv:2406.13059](https://arxiv.org/abs/2406.13059)')
CITE_MOTION = ('Ulhaq & Bajić, "Latent space motion analysis for collaborative intelligence", IEEE ICASSP '
               '2021, [arXiv:2102.04018](https://arxiv.org/abs/2102.04018)')


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _text(path: Path) -> str:
    return path.read_text().strip() if path.exists() else f"*({path.name} not generated yet)*"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def bandwidth_latency_markdown(result: dict) -> str:
    """p50 / p95 end-to-end latency per pipeline and link rate, one table per K."""
    rates = [f"{float(b):g}" for b in result["bandwidths"]]
    out = []
    for k in result["p50"]:
        out += [f"**{k}** (p50 / p95 ms)", "",
                "| pipeline | model | " + " | ".join(f"{r} Mbit/s" for r in rates)
                + " | accuracy (sample) | test accuracy |",
                "|---|---|" + "---:|" * (len(rates) + 2)]
        for p in result["pipelines"]:
            pid = p["id"]
            p50, p95 = result["p50"][k][pid], result["p95"][k][pid]
            cells = [f"{p50[b]:.1f} / {p95[b]:.1f}" for b in p50]
            model = p["model"] + (f" q={p['qbits']}" if "qbits" in p else "")
            out.append(f"| {pid} | {model} | " + " | ".join(cells) + " | "
                       f"{_pct(result['accuracy'][pid]['accuracy'])} | {_pct(p.get('accuracy_config'))} |")
        out.append("")
    return "\n".join(out)


def bandwidth_crossover_markdown(result: dict) -> str:
    out = ["| K | pipeline a | pipeline b | crossovers (Mbit/s) | faster at the lowest rate |",
           "|---|---|---|---|---|"]
    for c in result["crossovers"]:
        if c["crossovers_mbit"]:
            at = ", ".join(f"{x:.2g}" for x in c["crossovers_mbit"])
            out.append(f"| {c['K']} | {c['a']} | {c['b']} | {at} | "
                       f"{c['a'] if c['a_faster_at_lowest_bw'] else c['b']} |")
    return "\n".join(out)


def wire_bytes_markdown(result: dict) -> str:
    """Uplink / downlink L2 bytes per frame (the link's counters) per pipeline and link rate."""
    rates = [float(b) for b in result["bandwidths"]]
    cells = {(c["pipeline"], float(c["bandwidth_mbit"])): c for c in result["cells"]
             if c.get("wire_bytes_per_frame")}
    out = ["| pipeline | payload B (the 0.1 Mbit/s cell) | " + " | ".join(f"{r:g} Mbit/s" for r in rates) + " |",
           "|---|---:|" + "---:|" * len(rates)]
    for p in result["pipelines"]:
        row = [cells.get((p["id"], r)) for r in rates]
        if not any(row):
            continue
        at = cells.get((p["id"], 0.1)) or next(c for c in row if c)   # the 0.1 Mbit/s cell's frames
        payload = at["payload_bytes_mean"]
        out.append(f"| {p['id']} | {payload:.1f} | " + " | ".join(
            "-" if c is None else f"{c['wire_bytes_per_frame']['up']:.0f} / {c['wire_bytes_per_frame']['down']:.0f}"
            for c in row) + " |")
    return "\n".join(out)


def soak_markdown(result: dict) -> str:
    cfg, lat, rss = result["config"], result["latency_ms"], result["rss_mb"]

    def count(v) -> int:   # a total, or counts by status code
        return int(sum(v.values())) if isinstance(v, dict) else int(v)
    return (f"`{cfg['command']}` ({cfg['model']}, {cfg['streams']} streams, window {cfg['window']}, "
            f"{cfg['machine']}): {result['answered']:,} frames answered in {result['duration_s']:.0f} s "
            f"({result['throughput_per_s']:,.0f}/s), p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
            f"{count(result['frame_errors'])} frame and {count(result['stream_errors'])} stream errors; server RSS "
            f"{rss['first']:.0f} -> {rss['last']:.0f} MiB (max {rss['max']:.0f}).")


SERVER_COLUMNS = (("batching", "1 worker, batching"), ("batching_w2", "2 workers"),
                  ("no_batching", "no batching"), ("echo", "bare gRPC echo"))


def server_markdown(result: dict) -> str:
    """Clouds/s (p50 / p99 ms) of each server configuration per number of streams, every one
    beside the bare grpc.aio echo of the same run, and the unary round trip against its echo."""
    configs = result["configs"]
    cols = [(k, title) for k, title in SERVER_COLUMNS if k in configs]
    by = {k: {p["streams"]: p for p in configs[k]["points"]} for k, _ in cols}
    out = ["| streams | " + " | ".join(f"{t}: clouds/s, p50 / p99 ms" for _, t in cols) + " |",
           "|---:|" + "---|" * len(cols)]
    for n in sorted(by[cols[0][0]]):
        cells = []
        for k, _ in cols:
            q = by[k].get(n)
            cells.append("-" if q is None else f"{q['clouds_per_s']:,.0f}, {q['p50_ms']:.2f} / "
                         f"{q['p99_ms']:.2f}" + ("" if k == "echo" else f" ({q['fraction_of_echo']:.0%} of the echo)"))
        out.append(f"| {n} | " + " | ".join(cells) + " |")
    e = result.get("echo")
    if e:
        out += ["", f"Unary round trip {e['classify_p50_ms']:.2f} ms (p50) against a bare gRPC echo of the "
                    f"same request size, {e['echo_p50_ms']:.2f} ms: {e['ratio']:.2f}x (target {e['target']}x)."]
    return "\n".join(out)


def results_markdown(results: str | Path = "results") -> str:
    """The whole of docs/results.md."""
    r = Path(results)
    bw = _read(r / "bandwidth" / "bandwidth_short.json")
    soak = _read(r / "soak" / "soak.json")
    server = _read(r / "server" / "server.json")
    parts = [
        "# Results",
        "",
        "<!-- generated by scripts/make_results_doc.py from results/*; edit the generator, not this file -->",
        "",
        "All rates are real: 8 x the bytes of the range-coded payload (the container header, about "
        "30 bytes, is listed separately); accuracies are on the full test sets unless a table says "
        "otherwise. Times are medians on a 2-core x86 CPU, onnxruntime on one thread.",
        "",
        "## Point clouds: rate against accuracy (ModelNet40 test set, 2,468 clouds)",
        "",
        f"Method: {CITE_PC}. A PointNet-style encoder (pointwise convolutions, max pool, learned gain) "
        "runs on the edge; its latent is quantized and range-coded under a learned factorized entropy "
        "model (Ballé et al., \"Variational image compression with a scale hyperprior\", ICLR 2018, "
        "[arXiv:1802.01436](https://arxiv.org/abs/1802.01436)); the cloud decodes and classifies "
        "(PointNet: Qi et al., CVPR 2017, [arXiv:1612.00593](https://arxiv.org/abs/1612.00593)). "
        "Training minimises bits + λ · cross-entropy. *estimated bits* is the information content of "
        "the same symbols under the same tables (what published figures report). The Draco rows are "
        "the input-compression baseline: Draco-coded clouds classified by a plain PointNet. "
        "`splitinfer eval pointcloud` and `splitinfer baseline draco` measure every number; "
        "`scripts/make_pointcloud_results.py` renders the tables below.",
        "",
        "![rate-accuracy](../results/pointcloud/rate_accuracy.png)",
        "",
        _text(r / "pointcloud" / "table.md"),
        "",
        "Selection: every λ ships the candidate with the lowest validation loss (a stratified 10% "
        "split of the training set); test scores are reported, never used to choose. How each model "
        "was trained is in its `config.json` (`training`), from `scripts/recipes/pointcloud.json`. "
        "Knowledge distillation (Hinton et al., \"Distilling the knowledge in a neural network\", 2015, "
        "[arXiv:1503.02531](https://arxiv.org/abs/1503.02531)) with the model it replaces as the "
        "teacher (Furlanello et al., \"Born again neural networks\", ICML 2018) trained the highest-rate "
        "models; precise BatchNorm statistics (Wu & Johnson, \"Rethinking 'batch' in BatchNorm\", 2021) "
        "before every validation; cosine learning-rate schedules (Loshchilov & Hutter, ICLR 2017).",
        "",
        "![critical points](../results/pointcloud/critical_points.png)",
        "",
        "## Serving: throughput and latency (`splitinfer bench server`)",
        "",
        "Servers side by side in one run (one worker with dynamic batching, two workers, batch size "
        "1) and a bare grpc.aio echo of the same message size from the same load processes; the "
        "full model's real payloads, one frame in flight per stream, medians of 3 alternating "
        "repeats. Where a frame's time goes: docs/performance.md; replicas behind HAProxy: "
        "docs/deploy.md.",
        "",
        "![bench server](../results/server/server.png)",
        "",
        server_markdown(server) if server else "*(results/server/server.json not generated yet)*",
        "",

        "",
        "## Latency against bandwidth (`splitinfer bench bandwidth`)",
        "",
        "End to end per frame (device compute x K + send -> answer), the server and the device in two "
        "network namespaces joined by a veth pair whose uplink is shaped by `tc tbf`, 120 sample "
        "clouds; method and the loopback-relay variant in [bandwidth.md](bandwidth.md).",
        "",
        "![latency vs bandwidth](../results/bandwidth/bandwidth_short.png)",
        "",
        bandwidth_latency_markdown(bw) if bw else "*(bandwidth results not generated yet)*",
        "",
        bandwidth_crossover_markdown(bw) if bw else "",
        "",
        "![adaptive rate](../results/bandwidth/bandwidth_short_adaptive.png)",
        "",
        "### Bytes per frame on the wire (protocol v2)",
        "",
        "Uplink / downlink bytes per frame from the shaped link's counters (whole L2 frames: "
        "Ethernet, IP, TCP, HTTP/2 and gRPC framing included); why a 3-byte latent costs ~110-180 "
        "bytes, and what each setting saves: [protocol.md](protocol.md). The protocol v1 run: "
        "`results/bandwidth/bandwidth_short_v1.*`.",
        "",
        wire_bytes_markdown(bw) if bw else "",
        "",
        "## Images: adaptive encoding distributions (Kodak, 24 images)",
        "",
        f"Method: {CITE_ENC}, on a factorized-prior codec (Ballé et al., ICLR 2018) trained on BSDS500. "
        "`splitinfer eval image` and `splitinfer baseline image` measure; `scripts/make_image_results.py` "
        "renders.",
        "",
        "![RD on Kodak](../results/image/rd_kodak.png)",
        "",
        _text(r / "image" / "table.md"),
        "",
        "![savings](../results/image/adaptive_savings.png)",
        "",
        "## Latent-space motion (`splitinfer motion`)",
        "",
        f"Method: {CITE_MOTION}; details in [motion.md](motion.md).",
        "",
        "![motion sweeps](../results/motion/sweeps.png)",
        "",
        _text(r / "motion" / "summary.md").replace("# Latent motion analysis", "### Latent motion analysis"),
        "",
        "## Single-view scans (`splitinfer eval pointcloud --scans 0`)",
        "",
        "The ModelNet40 test set as clean clouds and through the scan simulator (seed 0); version 2 "
        "models are trained on clean clouds mixed with scans. Method: [scans.md](scans.md).",
        "",
        "![clean and scans](../results/pointcloud/rate_accuracy_scans.png)",
        "",
        _text(r / "pointcloud" / "scans_table.md"),
        "",
        "## Under load (`splitinfer bench soak`)",
        "",
        soak_markdown(soak) if soak else "*(results/soak/soak.json not generated yet)*",
        "",
        "![soak](../results/soak/soak.png)",
        "",
    ]
    return "\n".join(parts)
