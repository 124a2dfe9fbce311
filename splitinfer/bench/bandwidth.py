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
or on both ends (``--shape both``); see ``splitinfer.net.netns`` for rate, burst and limit.
``relay`` (no root): a token-bucket TCP relay on loopback (``splitinfer.net.relay``), charging
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
import json
import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from ..pointcloud.data import DEFAULT_DATA as DEFAULT_MODELNET40

BANDWIDTHS = {"short": (0.01, 0.1, 1.0, 10.0, 100.0),
              "full": (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)}
MODES = {"short": {"cell_seconds": 4.0, "min_frames": 3, "max_frames": 40, "edge_frames": 60},
         "full": {"cell_seconds": 20.0, "min_frames": 5, "max_frames": 300, "edge_frames": 500}}
DRACO_QBITS = (4, 6, 11)
SLOWDOWNS = (1.0, 8.0)
TARGET_RATIO = 0.1             # split (full, low) p50 / cloud-only Draco (lowest setting) p50 at 0.1 Mbit/s
TARGET_WITHIN_BUDGET = 0.95    # adaptive client: share of frames within the budget
DEFAULT_SCHEDULE = ((10.0, 15.0), (0.05, 15.0), (10.0, 15.0))   # (Mbit/s, seconds)
ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PLAIN_ONNX = ROOT / "models" / "plain-pointnet-p1024" / "1" / "model.onnx"
# ../shared/datasets/modelnet40 next to the project, when it exists (else --data or the sample)
DEFAULT_FULL_DATA = DEFAULT_MODELNET40 / "modelnet40_test.npz"
RELAY_OVERHEAD = 66
KIND_ORDER = {"edge": 0, "cloud": 1, "split": 2}


