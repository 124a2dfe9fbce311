#!/usr/bin/env python
"""Markdown tables of one `splitinfer bench bandwidth` result: p50 / p95 ms per pipeline and link
rate for every device slowdown K, and the crossovers (the rates where two pipelines swap places,
as ``splitinfer.bench.bandwidth.crossover_table`` found them). The bench's own ``report()`` prints
the same figures as plain text.

usage: python scripts/make_bandwidth_tables.py results/bandwidth/bandwidth_short.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def latency_markdown(result: dict) -> str:
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
            out.append(f"| {pid} | {model} | " + " | ".join(cells) + f" | "
                       f"{_pct(result['accuracy'][pid]['accuracy'])} | {_pct(p.get('accuracy_config'))} |")
        out.append("")
    return "\n".join(out)


def crossover_markdown(result: dict) -> str:
    out = ["| K | pipeline a | pipeline b | crossovers (Mbit/s) | faster at the lowest rate |",
           "|---|---|---|---|---|"]
    for c in result["crossovers"]:
        if c["crossovers_mbit"]:
            at = ", ".join(f"{x:.2g}" for x in c["crossovers_mbit"])
            out.append(f"| {c['K']} | {c['a']} | {c['b']} | {at} | "
                       f"{c['a'] if c['a_faster_at_lowest_bw'] else c['b']} |")
    return "\n".join(out)


def main() -> int:
    result = json.loads(Path(sys.argv[1]).read_text())
    print(latency_markdown(result))
    print(crossover_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
