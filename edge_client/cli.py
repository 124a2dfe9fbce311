"""``splitinfer stream``: encode point clouds on the edge and classify them in the cloud.

    splitinfer stream --server 127.0.0.1:50051 --model micro-p1024-l1000 cloud.ply more/ x.npz

Every input is read and checked before anything is sent (a NaN, infinite, empty or wrongly
shaped cloud is an error naming the file, exit status 2). Then the clouds are encoded and
streamed over one ClassifyStream with a window of unanswered frames, reconnecting and resending
after a dropped connection. Prints a progress bar (or, with --table, a line per frame) and a
summary; --json writes per-frame records and the summary. Exit status 0 when every frame was
answered without error, 1 otherwise.

Bandwidth-adaptive rate: with ``--latency-budget MS --family FAMILY``, every frame is encoded
with the model of the family that maximises expected accuracy (each model's measured test
accuracy) subject to a predicted end-to-end latency within the budget, from the goodput and
round trip the client measures on its own acknowledgements (``edge_client/rate_control.py``).
FAMILY: model names and/or sizes (full, lite, micro) or "all", comma-separated.

    splitinfer stream --server HOST:PORT --family full --latency-budget 100 clouds.npz
"""
from __future__ import annotations

import argparse
import json
import sys

from .options import add_connection_arguments, token_from_args


def add_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="point-cloud files (.ply .pcd .xyz .pts .txt .bin), meshes (.off .obj; "
                        ".stl .gltf .glb with open3d), .npy/.npz arrays, or folders of them")
    add_connection_arguments(s)
    s.add_argument("--model", help="model name, e.g. micro-p1024-l1000 (required without --family)")
    s.add_argument("--family", help="adaptive rate: candidate models (names, sizes full/lite/micro, or all)")
    s.add_argument("--latency-budget", type=float, metavar="MS",
                   help="adaptive rate: keep the end-to-end latency per frame under MS (needs --family)")
    s.add_argument("--interval-ms", type=float, default=0.0,
                   help="send a frame every MS (a sensor's frame rate; default 0: as fast as the window allows)")
    s.add_argument("--device-slowdown", type=float, default=1.0, metavar="K",
                   help="emulate a device K times slower (encode time x K)")
    s.add_argument("--models", dest="models_dir", metavar="DIR",
                   help="local model repository with the edge encoder (default: models/ or $SPLITINFER_MODELS)")
    s.add_argument("--json", metavar="OUT", help="write per-frame records and the summary ('-': stdout)")
    s.add_argument("--window", type=int, default=32, help="frames in flight, unanswered (default 32)")
    s.add_argument("--limit", type=positive_int, help="stream only the first N clouds (N >= 1)")
    s.add_argument("--seed", type=int, default=0, help="point sampling seed")
    s.add_argument("--mesh-points", type=int, default=2048, help="points sampled from each mesh")
    s.add_argument("--min-points", type=positive_int, default=8,
                   help="refuse a frame with fewer valid (finite) points (default 8); NaN and "
                        "infinite points are dropped and counted in the frame's record")
    s.add_argument("--fields", default="xyzi",
                   help="float32 record layout of .bin scans, e.g. xyzi (KITTI, default) or xyz")
    s.add_argument("--coder", choices=["auto", "constriction", "python"],
                   help="range coder: constriction (fast, where it installs), python (everywhere; "
                        "the same bytes), auto (default; env SPLITINFER_CODER)")
    s.add_argument("--lb", choices=["round_robin", "pick_first"],
                   help="client-side load balancing over the addresses of --server: a dns:/// name "
                        "(e.g. a Kubernetes headless Service) or ip:port,ip:port (docs/deploy.md)")
    s.add_argument("--reconnect-timeout", type=float, default=30.0,
                   help="give up after this many seconds without progress (default 30)")
    s.add_argument("--top-k", type=int, default=0, metavar="K",
                   help="answers carry the K most probable classes (default 0: label and probability)")
    s.add_argument("--timings", action="store_true", help="answers carry the server's timings")
    s.add_argument("--table", action="store_true", help="print a line per frame instead of a progress bar")
    s.add_argument("--quiet", action="store_true", help="no progress, only the summary")


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def _fmt(v, spec: str, none: str = "-") -> str:
    return none if v is None else format(v, spec)


def print_summary(s: dict, out=sys.stdout) -> None:
    acc = "-" if s["accuracy"] is None else f"{100 * s['accuracy']:.1f}% of {s['labelled']}"
    print(f"{s['model']}: {s['acknowledged']}/{s['frames_sent']} answered "
          f"({s['failed']} failed, {s['lost']} lost, {s['resent']} resent, {s['reconnects']} reconnects), "
          f"accuracy {acc}, {_fmt(s['bits_mean'], '.1f')} bits/cloud, "
          f"encode {_fmt(s['encode_ms_mean'], '.2f')} ms, "
          f"server {_fmt(s['server_decode_ms_mean'], '.2f')} + {_fmt(s['server_inference_ms_mean'], '.2f')} ms, "
          f"round trip p50 {_fmt(s['rtt_ms_p50'], '.2f')} / p95 {_fmt(s['rtt_ms_p95'], '.2f')} ms, "
          f"{_fmt(s['clouds_per_s'], '.1f')} clouds/s", file=out)
    if s.get("error"):
        print(f"error: {s['error']}", file=out)


