"""The benchmark's client process and its protocol: the parent (``WorkerProcess``) starts
``python -m splitinfer.bench.bandwidth _worker`` (inside the client's namespace on a netns link)
and sends it one JSON command per line (``init``, ``run``, ``adaptive``, ``quit``); the child
(``Worker``) answers each with one JSON line (``{"ok": true, "result": ...}`` or the error and
its traceback), the adaptive command after a ``{"event": "started"}`` line. Nothing but protocol
lines goes to the child's stdout; its stderr goes to a log file that failures quote.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from . import ROOT
from .link.drain import Drain
from .stream import SeqStream


def _short_id() -> str:
    return uuid.uuid4().hex[:8]


# ================================================================================ the worker (child)
class Worker:
    """The child's end: answers the parent's commands, one JSON line each."""

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
        self.streams: dict[str, SeqStream] = {}
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
            x = m.preprocess(cloud, 0)[None]
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
            stream = self.streams[p["model"]] = SeqStream(self.stub, p["model"], digest, "s" + _short_id())
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
        self.drain = Drain(d["burst"], d["rate_bps"], d["address"], d.get("dev")) if d else None
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


def main() -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = sys.stderr          # nothing but protocol lines on the real stdout
    return Worker(out).serve(sys.stdin)


# ================================================================================ the parent
class WorkerProcess:
    """The parent's end: starts the worker (behind ``prefix``, e.g. ``ip netns exec NS``) and
    calls its commands."""

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
