"""``splitinfer bench soak``: N ClassifyStreams for T seconds against one server, to see what a
long run does to it: throughput, p99 latency, resident memory over time, and every error.

The server is started here (``splitinfer serve`` on a free loopback port, one model) or given
with ``--target HOST:PORT`` (``--target-pid`` to sample its memory, when it runs on this
machine). Each stream is a closed loop of ``--window`` frames in flight sending real containers
of the sample clouds; a stream that fails is counted and reopened. Once a second: answers,
p50/p99 latency (send to answer, at the client) and the server's RSS (/proc).

Writes JSON (``--json``, default results/soak/soak.json) and a plot (three panels over time) next
to it. Not a test: the figures depend on the machine and its other load.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
import uuid
from pathlib import Path

import numpy as np

DEFAULT_JSON = "results/soak/soak.json"


def rss_mb(pid: int | None) -> float | None:
    """Resident memory of a local process in MiB (None when unknown)."""
    if not pid:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def percentile(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


class Soak:
    """The load (grpc.aio streams) and its once-a-second record."""

    def __init__(self, address: str, model: str, payloads: list[bytes], streams: int, window: int,
                 duration_s: float, pid: int | None = None, token: str | None = None, digest: bytes = b""):
        self.address, self.model, self.payloads, self.digest = address, model, payloads, digest
        self.streams, self.window, self.duration_s, self.pid = streams, window, duration_s, pid
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.latencies: list[float] = []          # this second's
        self.all_latencies: list[float] = []
        self.answered = 0
        self.frame_errors: dict[str, int] = {}
        self.stream_errors: dict[str, int] = {}
        self.series: list[dict] = []
        import grpc
        self.code_names = {c.value[0]: c.name for c in grpc.StatusCode}

    async def run(self) -> dict:
        import grpc

        from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc
        async with grpc.aio.insecure_channel(self.address) as channel:
            await asyncio.wait_for(channel.channel_ready(), 30)
            stub = pb2_grpc.InferenceStub(channel)
            t0 = time.perf_counter()
            self.t_end = t0 + self.duration_s
            sampler = asyncio.ensure_future(self._sample(t0))
            await asyncio.gather(*(self._stream(stub, k) for k in range(self.streams)))
            await sampler
        return self.summary()

    async def _stream(self, stub, k: int) -> None:
        import grpc

        from splitinfer.proto.v2 import inference_pb2 as pb2
        seq = 0
        while time.perf_counter() < self.t_end:
            sem = asyncio.Semaphore(self.window)
            sent: dict[int, float] = {}
            sid = uuid.uuid4().hex

            async def requests():
                nonlocal seq
                first = True
                while True:
                    await sem.acquire()
                    if time.perf_counter() >= self.t_end:
                        return
                    sent[seq] = time.perf_counter()
                    req = pb2.StreamRequest(latent=self.payloads[(seq + k) % len(self.payloads)])
                    if first:   # protocol v2: the header and the seq with the first frame
                        req.header.CopyFrom(pb2.StreamHeader(model=self.model, model_digest=self.digest,
                                                             stream_id=sid, session=os.urandom(8)))
                        req.seq = seq
                        first = False
                    yield req
                    seq += 1

            try:
                async for resp in stub.ClassifyStream(requests(), metadata=self.metadata):
                    ts = sent.pop(resp.seq, None)
                    if ts is not None:
                        dt = time.perf_counter() - ts
                        self.latencies.append(dt)
                        self.all_latencies.append(dt)
                    if resp.HasField("error") and resp.error.code:
                        name = self.code_names.get(resp.error.code, str(resp.error.code))
                        self.frame_errors[name] = self.frame_errors.get(name, 0) + 1
                    else:
                        self.answered += 1
                    sem.release()
            except grpc.aio.AioRpcError as e:
                self.stream_errors[e.code().name] = self.stream_errors.get(e.code().name, 0) + 1
                await asyncio.sleep(0.2)

    async def _sample(self, t0: float) -> None:
        last_t, last_n = t0, 0
        while True:
            await asyncio.sleep(max(0.0, min(1.0, self.t_end - time.perf_counter())))
            now = time.perf_counter()
            lat, self.latencies = self.latencies, []
            n = self.answered
            self.series.append({
                "t_s": round(now - t0, 3), "answered_per_s": round((n - last_n) / max(now - last_t, 1e-9), 1),
                "p50_ms": _ms(percentile(lat, 50)), "p99_ms": _ms(percentile(lat, 99)),
                "rss_mb": _round(rss_mb(self.pid)),
                "errors": sum(self.frame_errors.values()) + sum(self.stream_errors.values())})
            last_t, last_n = now, n
            if now >= self.t_end:
                return

    def summary(self) -> dict:
        rss = [s["rss_mb"] for s in self.series if s["rss_mb"] is not None]
        return {
            "answered": self.answered, "duration_s": self.duration_s,
            "throughput_per_s": round(self.answered / self.duration_s, 1),
            "latency_ms": {"p50": _ms(percentile(self.all_latencies, 50)),
                           "p99": _ms(percentile(self.all_latencies, 99)),
                           "max": _ms(max(self.all_latencies) if self.all_latencies else None)},
            "frame_errors": self.frame_errors, "stream_errors": self.stream_errors,
            "rss_mb": {"first": rss[0] if rss else None, "last": rss[-1] if rss else None,
                       "max": max(rss) if rss else None},
            "series": self.series,
        }


def _ms(s: float | None) -> float | None:
    return None if s is None else round(s * 1e3, 3)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def _payloads(model: str, models_dir: str | None, count: int = 64) -> tuple[list[bytes], bytes]:
    """(stream frames: the coded latents of the sample's first clouds, the model digest)."""
    from splitinfer.repository import ModelRepository
    from splitinfer.data import SAMPLE
    m = ModelRepository(models_dir).load(model)
    with np.load(SAMPLE) as z:
        return [m.encode_latent(p) for p in z["points"][:count]], bytes.fromhex(m.config.digest)


def _run(a: argparse.Namespace) -> int:
    from cloud_server.process import ServerProcess
    from splitinfer.repository import pick_models
    from splitinfer.repository import ModelRepository
    if a.streams < 1 or a.duration <= 0 or a.window < 1:
        print("error: --streams and --window must be at least 1, --duration positive", file=sys.stderr)
        return 2
    model = a.model or pick_models(ModelRepository(a.models_dir), sizes=("micro",))[0].name
    payloads, digest = _payloads(model, a.models_dir)
    server = None
    try:
        if a.target:
            address, pid = a.target, a.target_pid
        else:
            extra = ["--max-batch-size", str(a.max_batch_size)]
            server = ServerProcess([model], models_dir=a.models_dir, extra=extra)
            address, pid = server.address, server.proc.pid
        soak = Soak(address, model, payloads, a.streams, a.window, a.duration, pid, a.token, digest)
        result = asyncio.run(soak.run())
    finally:
        if server is not None:
            server.stop()
    result["config"] = {"model": model, "streams": a.streams, "window": a.window, "duration_s": a.duration,
                        "target": a.target or "started here (splitinfer serve, loopback)",
                        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
                        "command": "splitinfer bench soak " + " ".join(sys.argv[3:] if
                                                                        sys.argv[1:3] == ["bench", "soak"]
                                                                        else sys.argv[1:])}
    out = Path(a.json or DEFAULT_JSON)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    from ..plots.bench import plot_soak
    png = plot_soak(result, Path(a.plot) if a.plot else out.with_suffix(".png"))
    lat, rss = result["latency_ms"], result["rss_mb"]
    errors = sum(result["frame_errors"].values()) + sum(result["stream_errors"].values())
    print(f"{model}: {a.streams} streams x {a.duration:g} s: {result['answered']} answered, "
          f"{result['throughput_per_s']} /s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
          f"server RSS {rss['first']} -> {rss['last']} MiB (max {rss['max']}), {errors} errors "
          f"{result['frame_errors'] or ''}{result['stream_errors'] or ''}")
    print(f"wrote {out}" + (f" and {png}" if png else ""))
    return 0


def register(subparsers) -> None:
    b = subparsers.add_parser("soak", help="N streams for T seconds: throughput, p99, server RSS, errors",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--streams", type=int, default=8, help="concurrent ClassifyStreams (default 8)")
    b.add_argument("--duration", type=float, default=60.0, help="seconds (default 60)")
    b.add_argument("--window", type=int, default=4, help="frames in flight per stream (default 4)")
    b.add_argument("--model", help="model (default: the most accurate shipped micro model)")
    b.add_argument("--models-dir", help="model repository")
    b.add_argument("--target", metavar="HOST:PORT", help="soak a running server (default: start one)")
    b.add_argument("--target-pid", type=int, help="its process id, to sample its memory (same machine)")
    b.add_argument("--token", default=os.environ.get("SPLITINFER_TOKEN"), help="bearer token")
    b.add_argument("--max-batch-size", type=int, default=64, help="of the server started here")
    b.add_argument("--json", help=f"results (default {DEFAULT_JSON}; the plot goes next to it)")
    b.add_argument("--plot", help="plot path (default: the --json path with .png)")
    b.set_defaults(func=_run)
