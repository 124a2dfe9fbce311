"""``splitinfer bench server``: throughput and latency of the cloud server against the bare gRPC
transport it runs on, with and without dynamic batching, one process or several (``--workers``),
or of a deployed endpoint (``--target``, e.g. HAProxy in front of replicas).

Servers run side by side on loopback: ours with dynamic batching (``--max-batch-size`` frames,
greedy unless ``--max-queue-delay-ms``) for every count of ``--workers`` (default 1 and 2), ours
without batching (one process), and a bare grpc.aio echo: a bidirectional stream that returns each
request's bytes unchanged (no protobuf, no work) and a unary method doing the same. The same
load-generator processes (grpc.aio) drive 1, 8 and 64 concurrent streams against each, every
stream a closed loop with ``--window`` frames in flight, sending real containers of the sample
clouds (to the echo: the same serialized requests, so the messages have the same size); each
stream has its own connection (``--connections stream``, as separate edge devices do, and what
lets the kernel spread them over workers) unless ``--connections process``. The points alternate
between the servers, in an order that flips every repeat, so that a drifting background load hits
all alike; medians over ``--repeats``. Per point: clouds per second, p50/p99 latency (send to
answer, at the client), the mean batch size the server formed (from its Prometheus metrics), and
clouds per second as a fraction of the echo's messages per second at the same point.

Unary: our ``Classify`` against the unary echo, one call at a time from one client, in alternating
blocks: the ratio of the p50 round trips.

With ``--target HOST:PORT`` the measured server is that endpoint (nothing of ours is started;
batch sizes are not known); the echo still runs here, as the baseline of this machine. Several
``--target [NAME=]HOST:PORT`` are measured side by side in one run (e.g. 1, 2 and 3 replicas
behind HAProxy, and a ``--workers 2`` server).

Writes JSON (``--json``) and a plot (``--plot``, default next to the JSON), and prints every
figure with its ratio to the baseline side by side. ``--profile PATH`` adds one more point at the
most streams against the one-worker batching server under ``py-spy record`` and reports where
its event-loop thread spends each frame (range decoding, the ONNX classifier, grpc.aio, the
server's own Python; docs/performance.md). Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from ..process import stop as stop_process

TARGET_BATCHING_RATIO = 3.0   # batching / no batching throughput at 64 streams
TARGET_ECHO_RATIO = 1.5       # our unary p50 / bare echo p50 at 1 stream
TARGET_STREAM_FRACTION = 0.5  # our clouds/s / the streaming echo's messages/s at the most streams
ECHO_METHOD = "/splitinfer.bench.Echo/Echo"
ECHO_STREAM_METHOD = "/splitinfer.bench.Echo/EchoStream"


def _save_payloads(path: str, payloads: list[bytes]) -> None:
    """Byte strings as one buffer plus offsets (numpy's S dtype would drop trailing zero bytes)."""
    offsets = np.cumsum([0] + [len(p) for p in payloads])
    np.savez(path, data=np.frombuffer(b"".join(payloads), np.uint8), offsets=offsets)


def _load_payloads(path: str) -> list[bytes]:
    with np.load(path) as z:
        data, off = z["data"].tobytes(), z["offsets"]
    return [data[off[i]:off[i + 1]] for i in range(len(off) - 1)]


# -- load generator (runs in its own process) --------------------------------------------------------
async def _load(address: str, model: str, payloads: list[bytes], streams: int, window: int,
                warmup_s: float, duration_s: float, echo: bool = False, connections: str = "stream",
                digest: bytes = b"") -> dict:
    """``streams`` closed-loop streams against ``address``: our ClassifyStream (protocol v2: the
    header with the first frame, then the bare latents), or (``echo``) the bare streaming echo fed
    the same serialized requests (answered in order)."""
    import collections

    import grpc

    from splitinfer.proto.v2 import inference_pb2 as pb2
    from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc

    latencies: list[float] = []
    counts = {"answered": 0, "errors": 0}
    n_channels = streams if connections == "stream" else 1
    channels = [grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(n_channels)]
    try:
        await asyncio.gather(*(c.channel_ready() for c in channels))
        t0 = time.perf_counter()
        t_measure, t_end = t0 + warmup_s, t0 + warmup_s + duration_s

        def book(ts: float, resp) -> None:
            t = time.perf_counter()
            if ts >= t_measure and t <= t_end:
                latencies.append(t - ts)
                counts["answered"] += 1
                if resp is not None and resp.HasField("error") and resp.error.code:
                    counts["errors"] += 1

        async def one_stream(k: int) -> None:
            sem = asyncio.Semaphore(window)
            sent: dict[int, float] = {}
            fifo: collections.deque[float] = collections.deque()
            sid = uuid.uuid4().hex
            channel = channels[k % n_channels]

            async def requests():
                seq = k  # spread the payloads across streams
                while True:
                    await sem.acquire()
                    if time.perf_counter() >= t_end:
                        return
                    req = pb2.StreamRequest(latent=payloads[seq % len(payloads)])
                    if seq == k:   # the first frame: the header and its seq (then implicit)
                        req.header.CopyFrom(pb2.StreamHeader(model=model, model_digest=digest,
                                                             stream_id=sid, session=os.urandom(8)))
                        req.seq = seq
                    if echo:
                        req = req.SerializeToString()
                        fifo.append(time.perf_counter())
                    else:
                        sent[seq] = time.perf_counter()
                    yield req
                    seq += 1

            if echo:
                call = channel.stream_stream(ECHO_STREAM_METHOD, request_serializer=None,
                                             response_deserializer=None)(requests())
                async for _ in call:
                    book(fifo.popleft(), None)
                    sem.release()
            else:
                call = pb2_grpc.InferenceStub(channel).ClassifyStream(requests())
                async for resp in call:
                    book(sent.pop(resp.seq), resp)
                    sem.release()

        await asyncio.gather(*(one_stream(k) for k in range(streams)))
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return {"answered": counts["answered"], "errors": counts["errors"], "duration_s": duration_s,
            "latencies_ms": [round(x * 1e3, 4) for x in latencies]}


def _load_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--address")
    p.add_argument("--model")
    p.add_argument("--payloads")
    p.add_argument("--streams", type=int)
    p.add_argument("--window", type=int)
    p.add_argument("--warmup", type=float)
    p.add_argument("--duration", type=float)
    p.add_argument("--echo", action="store_true")
    p.add_argument("--connections", default="stream")
    p.add_argument("--digest", default="", help="the model digest (hex) for the stream header")
    a = p.parse_args(argv)
    payloads = _load_payloads(a.payloads)
    r = asyncio.run(_load(a.address, a.model, payloads, a.streams, a.window, a.warmup, a.duration,
                          a.echo, a.connections, bytes.fromhex(a.digest)))
    print(json.dumps(r))
    return 0


# -- the bare echo server (its own process) -----------------------------------------------------------
async def _echo_serve(port_file: str) -> None:
    import signal

    import grpc

    from cloud_server.server import grpc_options

    async def echo(request: bytes, context) -> bytes:
        return request

    async def echo_stream(request_iterator, context):
        async for request in request_iterator:
            yield request

    handler = grpc.method_handlers_generic_handler("splitinfer.bench.Echo", {  # bytes: no protobuf
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "EchoStream": grpc.stream_stream_rpc_method_handler(echo_stream)})
    server = grpc.aio.server(options=grpc_options(64 * 1024))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    Path(port_file).write_text(str(port))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(1)


def _echo_main(argv: list[str]) -> int:
    asyncio.run(_echo_serve(argv[0]))
    return 0


# -- the parent -----------------------------------------------------------------------------------------
def _child_env() -> dict:
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH", "")) if p)
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _scrape(metrics_port: int | None, name: str) -> float:
    """Sum of a metric's samples (all label sets) from the server's /metrics."""
    if not metrics_port:
        return 0.0
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for m in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M):
        total += float(m.group(1))
    return total


