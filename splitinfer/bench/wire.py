"""``splitinfer bench wire``: the bytes one stream frame costs on a shaped link, packet by packet.

A server in one network namespace, the client in another (veth + ``tc tbf`` on the uplink, as
``bench bandwidth`` uses; root), frames sent one at a time ``--gap-ms`` apart over one
ClassifyStream while an ``AF_PACKET`` socket captures the client's veth. Prints the mean uplink
and downlink L2 bytes per frame and the packets of one frame with their HTTP/2 frames (the
worked example of docs/protocol.md). Settings compared there: ``--v1`` (the deprecated protocol),
``--bdp`` (HTTP/2 BDP probing on, gRPC's default), ``--no-tcp-timestamps`` (in the client's
namespace).

    sudo splitinfer bench wire --model full-p1024-l10 --rate 0.1 --frames 30 --gap-ms 150
"""
from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time

H2_TYPES = {0: "DATA", 1: "HEADERS", 3: "RST_STREAM", 4: "SETTINGS", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE"}
ETH_P_ALL = 3
PACKET_OUTGOING = 4


class Capture:
    """Every packet of one interface (both directions) with its time, on a thread."""

    def __init__(self, dev: str):
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        self.sock.bind((dev, 0))
        self.sock.settimeout(0.1)
        self.packets: list[tuple[float, bool, bytes]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                data, addr = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.packets.append((time.perf_counter(), addr[2] == PACKET_OUTGOING, data))

    def stop(self) -> list[tuple[float, bool, bytes]]:
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        return self.packets


def describe(packet: bytes) -> dict:
    """L2 length, TCP header length and the HTTP/2 frames of an Ethernet/IPv4/TCP packet."""
    out = {"len": len(packet)}
    if len(packet) < 34 or packet[12:14] != b"\x08\x00" or packet[23] != 6:
        out["kind"] = "other"
        return out
    tcp = 14 + (packet[14] & 15) * 4
    doff = (packet[tcp + 12] >> 4) * 4
    payload = packet[tcp + doff:]
    frames, i = [], 0
    while i + 9 <= len(payload):
        n = int.from_bytes(payload[i:i + 3], "big")
        frames.append(f"{H2_TYPES.get(payload[i + 3], payload[i + 3])}({n})")
        i += 9 + n
    out.update(kind="tcp", tcp_header=doff, payload=payload.hex(), http2=frames)
    return out


def client_main(a: argparse.Namespace) -> int:
    """In the client's namespace: capture while streaming; writes JSON to stdout."""
    import grpc
    import numpy as np

    from splitinfer.data import SAMPLE
    from splitinfer.repository import ModelRepository
    sys.setswitchinterval(0.001)
    cap = Capture(a.dev)
    m = ModelRepository(a.models_dir).load(a.model)
    with np.load(a.data or SAMPLE) as z:
        points = z["points"][:a.frames]
    opts = [] if a.bdp else [("grpc.http2.bdp_probe", 0)]
    ch = grpc.insecure_channel(a.server, opts)
    grpc.channel_ready_future(ch).result(timeout=60)
    q: queue.Queue = queue.Queue()
    if a.v1:
        from splitinfer.proto import inference_pb2 as pb, inference_pb2_grpc as pbg
        frames = [m.encode(p) for p in points]
        reqs = [pb.ClassifyRequest(model=a.model, payload=f, stream_id="s" + os.urandom(4).hex(), seq=i + 1)
                for i, f in enumerate(frames)]
    else:
        from splitinfer.proto.v2 import inference_pb2 as pb, inference_pb2_grpc as pbg
        frames = [m.encode_latent(p) for p in points]
        reqs = [pb.StreamRequest(latent=f) for f in frames]
        reqs[0].header.CopyFrom(pb.StreamHeader(model=a.model, model_digest=bytes.fromhex(m.config.digest),
                                                stream_id="s" + os.urandom(4).hex(), session=os.urandom(8)))
    call = pbg.InferenceStub(ch).ClassifyStream(iter(q.get, None))
    marks = []
    for r in reqs:
        time.sleep(a.gap_ms / 1e3)
        marks.append(time.perf_counter())
        q.put(r)
        next(call)
    q.put(None)
    for _ in call:
        pass
    time.sleep(0.3)
    packets = cap.stop()
    json.dump({"marks": marks, "frame_bytes": [len(f) for f in frames],
               "requests": [r.ByteSize() for r in reqs],
               "packets": [dict(describe(d), t=t, out=o) for t, o, d in packets]}, sys.stdout)
    return 0


def per_frame(rec: dict, skip: int = 2) -> dict:
    """Mean L2 bytes per frame, both directions, between one send and the next (the first
    ``skip`` frames and the last left out: connection start, stream end)."""
    marks, packets = rec["marks"], rec["packets"]
    windows = []
    for i in range(skip, len(marks) - 1):
        ps = [p for p in packets if marks[i] <= p["t"] < marks[i + 1]]
        windows.append(ps)
    up = [sum(p["len"] for p in ps if p["out"]) for ps in windows]
    down = [sum(p["len"] for p in ps if not p["out"]) for ps in windows]
    return {"frames": len(windows), "uplink_bytes": sum(up) / len(up), "downlink_bytes": sum(down) / len(down),
            "latent_bytes": sum(rec["frame_bytes"][skip:-1]) / len(windows),
            "request_bytes": sum(rec["requests"][skip:-1]) / len(windows),
            "example": windows[len(windows) // 2] if windows else []}


def run(a: argparse.Namespace) -> dict:
    from cloud_server.process import ServerProcess
    from .bandwidth.link import NetnsLink
    link = NetnsLink(None, shape="uplink").up()
    try:
        if a.no_tcp_timestamps:
            subprocess.run(link.exec_prefix("client") + ["sysctl", "-qw", "net.ipv4.tcp_timestamps=0"], check=True)
        srv = ServerProcess([a.model], models_dir=a.models_dir, prefix=link.exec_prefix("server"),
                            host=link.server_ip)
        try:
            link.set_rate(a.rate)
            cmd = link.exec_prefix("client") + [
                sys.executable, "-m", "splitinfer.bench.wire", "--client", "--dev", link.dev["client"],
                "--server", f"{link.server_ip}:{srv.port}", "--model", a.model, "--frames", str(a.frames),
                "--gap-ms", str(a.gap_ms)] + (["--v1"] if a.v1 else []) + (["--bdp"] if a.bdp else []) + \
                (["--models-dir", a.models_dir] if a.models_dir else []) + (["--data", a.data] if a.data else [])
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"the client failed:\n{p.stderr[-3000:]}")
            rec = json.loads(p.stdout)
        finally:
            srv.stop()
    finally:
        link.down()
    out = per_frame(rec)
    out.update(model=a.model, rate_mbit=a.rate, gap_ms=a.gap_ms, protocol="v1" if a.v1 else "v2",
               bdp_probe=a.bdp, tcp_timestamps=not a.no_tcp_timestamps)
    return out


def report(r: dict) -> str:
    lines = [f"{r['model']} over {r['protocol']} (BDP probing {'on' if r['bdp_probe'] else 'off'}, TCP timestamps "
             f"{'on' if r['tcp_timestamps'] else 'off'}), {r['rate_mbit']:g} Mbit/s uplink, a frame every "
             f"{r['gap_ms']:g} ms: uplink {r['uplink_bytes']:.1f} B/frame, downlink {r['downlink_bytes']:.1f} B/frame "
             f"(latent {r['latent_bytes']:.1f} B, request message {r['request_bytes']:.1f} B; mean of {r['frames']} frames)",
             "one frame's packets:"]
    for p in r["example"]:
        lines.append(f"  {'up  ' if p['out'] else 'down'} {p['len']:5d} B  " + " ".join(p.get("http2") or ["(no payload)"]))
    return "\n".join(lines)


def add_arguments(b: argparse.ArgumentParser) -> None:
    b.add_argument("--model", required=True, help="the model whose frames are sent (split codec)")
    b.add_argument("--rate", type=float, default=0.1, help="uplink Mbit/s (default 0.1)")
    b.add_argument("--frames", type=int, default=30, help="frames to send, one at a time (default 30)")
    b.add_argument("--gap-ms", type=float, default=150.0, help="pause before each frame (default 150)")
    b.add_argument("--v1", action="store_true", help="the deprecated v1 protocol")
    b.add_argument("--bdp", action="store_true", help="HTTP/2 BDP probing on (gRPC's default)")
    b.add_argument("--no-tcp-timestamps", action="store_true", help="TCP timestamps off in the client's namespace")
    b.add_argument("--models-dir", help="model repository (default: models/ or $SPLITINFER_MODELS)")
    b.add_argument("--data", help="clouds (.npz; default the bundled sample)")
    b.add_argument("--json", help="write the result here")


def _run(a: argparse.Namespace) -> int:
    r = run(a)
    print(report(r))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=1)
    return 0


def register(subparsers) -> None:
    b = subparsers.add_parser("wire", help="bytes per stream frame on a shaped link, packet by packet (root)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(b)
    b.set_defaults(func=_run)


if __name__ == "__main__":   # the client half, inside its namespace
    p = argparse.ArgumentParser()
    add_arguments(p)
    p.add_argument("--client", action="store_true")
    p.add_argument("--dev")
    p.add_argument("--server")
    sys.exit(client_main(p.parse_args()))