def _shown(path) -> str:
    """A path as results record it: relative to the project when inside it (no machine paths)."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _pct(xs, q):
    return float(np.percentile(xs, q)) if len(xs) else None


def _short_id() -> str:
    return uuid.uuid4().hex[:8]


# ================================================================================ the worker (child)
class _SeqStream:
    """One v2 ClassifyStream (bound to one model) used one frame at a time: ask() sends a frame
    and waits for its answer."""

    def __init__(self, stub, model: str, digest: bytes, stream_id: str):
        self.stub = stub
        self.header = {"model": model, "model_digest": digest, "stream_id": stream_id,
                       "session": os.urandom(8), "timings": True}
        self.seq = -1
        self._open()

    def _open(self):
        from splitinfer.proto.v2 import inference_pb2 as pb2
        self.q: queue.Queue = queue.Queue()
        self.first = True
        self.pb2 = pb2
        self.call = self.stub.ClassifyStream(iter(self.q.get, None))

    def ask(self, payload: bytes, timeout_s: float = 300.0):
        self.seq += 1
        for attempt in range(3):
            req = self.pb2.StreamRequest(latent=payload)
            if self.first:   # the header (and the seq: after a reconnect it is not 0)
                req.header.CopyFrom(self.pb2.StreamHeader(**self.header))
                req.seq = self.seq
                self.first = False
            t0 = time.perf_counter()
            self.q.put(req)
            try:
                resp = next(self.call)
                return resp, (time.perf_counter() - t0) * 1e3
            except Exception:  # the stream broke (a reconnect): open a new one and resend
                if attempt == 2:
                    raise
                self.q.put(None)
                self._open()
        raise RuntimeError("unreachable")

    def close(self):
        self.q.put(None)
        try:
            for _ in self.call:
                pass
        except Exception:
            pass


class _Drain:
    """Empty a tbf bucket right before a frame, so that the frame pays its full serialization time.

    tbf lets up to ``burst`` bytes through at line rate once its bucket has refilled (after
    burst/rate of idle time: 1.28 s at 0.01 Mbit/s with a 1600-byte bucket), so a frame smaller
    than the bucket that follows an idle link would cross a 0.01 Mbit/s link instantly; a real link
    serializes every byte. So, before each measured frame: wait until the qdisc's queue is empty
    and then for a quiet period of burst/rate in which nothing at all left the client (its
    counters unchanged: the TCP ACKs and HTTP/2 PING/WINDOW_UPDATE frames that follow an answer
    would otherwise eat into the bucket; a period with traffic is repeated), so the bucket is
    surely full; then send exactly ``burst`` bytes (L2: Ethernet + IPv4 + UDP headers counted) of
    UDP filler to the subnet's broadcast address (no answer, nobody listens), which leaves the
    bucket empty, and send the frame at once: it waits size/rate, as on a real link.
    """

    L2_HEADERS = 14 + 20 + 8
    MAX_L2 = 1514

    def __init__(self, burst: int, rate_bps: float, address: str, dev: str | None = None, port: int = 9):
        import socket
        self.burst, self.rate_bps, self.target = int(burst), float(rate_bps), (address, port)
        self.dev = dev
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sizes, left = [], self.burst
        while left > 0:
            n = min(self.MAX_L2, left)
            if 0 < left - n < self.L2_HEADERS + 1:   # keep the last datagram valid
                n = left - (self.L2_HEADERS + 1)
            sizes.append(max(self.L2_HEADERS + 1, n))
            left -= sizes[-1]
        self.datagrams = [b"\0" * (n - self.L2_HEADERS) for n in sizes]

    def idle_s(self) -> float:
        return self.burst * 8 / self.rate_bps + 0.002

    def stats(self) -> tuple[int, int]:
        """(bytes sent, bytes queued) of the uplink's root qdisc (we run in the client's namespace)."""
        if not self.dev:
            return 0, 0
        p = subprocess.run(["tc", "-s", "-j", "qdisc", "show", "dev", self.dev], capture_output=True, text=True)
        try:
            qs = json.loads(p.stdout or "[]")
        except ValueError:
            return 0, 0
        return sum(int(q.get("bytes", 0)) for q in qs), sum(int(q.get("backlog", 0)) for q in qs)

    def __call__(self) -> int:
        """Empty the bucket; returns the quiet periods it took (1 when nothing interfered)."""
        if not self.dev:
            time.sleep(self.idle_s())
        else:
            for periods in range(1, 9):
                sent, queued = self.stats()
                while queued > 0:
                    time.sleep(queued * 8 / self.rate_bps + 0.001)
                    sent, queued = self.stats()
                time.sleep(self.idle_s())
                if self.stats() == (sent, 0):
                    break
        for d in self.datagrams:
            self.sock.sendto(d, self.target)
        return periods if self.dev else 1
        for d in self.datagrams:
            self.sock.sendto(d, self.target)

    def close(self) -> None:
        self.sock.close()


class _Worker:
    def __init__(self, out):
        self.out = out
        self.streams = {}
        self.drain = None

    def emit(self, obj) -> None:
        self.out.write(json.dumps(obj) + "\n")
        self.out.flush()

    def init(self, m: dict) -> dict:
        import grpc

        from splitinfer.pointcloud.evaluate import load_labelled
        from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc
        from splitinfer.repository import ModelRepository
        self.repo = ModelRepository(m["models_dir"])
        raw, labels = load_labelled(m["data"])
        if m.get("limit"):
            raw, labels = raw[:m["limit"]], labels[:m["limit"]]
        self.points, self.labels = raw, labels
        self.server = m["server"]
        self.models_dir = m["models_dir"]
        self.plain_points = int(m.get("plain_points", 1024))
        self.channel = grpc.insecure_channel(self.server, [("grpc.max_send_message_length", 1 << 24),
                                                          ("grpc.max_receive_message_length", 1 << 24),
                                                          ("grpc.http2.bdp_probe", 0)])
        grpc.channel_ready_future(self.channel).result(timeout=60)
        self.stub = pb2_grpc.InferenceStub(self.channel)
        self.streams: dict[str, _SeqStream] = {}
        for p in m["pipelines"]:       # warm up: sessions, first calls
            for i in range(2):
                self.frame(p, i, send=p["kind"] != "edge")
        return {"clouds": len(labels)}

    def frame(self, p: dict, i: int, send: bool = True) -> dict:
        from splitinfer.pointcloud.input_model import pack_draco, pack_raw
        from splitinfer.pointcloud.preprocess import preprocess
        cloud, truth = self.points[i], int(self.labels[i])
        kind = p["kind"]
        rec = {"i": int(i), "truth": truth}
        t0 = time.perf_counter()
        if kind == "edge":
            m = self.repo.load(p["model"])
            x = preprocess(cloud, m.points, 0)[None]
            logits = m.classify(m.encode_symbols(x).astype(np.float32))
            rec.update(edge_ms=(time.perf_counter() - t0) * 1e3, net_ms=0.0, server_ms=0.0, bytes=0,
                       label=int(np.argmax(logits[0])))
            return rec
        if kind == "split":
            payload = self.repo.load(p["model"]).encode_latent(cloud)
        else:
            x = preprocess(cloud, self.plain_points, 0)
            digest = self.repo.config(p["model"]).digest
            payload = pack_raw(x, digest) if p["input"] == "raw" else pack_draco(x, digest, p["qbits"])
        edge_ms = (time.perf_counter() - t0) * 1e3
        rec.update(edge_ms=edge_ms, bytes=len(payload))
        if not send:
            return rec
        if self.drain is not None:
            rec["drain_periods"] = self.drain()
        stream = self.streams.get(p["model"])
        if stream is None:
            digest = bytes.fromhex(self.repo.config(p["model"]).digest)
            stream = self.streams[p["model"]] = _SeqStream(self.stub, p["model"], digest, "s" + _short_id())
        resp, net_ms = stream.ask(payload)
        err = resp.error.message if resp.HasField("error") and resp.error.code else None
        tm = resp.timings
        rec.update(net_ms=net_ms, server_ms=tm.decode_ms + tm.queue_ms + tm.inference_ms,
                   label=None if err else int(resp.label), resp_bytes=resp.ByteSize(), error=err)
        return rec

    def run(self, m: dict) -> dict:
        p = m["pipeline"]
        n = len(self.labels)
        i = int(m.get("start", 0))
        if self.drain is not None:
            self.drain.close()
        d = m.get("drain")
        self.drain = _Drain(d["burst"], d["rate_bps"], d["address"], d.get("dev")) if d else None
        if m.get("warm", True) and p["kind"] != "edge":
            self.frame(p, (i + n // 2) % n)   # unmeasured: TCP learns the new round trip
        frames = []
        t_end = time.perf_counter() + float(m["seconds"])
        t0 = time.perf_counter()
        while len(frames) < m["max_frames"] and (len(frames) < m["min_frames"] or time.perf_counter() < t_end):
            frames.append(self.frame(p, i % n))
            i += 1
        return {"frames": frames, "next": i, "wall_s": time.perf_counter() - t0}

    def adaptive(self, m: dict) -> dict:
        from edge_client.cli import make_controller
        from edge_client.client import EdgeClient
        client = EdgeClient(self.server, models_dir=self.models_dir, window=int(m["window"]),
                            slowdown=float(m.get("slowdown", 1.0)), reconnect_timeout_s=300.0,
                            timeout_s=300.0, timings=True)
        client.wait_ready(60)
        controller = None
        if m.get("family"):
            controller = make_controller(client, m["family"], float(m["budget_ms"]), **(m.get("params") or {}))
            expected = {c.name: c.accuracy for c in controller.candidates}
            bits = {c.name: c.bits for c in controller.candidates}
        else:
            client.warm_up([m["model"]])
            cfg = self.repo.config(m["model"])
            expected = {cfg.name: (cfg.raw.get("metrics") or {}).get("accuracy")}
            bits = {cfg.name: (cfg.raw.get("metrics") or {}).get("bits_mean")}
        interval = float(m["interval_ms"]) / 1e3
        count = int(math.ceil(float(m["duration_s"]) / interval))
        n = len(self.labels)
        lags: dict[int, float] = {}
        start = {}

        def sensor():
            t0 = time.perf_counter()
            start["t0"] = t0
            self.emit({"event": "started"})
            for k in range(count):
                due = t0 + k * interval
                delay = due - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                lags[k] = max(0.0, time.perf_counter() - due) * 1e3
                j = (int(m.get("start", 0)) + k) % n
                yield (f"cloud {j}", self.points[j], int(self.labels[j]))

        sys.setswitchinterval(0.001)
        report = client.run(sensor(), None if controller else m["model"], controller=controller,
                            stream_id=("a" if controller else "f") + _short_id())
        frames = []
        for r in report.results:
            frames.append({"seq": r.seq, "t_ms": r.seq * interval * 1e3, "model": r.model,
                           "latency_ms": lags.get(r.seq, 0.0) + r.latency_ms, "lag_ms": lags.get(r.seq, 0.0),
                           "encode_ms": r.encode_ms, "wait_ms": r.wait_ms, "rtt_ms": r.rtt_ms,
                           "server_ms": r.decode_ms + r.queue_ms + r.inference_ms,
                           "bytes": r.payload_bytes, "bits_model": bits.get(r.model),
                           "expected_accuracy": expected.get(r.model), "correct": r.correct,
                           "error": r.error})
        client.close()
        out = {"frames": frames, "summary": report.summary(), "count": count, "t0": start.get("t0")}
        if controller is not None:
            out["candidates"] = [vars(c) for c in controller.candidates]
            out["decisions"] = [d.record() for d in controller.decisions]
            out["trace"] = controller.trace
        return out

    def serve(self, inp) -> int:
        for line in inp:
            if not line.strip():
                continue
            m = json.loads(line)
            try:
                cmd = m["cmd"]
                if cmd == "quit":
                    break
                result = getattr(self, cmd)(m)
                self.emit({"ok": True, "result": result})
            except Exception as e:  # reported to the parent, which raises
                import traceback
                self.emit({"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()})
        for s in getattr(self, "streams", {}).values():
            s.close()
        return 0


def _worker_main() -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr          # nothing but protocol lines on the real stdout
    return _Worker(out).serve(sys.stdin)


# ================================================================================ the parent
class WorkerProcess:
    def __init__(self, prefix: list[str] | None = None, log_path: str | None = None):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("OMP_NUM_THREADS", "1")
        self.log_path = log_path or tempfile.mktemp(prefix="splitinfer-bw-worker-", suffix=".log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(list(prefix or []) + [sys.executable, "-m", "splitinfer.bench.bandwidth", "_worker"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, text=True, cwd=str(ROOT), bufsize=1)

    def send(self, msg: dict) -> None:
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker died:\n{self.log()}")
        return json.loads(line)

    def result(self) -> dict:
        r = self.read()
        if not r.get("ok"):
            raise RuntimeError(f"worker: {r.get('error')}\n{r.get('traceback', '')}")
        return r["result"]

    def call(self, msg: dict) -> dict:
        self.send(msg)
        return self.result()

    def log(self) -> str:
        self._log.flush()
        return Path(self.log_path).read_text()[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        log = Path(self.log_path)
        if self.proc.returncode == 0 or (log.exists() and log.stat().st_size == 0):
            log.unlink(missing_ok=True)


class Link:
    """The shaped link the benchmark runs over: tbf between namespaces, or the loopback relay."""

    def __init__(self, kind: str, shape: str = "uplink"):
        self.kind = kind
        self.shape = shape
        self.netns = None
        self.relay = None
        self.server = None

    def start(self, server_factory) -> None:
        from splitinfer.net import NetnsLink, Relay
        if self.kind == "netns":
            self.netns = NetnsLink(None, shape=self.shape).up()
            try:
                self.server = server_factory(self.netns.exec_prefix("server"), self.netns.server_ip)
            except BaseException:
                self.netns.down()
                raise
            self.client_prefix = self.netns.exec_prefix("client")
            self.address = f"{self.netns.server_ip}:{self.server.port}"
            self.label = (f"tc tbf on a veth pair between network namespaces "
                          f"({'uplink only' if self.shape == 'uplink' else 'both directions'})")
        else:
            self.server = server_factory(None, "127.0.0.1")
            self.relay = Relay(("127.0.0.1", self.server.port), 100.0, shape=self.shape,
                               overhead=RELAY_OVERHEAD, burst=0).start()
            self.client_prefix = []
            self.address = self.relay.address
            self.label = (f"token-bucket relay on loopback, no root "
                          f"({'uplink only' if self.shape == 'uplink' else 'both directions'}; "
                          f"{RELAY_OVERHEAD} B framing per 1448 B segment)")

    def set_rate(self, mbit: float) -> None:
        if self.netns is not None:
            self.netns.set_rate(mbit)
        else:
            self.relay.set_rate(mbit)

    def drain(self, mbit: float) -> dict | None:
        """What the worker needs to empty the uplink's tbf bucket before each frame (tbf only)."""
        if self.netns is None:
            return None
        from splitinfer.net.netns import tbf_burst_bytes
        return {"burst": tbf_burst_bytes(mbit * 1e6), "rate_bps": mbit * 1e6, "address": self.netns.broadcast,
                "dev": self.netns.dev["client"]}

    def counters(self) -> dict:
        """Bytes sent so far: uplink (client -> server) and downlink."""
        if self.netns is not None:
            c = self.netns.counters()
            return {"up": c["client"]["tx_bytes"], "down": c["server"]["tx_bytes"], "drops": c["client"]["drops"],
                    "up_packets": c["client"]["tx_packets"], "down_packets": c["server"]["tx_packets"]}
        return {"up": self.relay.charged["up"], "down": self.relay.charged.get("down"), "drops": 0,
                "up_packets": None, "down_packets": None}

    def stop(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            if self.relay is not None:
                self.relay.stop()
            if self.netns is not None:
                self.netns.down()


# -- planning -----------------------------------------------------------------------------------------
def _acc(cfg) -> float | None:
    m = cfg.raw.get("metrics") or {}
    return m.get("accuracy", m.get("test_accuracy"))


def _bits(cfg) -> float | None:
    return (cfg.raw.get("metrics") or {}).get("bits_mean")


def plan_pipelines(repo, plain: str | None, qbits=DRACO_QBITS, sizes=("full", "lite", "micro"),
                   points: int = 1024) -> list[dict]:
    """Edge-only per size (its most accurate model), cloud-only raw and Draco (if a plain model
    is served), split low and high rate point per size (by bits_mean), from what is shipped."""
    configs = [c for c in repo.list("pointcloud-classification") if int(c.raw.get("points", 0)) == points
               and _bits(c) is not None]
    out = []
    for size in sizes:
        of = sorted((c for c in configs if c.raw.get("size") == size), key=_bits)
        if not of:
            continue
        best = max(of, key=lambda c: (_acc(c) or 0, -_bits(c)))
        out.append({"id": f"edge-{size}", "kind": "edge", "size": size, "model": best.name,
                    "label": f"edge-only {size} ({best.name})", "accuracy_config": _acc(best)})
    if plain:
        pc = repo.config(plain)
        out.append({"id": "cloud-raw", "kind": "cloud", "input": "raw", "model": plain,
                    "label": "cloud-only raw float32", "accuracy_config": _acc(pc)})
        draco = {d["quantization_bits"]: d["accuracy"] for d in (pc.raw.get("metrics") or {}).get("draco", [])}
        for q in qbits:
            out.append({"id": f"cloud-draco-q{q}", "kind": "cloud", "input": "draco", "qbits": int(q),
                        "model": plain, "label": f"cloud-only Draco q={q}", "accuracy_config": draco.get(q)})
    for size in sizes:
        of = sorted((c for c in configs if c.raw.get("size") == size), key=_bits)
        if not of:
            continue
        points_ = [("low", of[0])] + ([("high", of[-1])] if len(of) > 1 else [])
        for which, c in points_:
            out.append({"id": f"split-{size}-{which}", "kind": "split", "size": size, "model": c.name,
                        "label": f"split {size} {which} ({c.name}, {_bits(c):.0f} bits)",
                        "bits_config": _bits(c), "accuracy_config": _acc(c)})
    return out


def prepare_repository(models_dir: str | None, plain_onnx: str | None) -> tuple[str, str | None, str | None]:
    """(models dir to serve, plain model name, note): the repository as is when it has a plain
    model; otherwise a temporary one with links to its codecs and the plain ONNX packaged."""
    from splitinfer.pointcloud.input_model import TASK, package_plain
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(models_dir)
    plains = [c for c in repo.list(TASK)]
    if plains:
        return str(repo.root), plains[0].name, None
    onnx = Path(plain_onnx) if plain_onnx else DEFAULT_PLAIN_ONNX
    if not onnx.exists():
        return str(repo.root), None, f"no cloud-only model: {onnx} missing (cloud-only pipelines skipped)"
    tmp = Path(tempfile.mkdtemp(prefix="splitinfer-bw-models-"))
    for d in repo.root.iterdir():
        if d.is_dir() and any(d.glob("*/config.json")):
            os.symlink(d.resolve(), tmp / d.name)
    package_plain(onnx, "plain-pointnet-p1024", tmp)
    return str(tmp), "plain-pointnet-p1024", f"plain model packaged from {onnx} into {tmp}"


# -- statistics ---------------------------------------------------------------------------------------
def cell_stats(frames: list[dict], k: float, rtt_ms: float = 0.0) -> dict:
    lat = [k * f["edge_ms"] + f.get("net_ms", 0.0) + (rtt_ms if f.get("net_ms") else 0.0)
           for f in frames if f.get("label") is not None]
    ok = [f for f in frames if f.get("label") is not None]
    return {"frames": len(frames), "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95),
            "mean_ms": float(np.mean(lat)) if lat else None,
            "accuracy": (sum(f["label"] == f["truth"] for f in ok) / len(ok)) if ok else None,
            "errors": len(frames) - len(ok)}


def crossings(bws, a, b) -> list[float]:
    """Bandwidths where latency curve a crosses b (log-log interpolation between sweep points)."""
    out = []
    pts = [(bw, x, y) for bw, x, y in zip(bws, a, b) if x and y]
    for (b0, x0, y0), (b1, x1, y1) in zip(pts, pts[1:]):
        d0, d1 = math.log(x0 / y0), math.log(x1 / y1)
        if d0 == 0:
            out.append(b0)
        elif d0 * d1 < 0:
            f = d0 / (d0 - d1)
            out.append(float(math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0)))))
    return out


