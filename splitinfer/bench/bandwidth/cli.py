"""``splitinfer bench bandwidth``: end-to-end latency against link bandwidth for edge-only,
cloud-only and split inference, on real shaped links; and a bandwidth-adaptive client under a
changing link.

Pipelines (each end to end, one frame at a time, on the same test clouds):

- ``edge-<size>``: encoder and classifier both on the device (ONNX), nothing sent;
- ``cloud-raw``, ``cloud-draco-q<Q>``: the device preprocesses the cloud (P points, unit sphere)
  and sends it raw (float32, 12 kB at P=1024) or Draco-coded (``quantization_bits`` Q); the
  server decodes it and classifies it with a plain PointNet (a ``pointcloud-input-classification``
  model, see ``splitinfer.pointcloud.input_model``);
- ``split-<size>-<low|high>``: our codecs (the lowest and highest rate point shipped per size):
  preprocess + ONNX encoder + range coding on the device, range decoding + classifier on the server.

Per frame: edge compute (preprocess + encode, or the whole model for edge-only) and the network
part (send -> answer over one gRPC ClassifyStream: serialization on the shaped link, server
decode and classify, the answer). End-to-end latency at device slowdown K is
``K x edge_ms + network_ms``: frames are sequential, so a K-times slower device only stretches
its own compute (the link is idle meanwhile); every frame is measured once and reported at every
K of ``--device-slowdown`` (K=1 and the slower setting).

Links (``--link``): ``netns`` (root): the server and the client (a worker process) in two
network namespaces joined by a veth pair, ``tc qdisc tbf`` on the client's end (``--shape
uplink``, the default: the device's uplink is the bottleneck, the answers come back unshaped)
or on both ends (``--shape both``); see ``link/netns.py`` for rate, burst and limit.
``relay`` (no root): a token-bucket TCP relay on loopback (``link/relay.py``), charging
66 bytes of TCP/IP framing per 1448-byte segment so that its rate approximates tbf's L2 rate;
results are labelled with the link used. ``auto``: netns when possible. No propagation delay is
modelled (no netem): ``--rtt-ms`` adds a fixed round trip to every networked frame's latency
(after measurement, in the application; default 0).

Per (pipeline, bandwidth) cell the worker runs one unmeasured frame (TCP re-learns its round
trip after the rate change), then frames until ``--cell-seconds`` have passed, at least
``--min-frames`` and at most ``--max-frames``; cells continue through the clouds where the last
cell of that pipeline stopped, so accuracy is measured over many distinct clouds.

Adaptive experiment (``--adaptive``, on by default): a sensor stream (one cloud every
``--interval-ms``) while the link rate follows ``--schedule`` (default 10 -> 0.05 -> 10 Mbit/s),
once with the adaptive client (``--family``, ``--latency-budget``) and once with a fixed client
at the family's most accurate (highest-rate) model; per frame: latency from capture to answer,
chosen model and bits, correctness.

Writes JSON (``--json``), the latency-bandwidth plot (``--plot``) and the adaptive plot (next to
it, ``*_adaptive.png``), and prints the tables, the crossover bandwidths and the bars.
"""
from __future__ import annotations

import argparse

from . import ROOT
from .pipelines import DEFAULT_PLAIN_ONNX, DRACO_QBITS
from .rate_experiment import DEFAULT_SCHEDULE, parse_schedule
from .report import report
from .run import run_bench
from .sweep import MODES, SLOWDOWNS


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x)


def _run(a: argparse.Namespace) -> int:
    sl = _floats(a.device_slowdown)
    if 1.0 not in sl:
        sl = (1.0,) + sl
    result = run_bench(a.mode, a.link, a.shape, a.data, a.limit, a.models_dir, a.plain_onnx,
                       _floats(a.bandwidths) if a.bandwidths else None, sl,
                       tuple(int(q) for q in a.draco_qbits.split(",")), tuple(a.sizes.split(",")),
                       a.cell_seconds, a.min_frames, a.max_frames, a.rtt_ms, not a.no_sweep, not a.no_adaptive,
                       a.family, a.latency_budget, a.interval_ms, parse_schedule(a.schedule), a.window,
                       a.fixed_model, a.adaptive_slowdown, a.json, a.plot, not a.quiet)
    print(report(result))
    if a.json:
        print(f"wrote {a.json}" + "".join(f" and {result[k]}" for k in ("plot", "adaptive_plot") if result.get(k)))
    return 0


