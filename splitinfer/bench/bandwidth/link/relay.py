"""A token-bucket TCP relay on loopback: a shaped link without privileges.

    with Relay(("127.0.0.1", server_port), rate_mbit=0.1) as relay:
        client = EdgeClient(relay.address, ...)     # everything the client sends or receives
        relay.set_rate(10)                          # passes a token bucket of that rate

The relay accepts connections on ``127.0.0.1:<port>`` and forwards each to the target; each
direction (uplink: client -> server, downlink: server -> client) has one token bucket shared by
all connections, like one link. Data is forwarded in chunks of at most ``max(mss, burst)``
bytes; a chunk of n bytes costs n tokens plus ``overhead`` bytes per ``mss``-sized packet it
would take on a real link (default 0: the rate is a TCP payload rate; the bandwidth benchmark
charges 66 bytes, Ethernet + IPv4 + TCP with timestamps, to approximate what tbf counts), and
leaves when the bucket has paid for it: the bucket may go into debt, so a chunk is held back for
its own serialization time (store-and-forward); the chunks of one received buffer queue back to
back, so a relay thread that wakes late costs the link no time. The bucket holds at most
``burst`` bytes; the default 0 makes every chunk wait n / rate even after an idle period, as on
a real link of that rate (tbf needs a bucket of at least one packet; the benchmark empties it
before each frame, see ``drain.Drain``); ``burst=None`` uses tbf's ``tbf_burst_bytes``. The queue
in front of the bucket is unbounded (the kernel socket buffers plus one chunk), like the tbf
links' large limit.

Differences from a tbf link (why results are labelled "relay"): the TCP connections themselves
run over loopback (their ACKs and window updates are not shaped), bytes are counted at the
relay, not as L2 frames, and the timing is Python's (sleep granularity ~0.1-1 ms).
"""
from __future__ import annotations

import math
import socket
import threading
import time

from .netns import tbf_burst_bytes


class TokenBucket:
    """Rate ``rate_bps`` (bits/s), bucket ``burst`` bytes; ``take(n)`` blocks until n bytes may go.

    Kept as the virtual clock of GCRA (the generic cell rate algorithm, equivalent to a token
    bucket): ``tat`` is when every byte charged so far has been paid for; the bucket holds
    ``min(burst, (now - tat) * rate / 8)`` tokens, a debt while ``tat`` lies ahead. Bytes that
    arrived at ``arrival`` are scheduled from then, not from when the caller got round to them, so
    a late wake-up (a busy CPU) costs no link time."""

    def __init__(self, rate_bps: float, burst: int | None = None):
        self._lock = threading.Lock()
        self.rate_bps = float(rate_bps)
        self.burst = int(burst) if burst is not None else tbf_burst_bytes(rate_bps)
        self._fixed_burst = burst is not None
        self.tat = -math.inf  # the bucket starts full

    def set_rate(self, rate_bps: float) -> None:
        """New rate (and tbf's burst for it, unless fixed); a debt is kept in bytes, the tokens
        up to the new burst."""
        with self._lock:
            now = time.monotonic()
            held = min(float(self.burst), (now - self.tat) * self.rate_bps / 8)  # negative: a debt
            self.rate_bps = float(rate_bps)
            if not self._fixed_burst:
                self.burst = tbf_burst_bytes(rate_bps)
            self.tat = now - min(held, float(self.burst)) * 8 / self.rate_bps  # the new burst caps it

    def reserve(self, n: int, arrival: float | None = None) -> float:
        """Charge n bytes that arrived at ``arrival`` (``time.monotonic()``; default now); the
        seconds to wait before they may leave (0 when the bucket had them)."""
        with self._lock:
            now = time.monotonic()
            t = now if arrival is None else min(arrival, now)
            lead = max(self.tat - t, -self.burst * 8 / self.rate_bps)
            cost = n * 8 / self.rate_bps
            self.tat = t + lead + cost
            return max(0.0, lead + cost - (now - t))

    def take(self, n: int, arrival: float | None = None) -> None:
        wait = self.reserve(n, arrival)
        if wait > 0:
            time.sleep(wait)


class Relay:
    """Loopback TCP relay to ``target`` (host, port), each direction shaped by a token bucket.

    rate_mbit: initial rate of both directions; shape: "both" or "uplink" (the downlink then
    passes unshaped); overhead/mss: per-packet bytes charged (see the module docstring).
    """

    def __init__(self, target: tuple[str, int], rate_mbit: float, shape: str = "both",
                 overhead: int = 0, mss: int = 1448, host: str = "127.0.0.1", port: int = 0,
                 burst: int | None = 0):
        if shape not in ("both", "uplink"):
            raise ValueError(f"shape must be 'both' or 'uplink', not {shape!r}")
        self.target = target
        self.shape = shape
        self.overhead = int(overhead)
        self.mss = int(mss)
        self.rate_mbit = float(rate_mbit)
        self.buckets = {"up": TokenBucket(rate_mbit * 1e6, burst), "down": TokenBucket(rate_mbit * 1e6, burst)}
        self.bytes = {"up": 0, "down": 0}         # bytes forwarded
        self.charged = {"up": 0, "down": 0}       # bytes the buckets charged (with the per-packet overhead)
        self._count_lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(64)
        self.host = host
        self.port = self._listener.getsockname()[1]
        self._stopping = False
        self._socks: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._accept_thread = threading.Thread(target=self._accept, name="relay-accept", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def set_rate(self, rate_mbit: float) -> None:
        self.rate_mbit = float(rate_mbit)
        for b in self.buckets.values():
            b.set_rate(rate_mbit * 1e6)

    def start(self) -> "Relay":
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        self._stopping = True
        try:
            self._listener.close()
        except OSError:
            pass
        for s in list(self._socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        self._accept_thread.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)

    def __enter__(self) -> "Relay":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stopping:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._socks.add(s)
            for src, dst, direction in ((client, server, "up"), (server, client, "down")):
                t = threading.Thread(target=self._pump, args=(src, dst, direction),
                                     name=f"relay-{direction}", daemon=True)
                t.start()
                self._threads.append(t)
            self._threads = [t for t in self._threads if t.is_alive()]

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str) -> None:
        bucket = self.buckets[direction] if (direction == "up" or self.shape == "both") else None
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                arrived = time.monotonic()
                view = memoryview(data)
                while len(view):
                    cost = 0
                    if bucket is None:
                        chunk, view = view, view[len(view):]
                    else:
                        size = max(self.mss, bucket.burst)
                        chunk, view = view[:size], view[size:]
                        cost = len(chunk) + math.ceil(len(chunk) / self.mss) * self.overhead
                        bucket.take(cost, arrived)  # the chunks of one recv are a backlog
                    dst.sendall(chunk)
                    with self._count_lock:
                        self.bytes[direction] += len(chunk)
                        self.charged[direction] += cost
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
