"""Emptying a tbf bucket before each frame (run in the client's namespace)."""
from __future__ import annotations

import json
import subprocess
import time


class Drain:
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

    def close(self) -> None:
        self.sock.close()