def register(subparsers) -> None:
    b = subparsers.add_parser("bandwidth", help="latency vs bandwidth: edge-only, cloud-only and split inference "
                                                "on shaped links, and the bandwidth-adaptive client",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--json", help="write the results here (and the plots next to it)")
    b.add_argument("--plot", help="latency-bandwidth plot (default: the --json path with .png; the adaptive "
                                  "plot goes next to it as *_adaptive.png)")
    b.add_argument("--mode", choices=sorted(MODES), default="short",
                   help="short (a few minutes: 5 bandwidths, ~4 s per cell, the bundled sample) or full "
                        "(13 bandwidths, ~20 s per cell, the ModelNet40 test set when present)")
    b.add_argument("--link", choices=["auto", "netns", "relay"], default="auto",
                   help="netns: tc tbf between network namespaces (root); relay: token-bucket relay on "
                        "loopback (no root); auto: netns when possible")
    b.add_argument("--shape", choices=["uplink", "both"], default="uplink",
                   help="shape the device's uplink only (default) or both directions")
    b.add_argument("--data", help="labelled clouds (.npz); default the bundled sample (short) or the "
                                  "ModelNet40 test set (full, when it exists)")
    b.add_argument("--limit", type=int, help="first N clouds only")
    b.add_argument("--models-dir", help="model repository")
    b.add_argument("--plain-onnx", help=f"plain PointNet ONNX for cloud-only when the repository has no "
                                        f"input model (default {DEFAULT_PLAIN_ONNX.relative_to(ROOT)})")
    b.add_argument("--bandwidths", help="Mbit/s, comma-separated (default per mode)")
    b.add_argument("--device-slowdown", default=",".join(f"{k:g}" for k in SLOWDOWNS), metavar="K[,K]",
                   help="edge compute x K (K=1 is always reported; default 1,8)")
    b.add_argument("--draco-qbits", default=",".join(str(q) for q in DRACO_QBITS), help="Draco quantization bits of the cloud-only pipelines, comma-separated")
    b.add_argument("--sizes", default="full,lite,micro", help="codec sizes of the split pipelines (default full,lite,micro)")
    b.add_argument("--cell-seconds", type=float, help="time per (pipeline, bandwidth) cell")
    b.add_argument("--min-frames", type=int, help="frames per cell at least (default: the mode's)")
    b.add_argument("--max-frames", type=int, help="frames per cell at most (default: the mode's)")
    b.add_argument("--rtt-ms", type=float, default=0.0,
                   help="add a round-trip propagation delay to every networked frame (application-level; no netem)")
    b.add_argument("--no-sweep", action="store_true", help="only the adaptive experiment")
    b.add_argument("--no-adaptive", action="store_true", help="only the sweep")
    b.add_argument("--family", default="all", help="adaptive: candidate models (names, sizes, or all)")
    b.add_argument("--latency-budget", type=float, metavar="MS",
                   help="adaptive: the budget (default: 2.5 frame intervals, see --interval-ms)")
    b.add_argument("--interval-ms", type=float,
                   help="adaptive: a frame every MS (default: the time the lowest scheduled rate needs for the "
                        "mean of the family's lowest and highest rate point's uplink bytes)")
    b.add_argument("--schedule", default=",".join(f"{r:g}:{s:g}" for r, s in DEFAULT_SCHEDULE),
                   help="adaptive: link rate over time, MBIT:SECONDS,... (default 10:15,0.05:15,10:15)")
    b.add_argument("--window", type=int, default=64, help="adaptive: frames in flight")
    b.add_argument("--fixed-model", help="adaptive: the fixed client's model (default the family's most accurate)")
    b.add_argument("--adaptive-slowdown", type=float, default=1.0, help="adaptive: device slowdown K")
    b.add_argument("--quiet", action="store_true", help="no progress bars")
    b.set_defaults(func=_run)
