"""The idempotency ledger: never another frame's answer, bounded in bytes per stream and in total,
expiring after the stream closes plus a grace period; and a server's memory under 10k streams
with 4 KiB ids staying within the configured budget."""
from __future__ import annotations

import os
import threading

import grpc
import pytest
from service_utils import latents, metric, model_name, start_server

from cloud_server.ledger import ENTRY_BYTES, STREAM_BYTES, Conflict, Ledger


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_reused_key_with_another_payload_is_a_conflict():
    led = Ledger()
    s = led.open("d")
    led.put(s, 0, hash(b"chair"), b"answer-chair")
    assert led.get(s, 0, hash(b"chair")) == b"answer-chair"
    with pytest.raises(Conflict):
        led.get(s, 0, hash(b"toilet"))
    assert led.get(s, 1, hash(b"toilet")) is None
    assert led.get(led.open("d", b"new session"), 0, hash(b"toilet")) is None


def test_bounded_per_stream_and_in_total():
    led = Ledger(max_bytes=STREAM_BYTES * 3 + ENTRY_BYTES * 30, stream_bytes=STREAM_BYTES + ENTRY_BYTES * 10,
                 grace_s=1e9)
    a = led.open("a")
    for seq in range(100):
        led.put(a, seq, seq, b"x")
    assert len(a.entries) == 10 and sorted(a.entries) == list(range(90, 100))   # the newest kept
    assert led.bytes == STREAM_BYTES + 10 * ENTRY_BYTES
    for k in range(20):
        s = led.open(f"s{k}")
        for seq in range(10):
            led.put(s, seq, seq, b"x")
        led.close(s)
        assert led.bytes <= led.max_bytes
    assert len(led) <= 3
    led.put(a, 100, 100, b"x")     # the open stream forgotten for the budget comes back, empty
    assert led.bytes <= led.max_bytes and led.get(a, 100, 100) == b"x"


def test_entries_expire_after_close_plus_grace():
    clock = Clock()
    led = Ledger(grace_s=60, clock=clock)
    s = led.open("robot-7", b"run1")
    led.put(s, 0, 1, b"a")
    led.close(s)
    clock.t = 59
    again = led.open("robot-7", b"run1")       # a reconnect within the grace: still there
    assert again is s and led.get(again, 0, 1) == b"a"
    led.close(again)
    clock.t = 59 + 60.5
    led.expire()
    assert len(led) == 0 and led.bytes == 0


def test_long_stream_ids_cost_a_hash_not_their_length():
    led = Ledger()
    s = led.open("x" * 4096)
    assert len(s.key) == 16 and led.bytes == STREAM_BYTES


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def _flood(address, name, digest, frames, streams, per_stream, id_bytes, threads=4):
    from splitinfer.proto.v2 import inference_pb2 as pb2
    from splitinfer.proto.v2 import inference_pb2_grpc as pb2_grpc
    errors: list = []

    def work(k0):
        with grpc.insecure_channel(address) as ch:
            stub = pb2_grpc.InferenceStub(ch)
            for k in range(k0, streams, threads):
                sid = (f"{k:08d}" * (id_bytes // 8 + 1))[:id_bytes]
                head = pb2.StreamHeader(model=name, model_digest=digest, stream_id=sid, session=os.urandom(8))
                reqs = [pb2.StreamRequest(latent=frames[(k + i) % len(frames)]) for i in range(per_stream)]
                reqs[0].header.CopyFrom(head)
                got = list(stub.ClassifyStream(iter(reqs), timeout=60))
                if len(got) != per_stream or any(r.HasField("error") for r in got):
                    errors.append(k)
    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


@pytest.mark.service
@pytest.mark.parametrize("streams,per_stream", [
    pytest.param(300, 10, id="3k-frames"),
    pytest.param(10_000, 10, id="100k-frames", marks=pytest.mark.slow),
])
def test_server_memory_within_the_ledger_budget(streams, per_stream):
    """Frames over many streams with 4 KiB stream ids: the server's RSS grows by no more than
    the ledger budget (plus a fixed allowance for the allocator and gRPC), and the ledger's
    own account stays within it."""
    from splitinfer.repository import ModelRepository
    micro = model_name("micro")
    budget = 4 << 20
    frames = latents(micro, 50)[0]
    digest = bytes.fromhex(ModelRepository().config(micro).digest)
    srv = start_server([micro], ["--ledger-bytes", str(budget), "--ledger-grace-s", "3600",
                                 "--max-stream-id-bytes", "4096"])
    try:
        assert not _flood(srv.address, micro, digest, frames, 100, per_stream, 4096)   # warm up
        before = _rss(srv.proc.pid)
        assert not _flood(srv.address, micro, digest, frames, streams, per_stream, 4096)
        after = _rss(srv.proc.pid)
        charged = metric(srv.metrics_port, "splitinfer_ledger_bytes")
    finally:
        srv.stop()
    print(f"{streams * per_stream} frames over {streams} streams: RSS {before / 2**20:.1f} -> "
          f"{after / 2**20:.1f} MiB (+{(after - before) / 2**20:.1f}), ledger {charged / 2**20:.2f} MiB "
          f"of {budget / 2**20:.0f}")
    assert charged <= budget
    assert after - before <= budget + (16 << 20)