def run(a: argparse.Namespace) -> int:
    from splitinfer.pointcloud.io import read_clouds
    from splitinfer.pointcloud.preprocess import InvalidPointCloud
    from splitinfer.repository import UnknownModel

    from .client import EdgeClient

    # the caller's thread encodes while gRPC's threads send and receive: a 1 ms GIL switch
    # interval (instead of 5 ms) keeps answers from waiting behind an encode (the round trip
    # measured otherwise includes up to tens of ms of GIL waits)
    sys.setswitchinterval(min(sys.getswitchinterval(), 0.001))
    from splitinfer.codec import coders
    try:
        if a.coder:   # otherwise SPLITINFER_CODER, else auto
            coders.set_default(a.coder)
    except ImportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from splitinfer.tokens import TokenFileError
    try:
        token = token_from_args(a)
    except TokenFileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not a.model and not a.family:
        print("error: --model or --family is required", file=sys.stderr)
        return 2
    if (a.latency_budget is None) != (a.family is None):
        print("error: --latency-budget and --family go together", file=sys.stderr)
        return 2
    try:
        client = EdgeClient(a.server, a.model, models_dir=a.models_dir, token=token, tls=a.tls,
                            tls_ca=a.tls_ca, tls_server_name=a.tls_server_name, window=a.window,
                            reconnect_timeout_s=a.reconnect_timeout, seed=a.seed,
                            slowdown=a.device_slowdown, lb=a.lb, top_k=max(0, a.top_k),
                            timings=a.timings, min_points=a.min_points)
    except ValueError as e:  # a --server list that is not addresses
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        controller = None
        try:
            if a.family:
                controller = make_controller(client, a.family, a.latency_budget)
                client.model_name = controller.candidates[0].name
            classes = list(client.edge_model().classes)
        except (UnknownModel, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        try:
            clouds = read_clouds(a.inputs, mesh_points=a.mesh_points, seed=a.seed, classes=classes,
                                 fields=a.fields)
        except (InvalidPointCloud, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if a.limit:
            clouds = clouds[: a.limit]
        for c in clouds:  # labels of an npz with its own class list: map them by name
            if c.label_name is not None and c.label_name in classes:
                c.label = classes.index(c.label_name)

        bar = None
        if a.table and not a.quiet:
            print(f"{'seq':>5} {'cloud':<40} {'label':<14} {'truth':<14} {'bits':>6} "
                  f"{'enc ms':>7} {'rtt ms':>7}", flush=True)
        elif not a.quiet:
            from tqdm import tqdm
            bar = tqdm(total=len(clouds), desc=a.model, unit="cloud", file=sys.stderr, disable=None)

        def on_result(r):
            if bar is not None:
                bar.update(1)
                if r.correct is not None:
                    bar.set_postfix(bits=r.bits, rtt_ms=f"{r.rtt_ms:.1f}")
            elif a.table and not a.quiet:
                truth = classes[r.true_label] if r.true_label is not None and r.true_label < len(classes) else "-"
                label = r.class_name if r.ok else f"ERR {r.error}"
                print(f"{r.seq:>5} {r.name[-40:]:<40} {label:<14} {truth:<14} {r.bits:>6} "
                      f"{r.encode_ms:>7.2f} {r.rtt_ms:>7.2f}", flush=True)

        stream_in = clouds
        if a.interval_ms > 0:
            stream_in = paced(clouds, a.interval_ms / 1e3)
        try:
            report = client.run(stream_in, on_result=on_result, controller=controller)
        except InvalidPointCloud as e:  # pragma: no cover - checked above
            print(f"error: {e}", file=sys.stderr)
            return 2
        finally:
            if bar is not None:
                bar.close()
        summary = report.summary()
        print_summary(summary, sys.stdout if a.json != "-" else sys.stderr)
        out = report.to_json()
        if controller is not None:
            within = [r.latency_ms <= a.latency_budget for r in report.results if r.ok]
            out["adaptive"] = {"budget_ms": a.latency_budget,
                               "within_budget": (sum(within) / len(within)) if within else None,
                               "candidates": [vars(c) for c in controller.candidates],
                               "decisions": [d.record() for d in controller.decisions]}
            print(f"adaptive: {_fmt(out['adaptive']['within_budget'], '.1%')} of frames within "
                  f"{a.latency_budget:g} ms; models used {summary['models']}",
                  file=sys.stdout if a.json != "-" else sys.stderr)
        if a.json:
            text = json.dumps(out, indent=1)
            if a.json == "-":
                print(text)
            else:
                with open(a.json, "w") as f:
                    f.write(text + "\n")
        return 0 if (summary["failed"] == 0 and summary["lost"] == 0 and not summary["error"]) else 1
    finally:
        client.close()


def paced(items, interval_s: float):
    """Yield the items at a fixed rate (one every interval_s), like a sensor."""
    import time
    t0 = time.perf_counter()
    for i, item in enumerate(items):
        delay = t0 + i * interval_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield item


def make_controller(client, family: str, budget_ms: float, **params):
    """A RateController over ``family`` with the encode times measured here (warms the encoders)."""
    from splitinfer.repository import ModelRepository

    from .rate_control import RateController, candidate_from_config, resolve_family
    repo = ModelRepository(client.models_dir)
    configs = resolve_family(repo, family)
    enc = client.warm_up([c.name for c in configs])
    cands = sorted((candidate_from_config(c, enc[c.name]) for c in configs), key=lambda c: c.payload_bytes)
    return RateController(cands, budget_ms, **params)


def register(subparsers) -> None:
    s = subparsers.add_parser("stream", help="encode point clouds here, classify them on a server",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(s)
    s.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m edge_client", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))