def crossover_table(result: dict) -> list[dict]:
    """For every K: each pipeline against the best edge-only and, for split, against each cloud-only."""
    bws = result["bandwidths"]
    pipes = {p["id"]: p for p in result["pipelines"]}
    rows = []
    for key in result["slowdowns"]:
        tab = result["p50"][key]
        edge = [p for p in pipes if pipes[p]["kind"] == "edge"]
        pairs = []
        for e in edge:
            pairs += [(x, e) for x in pipes if pipes[x]["kind"] != "edge"]
        for s in (x for x in pipes if pipes[x]["kind"] == "split"):
            pairs += [(s, c) for c in pipes if pipes[c]["kind"] == "cloud"]
        for x, y in pairs:
            a, b = [tab[x].get(str(bw)) for bw in bws], [tab[y].get(str(bw)) for bw in bws]
            cr = crossings(bws, a, b)
            below = next(((bw, u < v) for bw, u, v in zip(bws, a, b) if u and v), None)
            rows.append({"K": key, "a": x, "b": y, "crossovers_mbit": [round(c, 4) for c in cr],
                         "a_faster_at_lowest_bw": below[1] if below else None})
    return rows


# -- the sweep ---------------------------------------------------------------------------------------
def run_sweep(worker: WorkerProcess, link: Link, pipelines: list[dict], bandwidths, mode: dict,
              progress=True, drain: bool = True) -> list[dict]:
    cells = []
    nxt = {p["id"]: 0 for p in pipelines}
    edge = [p for p in pipelines if p["kind"] == "edge"]
    net = [p for p in pipelines if p["kind"] != "edge"]
    for p in edge:   # link-independent: measured once
        r = worker.call({"cmd": "run", "pipeline": p, "start": 0, "seconds": 0, "min_frames": mode["edge_frames"],
                         "max_frames": mode["edge_frames"]})
        nxt[p["id"]] = r["next"]
        cells.append({"pipeline": p["id"], "bandwidth_mbit": None, "frames": r["frames"], "wall_s": r["wall_s"]})
        if progress:
            print(f"  {p['id']:<22} (no link) {len(r['frames']):>4} frames "
                  f"edge p50 {_pct([f['edge_ms'] for f in r['frames']], 50):8.2f} ms", file=sys.stderr, flush=True)
    for n_bw, bw in enumerate(bandwidths):
        link.set_rate(bw)
        order = net if n_bw % 2 == 0 else net[::-1]
        for p in order:
            msg = {"cmd": "run", "pipeline": p, "start": nxt[p["id"]], "seconds": mode["cell_seconds"],
                   "min_frames": mode["min_frames"], "max_frames": mode["max_frames"]}
            dr = link.drain(bw) if drain else None
            if dr:
                msg["drain"] = dr
            c0 = link.counters()
            r = worker.call(msg)
            c1 = link.counters()
            nxt[p["id"]] = r["next"]
            nf = len(r["frames"]) + 1   # + the unmeasured warm-up frame
            filler = dr["burst"] if dr else 0
            wire = {d: ((c1[d] - c0[d]) / nf - (filler if d == "up" else 0)
                        if c1[d] is not None and c0[d] is not None else None)
                    for d in ("up", "down")}
            cells.append({"pipeline": p["id"], "bandwidth_mbit": bw, "frames": r["frames"], "wall_s": r["wall_s"],
                          "wire_bytes_per_frame": wire, "drops": c1["drops"] - c0["drops"]})
            if progress:
                lat = [f["edge_ms"] + f["net_ms"] for f in r["frames"]]
                print(f"  {p['id']:<22} {bw:>7g} Mbit/s {len(r['frames']):>4} frames  p50 {_pct(lat, 50):10.2f} ms  "
                      f"uplink {wire['up'] or 0:8.0f} B/frame  ({r['wall_s']:.1f} s)", file=sys.stderr, flush=True)
    return cells