def _pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else None


def run_point(address: str, model: str, payload_file: str, streams: int, window: int, procs: int,
              warmup_s: float, duration_s: float, metrics_port: int | None, echo: bool = False,
              connections: str = "stream", digest: str = "") -> dict:
    procs = max(1, min(procs, streams))
    per = [streams // procs + (1 if i < streams % procs else 0) for i in range(procs)]
    b0 = (_scrape(metrics_port, "splitinfer_batch_size_sum"), _scrape(metrics_port, "splitinfer_batch_size_count"))
    children = [subprocess.Popen(
        [sys.executable, "-m", "splitinfer.bench.server", "_load", "--address", address, "--model", model,
         "--payloads", payload_file, "--streams", str(n), "--window", str(window),
         "--warmup", str(warmup_s), "--duration", str(duration_s), "--connections", connections,
         "--digest", digest]
        + (["--echo"] if echo else []),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(), text=True) for n in per]
    results = []
    for c in children:
        out, err = c.communicate(timeout=warmup_s + duration_s + 120)
        if c.returncode != 0:
            raise RuntimeError(f"load generator failed:\n{err[-3000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    b1 = (_scrape(metrics_port, "splitinfer_batch_size_sum"), _scrape(metrics_port, "splitinfer_batch_size_count"))
    lat = [x for r in results for x in r["latencies_ms"]]
    answered = sum(r["answered"] for r in results)
    batches = b1[1] - b0[1]
    return {"streams": streams, "window": window, "load_processes": procs,
            "answered": answered, "errors": sum(r["errors"] for r in results),
            "clouds_per_s": answered / duration_s, "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99),
            "mean_batch_size": ((b1[0] - b0[0]) / batches) if batches else None}


class EchoProcess:
    """The bare echo server (unary and streaming) as a child process on a free loopback port."""

    def __init__(self, timeout_s: float = 30.0):
        self.tmp = tempfile.TemporaryDirectory(prefix="splitinfer-echo-")
        port_file = Path(self.tmp.name) / "port"
        self.proc = subprocess.Popen([sys.executable, "-m", "splitinfer.bench.server", "_echo", str(port_file)],
                                     env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout_s
        while not port_file.exists() or not port_file.read_text():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                raise RuntimeError(f"echo server did not start: {self.proc.stderr.read().decode()[-2000:]}")
            time.sleep(0.05)
        self.address = f"127.0.0.1:{port_file.read_text()}"
        self.metrics_port = None

    def stop(self) -> None:
        stop_process(self.proc, 10)
        self.tmp.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class _Endpoint:
    """A server measured as it is (``--target``)."""

    def __init__(self, address: str):
        self.address, self.metrics_port = address, None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


def echo_ratio(server_address: str, echo_address: str, model: str, payloads: list[bytes], requests: int) -> dict:
    """p50 unary round trip of our Classify vs a bare echo of the same request size."""
    import grpc

    from splitinfer.proto.v2 import inference_pb2 as pb2
    from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc

    reqs = [pb2.ClassifyRequest(model=model, payload=p).SerializeToString() for p in payloads]
    with grpc.insecure_channel(server_address) as ch_ours, grpc.insecure_channel(echo_address) as ch_echo:
        ours = pb2_grpc.InferenceStub(ch_ours).Classify
        bare = ch_echo.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)
        parsed = [pb2.ClassifyRequest.FromString(r) for r in reqs]

        def timed(fn, items, n):
            out = []
            for i in range(n):
                t = time.perf_counter()
                fn(items[i % len(items)], timeout=10)
                out.append((time.perf_counter() - t) * 1e3)
            return out

        timed(ours, parsed, 200)   # warm up both
        timed(bare, reqs, 200)
        # interleave blocks so that both see the same background load
        t_ours, t_echo = [], []
        block = max(50, requests // 10)
        for _ in range(max(1, requests // block)):
            t_ours += timed(ours, parsed, block)
            t_echo += timed(bare, reqs, block)
    p50_ours, p50_echo = statistics.median(t_ours), statistics.median(t_echo)
    return {"requests": len(t_ours), "request_bytes_mean": float(np.mean([len(r) for r in reqs])),
            "classify_p50_ms": p50_ours, "classify_p99_ms": _pct(t_ours, 99),
            "echo_p50_ms": p50_echo, "echo_p99_ms": _pct(t_echo, 99),
            "ratio": p50_ours / p50_echo, "target": TARGET_ECHO_RATIO,
            "meets_target": p50_ours / p50_echo <= TARGET_ECHO_RATIO}


# -- profile (py-spy on the batching server) -----------------------------------------------------------
PROFILE_RATE = 200   # py-spy samples per second

_PROFILE_CATEGORIES = (   # (name, test on a main-thread stack), the first that matches
    ("range decoding (codec)", lambda st, leaf: "decode_latent" in st or "entropy_coder" in st
     or "container.py" in st),
    ("ONNX classifier", lambda st, leaf: "Session.run" in st),
    ("event-loop poll", lambda st, leaf: "select" in leaf),
    ("grpc.aio (Cython: read, write, (de)serialize)", lambda st, leaf: leaf.startswith("Handle._run ")),
    ("server Python (stream path, batcher, metrics, ledger)", lambda st, leaf: True),
)


def profile_categories(raw: str, frames: float, rate: float = PROFILE_RATE) -> dict:
    """Microseconds per frame of the server's event-loop thread by what it did, from py-spy's raw
    (collapsed) stacks; the other threads (gRPC's poller, the metrics endpoint) apart."""
    out = {name: 0.0 for name, _ in _PROFILE_CATEGORIES}
    out["other threads"] = 0.0
    for line in raw.splitlines():
        stack, _, n = line.rstrip().rpartition(" ")
        if not stack or not n.isdigit():
            continue
        if "_run_once" not in stack:
            out["other threads"] += int(n)
            continue
        leaf = stack.rsplit(";", 1)[-1]
        name = next(name for name, test in _PROFILE_CATEGORIES if test(stack, leaf))
        out[name] += int(n)
    return {k: v / rate / frames * 1e6 for k, v in out.items()} if frames else out


def profile_point(srv, model: str, payload_file: str, streams: int, window: int, procs: int, warmup_s: float,
                  duration_s: float, out_path: str, connections: str = "stream", digest: str = "") -> dict:
    """One point against ``srv`` (a ServerProcess of one worker) under ``py-spy record``: its
    collapsed stacks go to ``out_path``; returns the point and the microseconds per frame of each
    category (:func:`profile_categories`)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        raise RuntimeError("py-spy not found: pip install py-spy (the `profile` extra)")
    secs = int(round(warmup_s + duration_s))
    rec = subprocess.Popen([spy, "record", "--pid", str(srv.info["pid"]), "-d", str(secs), "-r", str(PROFILE_RATE),
                            "--format", "raw", "--nonblocking", "-o", out_path],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        pt = run_point(srv.address, model, payload_file, streams, window, procs, 0.0, secs, srv.metrics_port,
                       connections=connections, digest=digest)
    finally:
        _, err = rec.communicate(timeout=secs + 60)
    if rec.returncode != 0 or not Path(out_path).exists():
        raise RuntimeError(f"py-spy failed (it needs ptrace rights over the server): {err.strip()[-500:]}")
    per_frame = profile_categories(Path(out_path).read_text(), pt["answered"])
    return {"streams": streams, "clouds_per_s": pt["clouds_per_s"], "stacks": out_path,
            "event_loop_us_per_frame": sum(v for k, v in per_frame.items() if k != "other threads"),
            "us_per_frame": per_frame}


def run_bench(model: str | None = None, models_dir: str | None = None, streams=(1, 8, 64), window: int = 1,
              duration_s: float = 2.0, warmup_s: float = 0.5, max_batch_size: int = 64,
              max_queue_delay_ms: float = 0.0, procs: int | None = None, echo_requests: int = 2000,
              json_out: str | None = None, plot_out: str | None = None, executor: str = "inline",
              repeats: int = 3, workers=(1, 2), target=None, connections: str = "stream",
              profile: str | None = None) -> dict:
    """``target``: None (servers started here), "[NAME=]HOST:PORT", or a list of them.
    ``profile``: a path for py-spy's stacks of the one-worker batching server at the most streams
    (:func:`profile_point`; ``result["profile"]``)."""
    from contextlib import ExitStack

    from cloud_server.process import ServerProcess
    from splitinfer.data import SAMPLE
    from splitinfer.repository import pick_models
    from splitinfer.repository import ModelRepository

    repo = ModelRepository(models_dir)
    cfg = repo.config(model) if model else pick_models(repo)[0]
    m = repo.load(cfg.name)
    with np.load(SAMPLE) as z:
        clouds = z["points"]
    payloads = [m.encode(c, name=f"sample {i}") for i, c in enumerate(clouds)]        # unary: containers
    frames = [m.encode_latent(c, name=f"sample {i}") for i, c in enumerate(clouds)]   # stream frames
    tmp = tempfile.mkdtemp(prefix="splitinfer-bench-")
    payload_file = str(Path(tmp) / "payloads.npz")
    _save_payloads(payload_file, frames)
    cpus = os.cpu_count() or 1
    procs = procs or max(1, min(4, cpus // 2))
    streams = tuple(streams)
    targets = {}
    for i, t in enumerate([target] if isinstance(target, str) else list(target or [])):
        name, sep, addr = t.rpartition("=")
        targets[name if sep else "target" if isinstance(target, str) else f"target{i + 1}"] = addr
    result = {"benchmark": "server", "model": cfg.name, "payload_bytes_mean": float(np.mean([len(p) for p in frames])),
              "container_bytes_mean": float(np.mean([len(p) for p in payloads])),
              "target": targets or None, "streams": list(streams),
              "machine": {"cpus": cpus, "platform": platform.platform(), "python": platform.python_version(),
                          "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
              "settings": {"window": window, "duration_s": duration_s, "warmup_s": warmup_s, "repeats": repeats,
                           "load_processes_max": procs, "batch_executor": executor, "connections": connections},
              "configs": {}}
    batching = ["--max-batch-size", str(max_batch_size), "--max-queue-delay-ms", str(max_queue_delay_ms),
                "--batch-executor", executor]
    if targets:
        configs = {key: None for key in targets}
    else:
        configs = {("batching" if w == 1 else f"batching_w{w}"): batching + ["--workers", str(w)] for w in workers}
        configs["no_batching"] = ["--max-batch-size", "1", "--batch-executor", executor, "--workers", "1"]
    configs["echo"] = None
    # every server stays up; the points alternate between them (and the order flips every repeat),
    # so that a drifting background load hits every configuration alike; medians over repeats
    runs: dict = {key: {s: [] for s in streams} for key in configs}
    with ExitStack() as stack:
        servers = {}
        for key, extra in configs.items():
            if key == "echo":
                servers[key] = stack.enter_context(EchoProcess())
            elif key in targets:
                servers[key] = _Endpoint(targets[key])
            else:
                servers[key] = stack.enter_context(ServerProcess([cfg.name], models_dir=models_dir, extra=extra))
        for rep in range(repeats):
            for s in streams:
                order = list(configs) if (rep + streams.index(s)) % 2 == 0 else list(configs)[::-1]
                for key in order:
                    srv = servers[key]
                    pt = run_point(srv.address, cfg.name, payload_file, s, window, procs if s > 1 else 1,
                                   warmup_s, duration_s, srv.metrics_port, echo=key == "echo",
                                   connections=connections, digest=cfg.digest)
                    runs[key][s].append(pt)
                    print(f"  [{rep + 1}/{repeats}] {key:<12} {s:>3} streams: {pt['clouds_per_s']:8.1f} /s"
                          f"  p50 {pt['p50_ms']:.3f} ms  p99 {pt['p99_ms']:.3f} ms"
                          f"  batch {pt['mean_batch_size'] or 0:.1f}", file=sys.stderr)
        if profile and "batching" in servers:
            s = streams[-1]
            result["profile"] = profile_point(servers["batching"], cfg.name, payload_file, s, window,
                                              procs if s > 1 else 1, warmup_s, duration_s * repeats, profile,
                                              connections, cfg.digest)
        unary = {key: echo_ratio(servers[key].address, servers["echo"].address, cfg.name, payloads, echo_requests)
                 for key in (targets or ["batching"])}
        result["echo"] = unary[next(iter(unary))]
        result["unary"] = unary
    for key, extra in configs.items():
        pts = []
        for s in streams:
            reps = runs[key][s]
            med = {k: float(np.median([r[k] for r in reps])) for k in ("clouds_per_s", "p50_ms", "p99_ms")}
            mb = [r["mean_batch_size"] for r in reps if r["mean_batch_size"] is not None]
            pts.append({"streams": s, "window": window, **med, "mean_batch_size": float(np.mean(mb)) if mb else None,
                        "answered": sum(r["answered"] for r in reps), "errors": sum(r["errors"] for r in reps),
                        "repeats": [{k: r[k] for k in ("clouds_per_s", "p50_ms", "p99_ms", "mean_batch_size")}
                                    for r in reps]})
        result["configs"][key] = {"server_args": extra, "points": pts}
    result["machine"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    echo_pts = result["configs"]["echo"]["points"]
    for key, c in result["configs"].items():
        for p, e in zip(c["points"], echo_pts):
            p["fraction_of_echo"] = p["clouds_per_s"] / e["clouds_per_s"] if e["clouds_per_s"] else None
    result["fraction_of_echo_at_max_streams"] = {k: c["points"][-1]["fraction_of_echo"]
                                                 for k, c in result["configs"].items() if k != "echo"}
    main = next(iter(targets)) if targets else "batching"
    frac = result["configs"][main]["points"][-1]["fraction_of_echo"]
    result["targets"] = {
        f"stream_fraction_of_echo_at_{streams[-1]}_streams": {"value": frac, "target": TARGET_STREAM_FRACTION,
                                                               "met": frac >= TARGET_STREAM_FRACTION},
        "unary_vs_echo_ratio_at_1_stream": {"value": result["echo"]["ratio"], "target": TARGET_ECHO_RATIO,
                                            "met": result["echo"]["meets_target"]}}
    if not targets:
        ratios = []
        for b, n in zip(result["configs"]["batching"]["points"], result["configs"]["no_batching"]["points"]):
            ratios.append({"streams": b["streams"], "throughput_ratio": b["clouds_per_s"] / n["clouds_per_s"],
                           "p50_ratio": b["p50_ms"] / n["p50_ms"], "p99_ratio": b["p99_ms"] / n["p99_ms"]})
        result["ratios"] = ratios
        at_max = ratios[-1]["throughput_ratio"]
        result["targets"][f"batching_throughput_ratio_at_{streams[-1]}_streams"] = {
            "value": at_max, "target": TARGET_BATCHING_RATIO, "met": at_max >= TARGET_BATCHING_RATIO}
        result["workers_ratios"] = {
            k: [p["clouds_per_s"] / b["clouds_per_s"] for p, b in zip(c["points"], result["configs"]["batching"]["points"])]
            for k, c in result["configs"].items() if k.startswith("batching_w")}
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
        plot_out = plot_out or str(Path(json_out).with_suffix(".png"))
    if plot_out:
        from ..plots.bench import plot_server_bench
        result["plot"] = plot_server_bench(result, plot_out)
        if json_out:
            Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def report(result: dict) -> str:
    keys = [k for k in result["configs"] if k != "echo"]
    where = ("targets " + ", ".join(f"{k} = {a}" for k, a in result["target"].items()) if result.get("target")
             else f"{result['machine']['cpus']} CPUs")
    lines = [f"bench server: {result['model']} ({result['payload_bytes_mean']:.1f}-byte payloads), {where}, "
             f"window {result['settings']['window']} per stream, one connection per "
             f"{result['settings']['connections']}",
             f"{'streams':>7} | {'echo msgs/s':>11} {'p50 ms':>7} | "
             + " | ".join(f"{k + ' /s':>18} {'p50 ms':>7} {'batch':>5} {'of echo':>7}" for k in keys)]
    for i, e in enumerate(result["configs"]["echo"]["points"]):
        cells = []
        for k in keys:
            p = result["configs"][k]["points"][i]
            cells.append(f"{p['clouds_per_s']:>18.1f} {p['p50_ms']:>7.3f} {p['mean_batch_size'] or 0:>5.1f} "
                         f"{p['fraction_of_echo']:>7.0%}")
        lines.append(f"{e['streams']:>7} | {e['clouds_per_s']:>11.1f} {e['p50_ms']:>7.3f} | " + " | ".join(cells))
    for k, rs in (result.get("workers_ratios") or {}).items():
        lines.append(f"{k} / batching (1 worker) throughput: " + ", ".join(
            f"{s} streams {r:.2f}x" for s, r in zip(result["streams"], rs)))
    for r in result.get("ratios", []):
        lines.append(f"batching / no batching at {r['streams']} streams: {r['throughput_ratio']:.2f}x")
    for key, e in result.get("unary", {"batching": result["echo"]}).items():
        lines.append(f"unary round trip p50 ({key}) {e['classify_p50_ms']:.3f} ms vs bare gRPC echo "
                     f"{e['echo_p50_ms']:.3f} ms ({e['request_bytes_mean']:.0f}-byte requests): {e['ratio']:.2f}x "
                     f"(target <= {TARGET_ECHO_RATIO}x)")
    if result.get("profile"):
        pr = result["profile"]
        lines.append(f"profile of the batching server at {pr['streams']} streams ({pr['clouds_per_s']:.0f} clouds/s): "
                     f"event-loop thread {pr['event_loop_us_per_frame']:.0f} us per frame")
        lines += [f"  {v:6.1f} us  {k}" for k, v in sorted(pr["us_per_frame"].items(), key=lambda kv: -kv[1])]
    for name, t in result["targets"].items():
        lines.append(f"target {name}: {t['value']:.2f} vs {t['target']} -> {'met' if t['met'] else 'NOT met'}")
    return "\n".join(lines)


def _run(a: argparse.Namespace) -> int:
    streams = tuple(int(s) for s in a.streams.split(","))
    workers = tuple(int(w) for w in a.workers.split(","))
    if any(w < 1 for w in workers) or 1 not in workers:
        print("error: --workers takes positive counts and includes 1 (the reference)", file=sys.stderr)
        return 2
    result = run_bench(a.model, a.models_dir, streams, a.window, a.duration, a.warmup, a.max_batch_size,
                       a.max_queue_delay_ms, a.procs, a.echo_requests, a.json, a.plot, a.batch_executor, a.repeats,
                       workers, a.target, a.connections, a.profile)
    print(report(result))
    if a.json:
        print(f"wrote {a.json}" + (f" and {result.get('plot')}" if result.get("plot") else ""))
    return 0


def register(subparsers) -> None:
    b = subparsers.add_parser("server", help="server throughput/latency against a bare gRPC echo, batching on/off, "
                                             "--workers, or a deployed --target",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--json", help="write the results here (and the plot next to it)")
    b.add_argument("--plot", help="plot path (default: the --json path with .png)")
    b.add_argument("--model", help="model to serve (default: the demo's first pick, full if shipped)")
    b.add_argument("--models-dir", help="model repository")
    b.add_argument("--target", metavar="[NAME=]HOST:PORT", action="append",
                   help="measure this endpoint (serving --model, plaintext) instead of servers started "
                        "here (repeatable: side by side; unary against the first)")
    b.add_argument("--workers", default="1,2", help="worker counts of the batching server (default 1,2)")
    b.add_argument("--streams", default="1,8,64", help="concurrent stream counts (default 1,8,64)")
    b.add_argument("--window", type=int, default=1, help="frames in flight per stream (default 1)")
    b.add_argument("--connections", choices=["stream", "process"], default="stream",
                   help="one connection per stream (default) or one per load process")
    b.add_argument("--duration", type=float, default=2.0, help="measured seconds per point and repeat")
    b.add_argument("--repeats", type=int, default=3, help="alternating repeats per point (medians reported)")
    b.add_argument("--warmup", type=float, default=0.5, help="unmeasured seconds before each point")
    b.add_argument("--max-batch-size", type=int, default=64, help="the servers' dynamic batch size (default 64)")
    b.add_argument("--max-queue-delay-ms", type=float, default=0.0, help="the servers' batching delay (default 0: greedy)")
    b.add_argument("--batch-executor", choices=["inline", "thread"], default="inline",
                   help="the servers' --batch-executor (both configurations)")
    b.add_argument("--procs", type=int, help="load-generator processes (default: cpus/2, 1..4)")
    b.add_argument("--echo-requests", type=int, default=2000, help="unary calls timed against the unary echo (default 2000)")
    b.add_argument("--profile", metavar="PATH",
                   help="also profile the one-worker batching server at the most streams with py-spy "
                        "(collapsed stacks to PATH, microseconds per frame by category in the JSON)")
    b.set_defaults(func=_run)


if __name__ == "__main__":  # internal entry points of the child processes
    cmd, rest = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "_load":
        sys.exit(_load_main(rest))
    if cmd == "_echo":
        sys.exit(_echo_main(rest))
    sys.exit("usage: python -m splitinfer.bench.server _load|_echo ...  (use `splitinfer bench server`)")
