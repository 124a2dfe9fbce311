"""The benchmark's gRPC client: one v2 ClassifyStream used one frame at a time (send, wait for
the answer), so that every frame's network time is its own."""
from __future__ import annotations

import os
import queue
import time


class SeqStream:
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