def summarize_sweep(result: dict, cells: list[dict], slowdowns, rtt_ms: float) -> None:
    bws = result["bandwidths"]
    result["cells"] = []
    result["p50"], result["p95"], result["accuracy"] = {}, {}, {}
    for k in slowdowns:
        key = f"K={k:g}"
        result["p50"][key] = {p["id"]: {} for p in result["pipelines"]}
        result["p95"][key] = {p["id"]: {} for p in result["pipelines"]}
    by_pipe: dict[str, list] = {}
    for c in cells:
        pid = c["pipeline"]
        by_pipe.setdefault(pid, []).extend(c["frames"])
        stats = {f"K={k:g}": cell_stats(c["frames"], k, rtt_ms) for k in slowdowns}
        edge_ms = [f["edge_ms"] for f in c["frames"]]
        net_ms = [f.get("net_ms", 0.0) for f in c["frames"]]
        row = {"pipeline": pid, "bandwidth_mbit": c["bandwidth_mbit"], "frames": len(c["frames"]),
               "wall_s": round(c["wall_s"], 3), "edge_ms_p50": _pct(edge_ms, 50), "network_ms_p50": _pct(net_ms, 50),
               "payload_bytes_mean": float(np.mean([f.get("bytes", 0) for f in c["frames"]])) if c["frames"] else None,
               "wire_bytes_per_frame": c.get("wire_bytes_per_frame"), "drops": c.get("drops"), "stats": stats}
        result["cells"].append(row)
        targets = bws if c["bandwidth_mbit"] is None else [c["bandwidth_mbit"]]
        for k in slowdowns:
            key = f"K={k:g}"
            for bw in targets:
                result["p50"][key][pid][str(bw)] = stats[key]["p50_ms"]
                result["p95"][key][pid][str(bw)] = stats[key]["p95_ms"]
    for pid, frames in by_pipe.items():
        ok = [f for f in frames if f.get("label") is not None]
        distinct = {f["i"]: f["label"] == f["truth"] for f in ok}
        result["accuracy"][pid] = {"frames": len(ok), "distinct_clouds": len(distinct),
                                   "accuracy": (sum(distinct.values()) / len(distinct)) if distinct else None}


