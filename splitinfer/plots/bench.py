"""Figures of the benchmarks (``splitinfer bench server``, ``bench soak``) from their result
dicts; None where matplotlib is not installed (the JSON is the result, the figure a view of it)."""
from __future__ import annotations

from pathlib import Path

from .figure import pyplot

_STYLES = {"echo": ("bare gRPC echo", "k", ":"), "no_batching": ("no batching", "C1", "--")}


def _style(key: str, targets: dict | None = None) -> tuple[str, str, str]:
    if key in _STYLES:
        return _STYLES[key]
    if targets and key in targets:
        return (f"{key} ({targets[key]})", f"C{list(targets).index(key) % 10}", "-")
    workers = int(key.rsplit("_w", 1)[1]) if "_w" in key else 1
    return (f"dynamic batching, {workers} worker{'s' if workers > 1 else ''}", f"C{(workers - 1) * 2}", "-")


def plot_server_bench(result: dict, path: str) -> str | None:
    """``splitinfer bench server``: clouds/s and latency against concurrent streams, per
    configuration, against the bare gRPC echo; None without matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for key, cfg in result["configs"].items():
        label, color, ls = _style(key, result["target"])
        pts = cfg["points"]
        xs = [p["streams"] for p in pts]
        ax1.plot(xs, [p["clouds_per_s"] for p in pts], marker="o", ls=ls, color=color, label=label)
        ax2.plot(xs, [p["p50_ms"] for p in pts], marker="o", ls=ls, color=color, label=f"{label} p50")
        ax2.plot(xs, [p["p99_ms"] for p in pts], marker="o", ls=ls, color=color, alpha=0.35, label=f"{label} p99")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent streams")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax1.set_ylabel("clouds (echo: messages) / s")
    ax2.set_ylabel("latency (ms)")
    ax2.set_yscale("log")
    e = result["echo"]
    fractions = ", ".join(f"{k if result['target'] else _style(k)[0]} {f:.0%}"
                          for k, f in result["fraction_of_echo_at_max_streams"].items())
    fig.suptitle(f"{result['model']} on {result['machine']['cpus']} CPUs, window {result['settings']['window']}: "
                 f"clouds/s as a fraction of the bare streaming echo at {result['streams'][-1]} streams: {fractions}\n"
                 f"unary round trip {e['classify_p50_ms']:.3f} ms vs bare echo {e['echo_p50_ms']:.3f} ms "
                 f"({e['ratio']:.2f}x)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_soak(result: dict, path: Path) -> Path | None:
    """``splitinfer bench soak``: answers/s, latency and server RSS over time; None without
    matplotlib."""
    try:
        plt = pyplot()
    except ImportError:
        return None
    s = result["series"]
    t = [p["t_s"] for p in s]
    fig, ax = plt.subplots(3, 1, figsize=(7, 7), sharex=True)
    ax[0].plot(t, [p["answered_per_s"] for p in s])
    ax[0].set_ylabel("answers / s")
    ax[1].plot(t, [p["p50_ms"] for p in s], label="p50")
    ax[1].plot(t, [p["p99_ms"] for p in s], label="p99")
    ax[1].set_ylabel("latency (ms)")
    ax[1].legend()
    ax[2].plot(t, [p["rss_mb"] for p in s])
    ax[2].set_ylabel("server RSS (MiB)")
    ax[2].set_xlabel("time (s)")
    c = result["config"]
    fig.suptitle(f"soak: {c['streams']} streams x {c['duration_s']:g} s, {c['model']}, window {c['window']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