def bar_split_vs_draco(result: dict) -> dict | None:
    """split (full, low rate) p50 / cloud-only Draco at its lowest setting, at 0.1 Mbit/s."""
    pipes = {p["id"]: p for p in result["pipelines"]}
    split = next((f"split-{s}-low" for s in ("full", "lite", "micro") if f"split-{s}-low" in pipes), None)
    dracos = sorted((p for p in pipes.values() if p.get("input") == "draco"), key=lambda p: p["qbits"])
    if not split or not dracos or "0.1" not in {str(b) for b in result["bandwidths"]}:
        return None
    out = {"bandwidth_mbit": 0.1, "split": split, "split_model": pipes[split]["model"],
           "target_ratio": TARGET_RATIO, "by_K": {}, "vs_each_draco": {}}
    for key in result["slowdowns"]:
        s = result["p50"][key][split].get("0.1")
        per = {}
        for d in dracos:
            v = result["p50"][key][d["id"]].get("0.1")
            per[d["id"]] = (s / v) if (s and v) else None
        lowest = dracos[0]["id"]
        out["by_K"][key] = {"split_p50_ms": s, "draco": lowest, "draco_p50_ms": result["p50"][key][lowest].get("0.1"),
                            "ratio": per[lowest], "met": per[lowest] is not None and per[lowest] <= TARGET_RATIO}
        out["vs_each_draco"][key] = per
    return out


# -- the adaptive experiment ---------------------------------------------------------------------------
def run_adaptive(worker: WorkerProcess, link: Link, family: str, budget_ms: float, interval_ms: float,
                 schedule, window: int, fixed: str | None, slowdown: float, params: dict | None,
                 progress=True) -> dict:
    from edge_client.adaptive import resolve_family
    from splitinfer.repository import ModelRepository
    repo = ModelRepository(worker.models_dir)
    configs = resolve_family(repo, family)
    fixed = fixed or max(configs, key=lambda c: (_acc(c) or 0, _bits(c) or 0)).name
    auto = auto_stream_settings(configs, schedule)
    if interval_ms is None:   # calibrate: uplink bytes per frame of the extreme rate points, streaming
        from edge_client.adaptive import candidate_from_config
        by_size = sorted(configs, key=lambda c: candidate_from_config(c).payload_bytes)
        measured = {}
        for c in (by_size[0], by_size[-1]):
            link.set_rate(max(r for r, _ in schedule))   # an empty queue
            time.sleep(0.3)
            link.set_rate(min(r for r, _ in schedule))   # bytes per frame as the slow link sees them
            c0 = link.counters()
            worker.send({"cmd": "adaptive", "model": c.name, "interval_ms": auto["interval_ms"], "duration_s": 2.0,
                         "window": window, "slowdown": 1.0, "start": 0, "budget_ms": 1e9})
            ev = worker.read()
            if not ev.get("event"):
                raise RuntimeError(f"worker: {ev.get('error')}\n{ev.get('traceback', '')}")
            r = worker.result()
            measured[c.name] = (link.counters()["up"] - c0["up"]) / max(1, len(r["frames"]))
        link.set_rate(max(r for r, _ in schedule))
        auto = auto_stream_settings(configs, schedule, measured=measured)
        auto["calibration"] = {"uplink_bytes_per_frame": measured, "at_mbit": min(r for r, _ in schedule),
                               "note": "2 s streams of the lowest and highest rate point at the lowest rate of "
                                       "the schedule, a frame every estimated interval, before the experiment"}
    budget_ms = auto["budget_ms"] if budget_ms is None else budget_ms
    interval_ms = auto["interval_ms"] if interval_ms is None else interval_ms
    if progress:
        print(f"  adaptive experiment: family {', '.join(c.name for c in configs)}; fixed {fixed}; a frame every "
              f"{interval_ms:g} ms, budget {budget_ms:g} ms", file=sys.stderr, flush=True)
    duration = sum(s for _, s in schedule)
    runs = {}
    for name in ("adaptive", "fixed"):
        link.set_rate(schedule[0][0])
        time.sleep(0.5)
        msg = {"cmd": "adaptive", "budget_ms": budget_ms, "interval_ms": interval_ms, "duration_s": duration,
               "window": window, "slowdown": slowdown, "params": params or {}, "start": 0}
        if name == "adaptive":
            msg["family"] = ",".join(c.name for c in configs)
        else:
            msg["model"] = fixed
        t_wall = time.perf_counter()
        worker.send(msg)
        ev = worker.read()
        if not ev.get("event"):
            raise RuntimeError(f"worker: {ev.get('error')}\n{ev.get('traceback', '')}")
        t0 = time.perf_counter()
        changes = [{"t_s": 0.0, "mbit": schedule[0][0]}]
        bounds = np.cumsum([secs for _, secs in schedule])
        for (rate, _), t in zip(schedule[1:], bounds):
            delay = t0 + t - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            link.set_rate(rate)
            changes.append({"t_s": round(time.perf_counter() - t0, 4), "mbit": rate})
        r = worker.result()
        r["rate_changes"] = changes
        r["wall_s"] = time.perf_counter() - t_wall
        runs[name] = r
        if progress:
            s = summarize_run(r, budget_ms, schedule)
            print(f"  adaptive experiment, {name:<8}: {s['frames']} frames, {100 * s['within_budget']:.1f}% within "
                  f"{budget_ms:g} ms, lost {s['lost']}, accuracy {s['accuracy']}", file=sys.stderr, flush=True)
    out = {"family": [c.name for c in configs], "fixed_model": fixed, "budget_ms": budget_ms, "auto": auto,
           "interval_ms": interval_ms, "schedule": [{"mbit": r, "seconds": s} for r, s in schedule],
           "window": window, "slowdown": slowdown, "runs": runs,
           "summary": {k: summarize_run(v, budget_ms, schedule) for k, v in runs.items()}}
    a, f = out["summary"]["adaptive"], out["summary"]["fixed"]
    out["bar"] = {"adaptive_within_budget": a["within_budget"], "fixed_within_budget": f["within_budget"],
                  "target": TARGET_WITHIN_BUDGET, "adaptive_lost": a["lost"] + a["failed"],
                  "met": (a["within_budget"] >= TARGET_WITHIN_BUDGET and f["within_budget"] < TARGET_WITHIN_BUDGET
                          and a["lost"] == 0 and a["failed"] == 0)}
    return out


def auto_stream_settings(configs, schedule, ack_bytes: float = 66.0, measured: dict | None = None) -> dict:
    """Frame interval and budget that make the experiment informative for this family.

    At the schedule's lowest rate R, a frame of the family's lowest rate point costs W_low bytes
    of uplink (request plus the ACKs and HTTP/2 control frames it causes: ``measured`` by a short
    calibration stream, else estimated as request + one TCP ACK), the highest W_high. The
    interval is the time R needs for (W_low + W_high) / 2: the highest rate point then sends more
    than the link carries (its queue grows without bound) while the lowest fits with room to
    spare; the budget is 2.5 intervals (rounded up to 5 ms). Both are reported; --interval-ms
    and --latency-budget override them.
    """
    from edge_client.adaptive import candidate_from_config
    low = min(r for r, _ in schedule)
    sid = "a" + "0" * 8
    wires = sorted(candidate_from_config(c).request_bytes(sid) + ack_bytes for c in configs)
    if measured:
        wires = sorted(measured.values())
    interval = (wires[0] + wires[-1]) / 2 * 8 / (low * 1e6) * 1e3
    budget = 5.0 * math.ceil(2.5 * interval / 5.0)
    return {"interval_ms": round(interval, 2), "budget_ms": budget, "low_mbit": low,
            "uplink_bytes_per_frame": {"lowest_rate_point": wires[0], "highest_rate_point": wires[-1]},
            "utilisation_at_low_rate": {"lowest_rate_point": wires[0] * 8 / (low * 1e6) * 1e3 / interval,
                                        "highest_rate_point": wires[-1] * 8 / (low * 1e6) * 1e3 / interval}}


def _phase_of(t_ms: float, schedule) -> int:
    t = 0.0
    for i, (_, secs) in enumerate(schedule):
        t += secs * 1e3
        if t_ms < t:
            return i
    return len(schedule) - 1


def summarize_run(r: dict, budget_ms: float, schedule) -> dict:
    frames = r["frames"]
    ok = [f for f in frames if not f["error"]]
    lat = [f["latency_ms"] for f in ok]
    within = sum(x <= budget_ms for x in lat)
    labelled = [f for f in ok if f["correct"] is not None]
    phases = []
    for i, (rate, secs) in enumerate(schedule):
        fr = [f for f in ok if _phase_of(f["t_ms"], schedule) == i]
        ll = [f["latency_ms"] for f in fr]
        phases.append({"mbit": rate, "seconds": secs, "frames": len(fr), "p50_ms": _pct(ll, 50), "p95_ms": _pct(ll, 95),
                       "within_budget": (sum(x <= budget_ms for x in ll) / len(ll)) if ll else None,
                       "bits_mean": float(np.mean([f["bits_model"] or 0 for f in fr])) if fr else None,
                       "expected_accuracy": float(np.mean([f["expected_accuracy"] or 0 for f in fr])) if fr else None})
    models: dict[str, int] = {}
    for f in ok:
        models[f["model"]] = models.get(f["model"], 0) + 1
    return {"frames": len(frames), "scheduled": r["count"], "lost": r["summary"]["lost"] + (r["count"] - len(frames)),
            "failed": len(frames) - len(ok), "within_budget": within / r["count"] if r["count"] else 0.0,
            "p50_ms": _pct(lat, 50), "p95_ms": _pct(lat, 95), "max_ms": max(lat) if lat else None,
            "accuracy": (sum(bool(f["correct"]) for f in labelled) / len(labelled)) if labelled else None,
            "expected_accuracy": float(np.mean([f["expected_accuracy"] or 0 for f in ok])) if ok else None,
            "models": models, "phases": phases}


# -- plots ---------------------------------------------------------------------------------------------
_COLORS = {"edge": "#555555", "cloud-raw": "#b2182b", "cloud-draco": ["#ef8a62", "#d6604d", "#f4a582"],
           "full": "#2166ac", "lite": "#1b7837", "micro": "#762a83"}


def _style(p: dict, i_draco: int):
    if p["kind"] == "edge":
        return dict(color=_COLORS[p["size"]], ls="--", marker=None, lw=1.4)
    if p["kind"] == "cloud":
        if p["input"] == "raw":
            return dict(color=_COLORS["cloud-raw"], ls="-", marker="s", lw=1.6)
        return dict(color=_COLORS["cloud-draco"][i_draco % 3], ls="-", marker="^", lw=1.4)
    return dict(color=_COLORS[p["size"]], ls="-" if p["id"].endswith("low") else ":", marker="o", lw=1.6)


def plot_sweep(result: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    keys = list(result["slowdowns"])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 4.8), sharey=True)
    axes = np.atleast_1d(axes)
    bws = result["bandwidths"]
    for ax, key in zip(axes, keys):
        nd = 0
        for p in sorted(result["pipelines"], key=lambda p: KIND_ORDER[p["kind"]]):
            st = _style(p, nd)
            if p.get("input") == "draco":
                nd += 1
            y = [result["p50"][key][p["id"]].get(str(b)) for b in bws]
            y95 = [result["p95"][key][p["id"]].get(str(b)) for b in bws]
            xs = [b for b, v in zip(bws, y) if v]
            ax.plot(xs, [v for v in y if v], ls=st["ls"], marker=st["marker"], color=st["color"], lw=st["lw"],
                    ms=4, label=p["label"])
            if p["kind"] != "edge":
                ax.fill_between(xs, [v for v in y if v], [v for v, u in zip(y95, y) if u], color=st["color"],
                                alpha=0.08, lw=0)
        for row in result.get("crossovers", []):   # mark the headline crossovers
            if row["K"] != key or not row["crossovers_mbit"]:
                continue
            if not (row["a"].endswith("-low") and row["a"].startswith("split-full")
                    or (row["a"] == "cloud-raw" and row["b"].startswith("edge"))):
                continue
            for c in row["crossovers_mbit"]:
                y = result["p50"][key][row["b"]]
                yy = np.interp(math.log(c), [math.log(b) for b in bws], [math.log(y.get(str(b)) or 1) for b in bws])
                ax.plot([c], [math.exp(yy)], marker="x", color="k", ms=7, mew=1.5, zorder=5)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("uplink bandwidth (Mbit/s)" if result["link"]["shape"] == "uplink" else "link bandwidth (Mbit/s)")
        ax.set_title(f"device slowdown {key}", fontsize=10)
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0].set_ylabel("end-to-end latency per frame, p50 (ms; band: to p95)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7.5, frameon=False)
    fig.suptitle(f"Latency vs bandwidth ({result['link']['label']}; x: crossovers of split full low "
                 f"and of cloud raw vs edge-only)", fontsize=9)
    fig.tight_layout(rect=(0, 0.16, 1, 0.96))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_adaptive(ad: dict, path: str) -> str | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True,
                                        gridspec_kw={"height_ratios": [2.2, 1.2, 1.2]})
    budget = ad["budget_ms"]
    colors = {"adaptive": "#2166ac", "fixed": "#b2182b"}
    for name, r in ad["runs"].items():
        fr = [f for f in r["frames"] if not f["error"]]
        t = [f["t_ms"] / 1e3 for f in fr]
        s = ad["summary"][name]
        lab = (f"{name} ({'family, budget' if name == 'adaptive' else ad['fixed_model']}): "
               f"{100 * s['within_budget']:.1f}% within budget")
        ax1.plot(t, [f["latency_ms"] for f in fr], ".", ms=2.5, color=colors[name], label=lab, alpha=0.8)
        ax2.step(t, [f["bits_model"] for f in fr], where="post", color=colors[name], lw=1.2, label=name)
        ax3.step(t, [100 * (f["expected_accuracy"] or 0) for f in fr], where="post", color=colors[name], lw=1.2,
                 label=f"{name}: expected (model's test accuracy)")
        corr = np.array([1.0 if f["correct"] else 0.0 for f in fr])
        if len(corr) >= 10:
            w = min(50, len(corr))
            roll = np.convolve(corr, np.ones(w) / w, mode="valid")
            ax3.plot(t[w - 1:], 100 * roll, color=colors[name], lw=0.8, alpha=0.5, ls="--",
                     label=f"{name}: measured, rolling {w} frames")
    ax1.axhline(budget, color="k", lw=1, ls="--", label=f"budget {budget:g} ms")
    ax1.set_yscale("log")
    ax1.set_ylabel("latency per frame (ms)")
    ax1.legend(fontsize=7.5, loc="upper left")
    axr = ax1.twinx()
    ch = ad["runs"]["adaptive"]["rate_changes"]
    end = sum(p["seconds"] for p in ad["schedule"])
    xs = [c["t_s"] for c in ch] + [end]
    ys = [c["mbit"] for c in ch] + [ch[-1]["mbit"]]
    axr.step(xs, ys, where="post", color="#888888", lw=2, alpha=0.5)
    axr.set_yscale("log")
    axr.set_ylabel("link rate (Mbit/s, grey)", color="#666666")
    ax2.set_ylabel("model bits/cloud")
    ax2.set_yscale("log")
    ax2.legend(fontsize=7.5, loc="upper right")
    ax3.set_ylabel("accuracy (%)")
    ax3.set_xlabel("time (s)")
    ax3.legend(fontsize=7, loc="lower left", ncol=2)
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3, lw=0.5)
    fig.suptitle(f"Adaptive rate under a changing link ({ad['link_label']}), a frame every "
                 f"{ad['interval_ms']:g} ms", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# -- orchestration --------------------------------------------------------------------------------------
def parse_schedule(text: str):
    out = []
    for part in text.split(","):
        rate, secs = part.split(":")
        out.append((float(rate), float(secs)))
    return tuple(out)


def run_bench(mode: str = "short", link_kind: str = "auto", shape: str = "uplink", data: str | None = None,
              limit: int | None = None, models_dir: str | None = None, plain_onnx: str | None = None,
              bandwidths=None, slowdowns=SLOWDOWNS, qbits=DRACO_QBITS, sizes=("full", "lite", "micro"),
              cell_seconds: float | None = None, min_frames: int | None = None, max_frames: int | None = None,
              rtt_ms: float = 0.0, sweep: bool = True, adaptive: bool = True, family: str = "all",
              budget_ms: float | None = None, interval_ms: float | None = None, schedule=DEFAULT_SCHEDULE,
              window: int = 64,
              fixed: str | None = None, adaptive_slowdown: float = 1.0, json_out: str | None = None,
              plot_out: str | None = None, progress: bool = True) -> dict:
    from cloud_server.process import ServerProcess
    from splitinfer.data import SAMPLE
    from splitinfer.net import netns_available
    from splitinfer.repository import ModelRepository

    t_start = time.perf_counter()
    if link_kind == "auto":
        ok, why = netns_available()
        link_kind = "netns" if ok else "relay"
    m = dict(MODES[mode])
    for k, v in (("cell_seconds", cell_seconds), ("min_frames", min_frames), ("max_frames", max_frames)):
        if v is not None:
            m[k] = v
    if data is None:
        data = str(DEFAULT_FULL_DATA) if (mode == "full" and DEFAULT_FULL_DATA.exists()) else str(SAMPLE)
    bandwidths = tuple(bandwidths or BANDWIDTHS[mode])
    serve_dir, plain, note = prepare_repository(models_dir, plain_onnx)
    repo = ModelRepository(serve_dir)
    pipelines = plan_pipelines(repo, plain, qbits, sizes)
    served = sorted({p["model"] for p in pipelines if p["kind"] != "edge"})
    if adaptive:
        from edge_client.adaptive import resolve_family
        served = sorted(set(served) | {c.name for c in resolve_family(repo, family)})
    result: dict = {
        "benchmark": "bandwidth", "mode": mode, "data": _shown(data), "limit": limit,
        "bandwidths": list(bandwidths), "slowdowns": [f"K={k:g}" for k in slowdowns],
        "slowdown_factors": list(slowdowns), "rtt_ms_added": rtt_ms, "settings": m,
        "pipelines": pipelines, "models_dir": _shown(serve_dir), "note": note,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_start": list(os.getloadavg())},
    }
    if progress:
        print(f"bench bandwidth ({mode}): link {link_kind} ({shape}), {len(pipelines)} pipelines, "
              f"bandwidths {list(bandwidths)} Mbit/s, data {data}" + (f"; {note}" if note else ""), file=sys.stderr)

    def server_factory(prefix, host):
        return ServerProcess(served, models_dir=serve_dir, prefix=prefix, host=host,
                             extra=["--max-message-bytes", str(1 << 20), "--max-batch-size", "8"])

    link = Link(link_kind, shape)
    worker = None
    try:
        link.start(server_factory)
        result["link"] = {"kind": link_kind, "shape": shape, "label": link.label}
        if link.netns is not None:
            from splitinfer.net.netns import tbf_burst_bytes, tbf_limit_bytes
            result["link"]["tbf"] = {str(b): {"burst_bytes": tbf_burst_bytes(b * 1e6), "limit_bytes": tbf_limit_bytes(b * 1e6)}
                                     for b in bandwidths}
        worker = WorkerProcess(link.client_prefix)
        worker.models_dir = serve_dir
        link.set_rate(100.0)
        init = worker.call({"cmd": "init", "models_dir": serve_dir, "data": data, "limit": limit,
                            "server": link.address, "pipelines": pipelines})
        result["clouds"] = init["clouds"]
        if sweep:
            t0 = time.perf_counter()
            cells = run_sweep(worker, link, pipelines, bandwidths, m, progress)
            result["sweep_wall_s"] = time.perf_counter() - t0
            summarize_sweep(result, cells, slowdowns, rtt_ms)
            result["crossovers"] = crossover_table(result)
            result["bar_split_vs_draco"] = bar_split_vs_draco(result)
            result["frames"] = {c["pipeline"] + "@" + str(c["bandwidth_mbit"]): c["frames"] for c in cells}
        if adaptive:
            t0 = time.perf_counter()
            ad = run_adaptive(worker, link, family, budget_ms, interval_ms, schedule, window, fixed,
                              adaptive_slowdown, None, progress)
            ad["link_label"] = link.label
            ad["wall_s"] = time.perf_counter() - t0
            result["adaptive"] = ad
    finally:
        if worker is not None:
            worker.close()
        link.stop()
        if note and serve_dir.startswith(tempfile.gettempdir()):
            shutil.rmtree(serve_dir, ignore_errors=True)
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    result["wall_s"] = time.perf_counter() - t_start
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        plot_out = plot_out or str(Path(json_out).with_suffix(".png"))
    if plot_out:
        if sweep:
            result["plot"] = plot_sweep(result, plot_out)
        if adaptive:
            p = Path(plot_out)
            result["adaptive_plot"] = plot_adaptive(result["adaptive"], str(p.with_name(p.stem + "_adaptive.png")))
    if json_out:
        trace = (result.get("adaptive") or {}).get("runs", {}).get("adaptive", {}).pop("trace", None)
        if trace is not None:
            tp = Path(json_out).with_name(Path(json_out).stem + "_adaptive_trace.json")
            sched = result["adaptive"]["schedule"]
            tp.write_text(json.dumps({"candidates": result["adaptive"]["runs"]["adaptive"]["candidates"],
                                      "budget_ms": result["adaptive"]["budget_ms"], "trace": trace,
                                      "t0": result["adaptive"]["runs"]["adaptive"].get("t0"),
                                      "phases_s": [float(x) for x in np.cumsum([p["seconds"] for p in sched])[:-1]],
                                      "schedule": sched, "link": result["link"]["label"],
                                      "decisions": result["adaptive"]["runs"]["adaptive"]["decisions"]}) + "\n")
            result["adaptive"]["trace_file"] = str(tp)
        Path(json_out).write_text(json.dumps(result, indent=1) + "\n")
    return result


def _fmt(v, spec=".1f"):
    return "-" if v is None else format(v, spec)


def report(result: dict) -> str:
    lines = []
    if "p50" in result:
        bws = result["bandwidths"]
        for key in result["slowdowns"]:
            lines.append(f"p50 / p95 end-to-end latency (ms), device slowdown {key}, {result['link']['label']}:")
            lines.append(f"{'pipeline':<22} " + " ".join(f"{str(b) + ' Mb/s':>17}" for b in bws) + f" {'accuracy':>9}")
            for p in result["pipelines"]:
                pid = p["id"]
                cells = " ".join(f"{_fmt(result['p50'][key][pid].get(str(b))):>8}/{_fmt(result['p95'][key][pid].get(str(b))):<8}"
                                 for b in bws)
                acc = result["accuracy"].get(pid, {}).get("accuracy")
                lines.append(f"{pid:<22} {cells} {_fmt(None if acc is None else 100 * acc):>8}%")
            lines.append("")
        lines.append(f"bytes per frame on the wire, uplink / downlink (L2, from the link's counters; "
                     f"{result['link']['label']}):")
        lines.append(f"{'pipeline':<22} {'payload':>8} " + " ".join(f"{str(b) + ' Mb/s':>13}" for b in bws))
        wires = {(c["pipeline"], c["bandwidth_mbit"]): (c.get("wire_bytes_per_frame") or {}) for c in result["cells"]}
        for p in result["pipelines"]:
            if p["kind"] == "edge":
                continue
            pid = p["id"]
            pay = [c["payload_bytes_mean"] for c in result["cells"] if c["pipeline"] == pid and c["payload_bytes_mean"]]
            cells = " ".join(f"{_fmt(wires.get((pid, b), {}).get('up'), '.0f'):>6}/{_fmt(wires.get((pid, b), {}).get('down'), '.0f'):<6}"
                             for b in bws)
            lines.append(f"{pid:<22} {_fmt(float(np.mean(pay)) if pay else None):>8} {cells}")
        lines.append("")
        counts = {}
        for c in result["cells"]:
            if c["bandwidth_mbit"] is not None:
                counts.setdefault(c["pipeline"], {})[c["bandwidth_mbit"]] = c["frames"]
        lines.append("frames per cell: " + "; ".join(f"{pid} " + ",".join(str(v) for v in d.values())
                                                     for pid, d in counts.items()))
        lines.append("crossovers (Mbit/s; a faster below the crossover when a_faster_at_lowest_bw):")
        for row in result["crossovers"]:
            if row["crossovers_mbit"]:
                lines.append(f"  {row['K']}: {row['a']} vs {row['b']}: {row['crossovers_mbit']} "
                             f"({row['a']} {'faster' if row['a_faster_at_lowest_bw'] else 'slower'} below)")
        b = result.get("bar_split_vs_draco")
        if b:
            for key, v in b["by_K"].items():
                lines.append(f"bar {key}: {b['split']} p50 {_fmt(v['split_p50_ms'])} ms vs {v['draco']} "
                             f"{_fmt(v['draco_p50_ms'])} ms at 0.1 Mbit/s: ratio {_fmt(v['ratio'], '.3f')} "
                             f"(target <= {TARGET_RATIO}) -> {'met' if v['met'] else 'NOT met'}; vs each Draco: "
                             + ", ".join(f"{d} {_fmt(r, '.3f')}" for d, r in b["vs_each_draco"][key].items()))
    ad = result.get("adaptive")
    if ad:
        lines.append(f"adaptive experiment: budget {ad['budget_ms']:g} ms, a frame every {ad['interval_ms']:g} ms, "
                     f"schedule " + " -> ".join(f"{p['mbit']:g} Mbit/s x {p['seconds']:g} s" for p in ad["schedule"]))
        for name, s in ad["summary"].items():
            lines.append(f"  {name:<8}: {s['frames']}/{s['scheduled']} frames answered, lost {s['lost']}, failed "
                         f"{s['failed']}, {100 * s['within_budget']:.1f}% within budget, p50 {_fmt(s['p50_ms'])} ms, "
                         f"p95 {_fmt(s['p95_ms'])} ms, accuracy {_fmt(100 * (s['accuracy'] or 0))}%, expected "
                         f"{_fmt(100 * (s['expected_accuracy'] or 0))}%")
            for ph in s["phases"]:
                lines.append(f"      {ph['mbit']:>6g} Mbit/s: p50 {_fmt(ph['p50_ms'])} p95 {_fmt(ph['p95_ms'])} ms, "
                             f"{_fmt(100 * (ph['within_budget'] or 0))}% within, bits {_fmt(ph['bits_mean'])}")
        lines.append(f"  bar: adaptive >= {100 * TARGET_WITHIN_BUDGET:.0f}% within budget, fixed not, no frame lost "
                     f"-> {'met' if ad['bar']['met'] else 'NOT met'}")
    lines.append(f"wall time {result['wall_s']:.1f} s")
    return "\n".join(lines)


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
    b.add_argument("--draco-qbits", default=",".join(str(q) for q in DRACO_QBITS))
    b.add_argument("--sizes", default="full,lite,micro")
    b.add_argument("--cell-seconds", type=float, help="time per (pipeline, bandwidth) cell")
    b.add_argument("--min-frames", type=int)
    b.add_argument("--max-frames", type=int)
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
    b.add_argument("--quiet", action="store_true")
    b.set_defaults(func=_run)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        sys.exit(_worker_main())
    sys.exit("usage: splitinfer bench bandwidth ...  (python -m splitinfer.bench.bandwidth _worker is internal)")
