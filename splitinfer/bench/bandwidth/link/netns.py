"""A real shaped link: two network namespaces joined by a veth pair, ``tc ... tbf`` on both ends.

    with NetnsLink(rate_mbit=0.1) as link:            # needs root, `ip` and `tc`
        server = subprocess.Popen(link.exec_prefix("server") + [...])   # listens on link.server_ip
        client = subprocess.Popen(link.exec_prefix("client") + [...])   # connects to it
        link.set_rate(10)                              # change the rate while traffic runs
    # namespaces, veth pair and qdiscs are gone here (also after an exception)

Layout (``tag`` makes the names unique per process, so parallel runs do not collide)::

    netns si<tag>-c: lo, veth si<tag>c 10.203.0.1/30, root qdisc tbf (uplink: client -> server)
    netns si<tag>-s: lo, veth si<tag>s 10.203.0.2/30, root qdisc tbf (downlink: server -> client)

The addresses exist only inside the two namespaces (nothing is routed to or from the host).

**tbf settings.** ``rate`` is the link rate; tbf counts whole L2 frames (Ethernet + IP + TCP
headers included), as a real link does. ``burst`` (the bucket size) must hold at least one
full-size frame, or tbf drops it, and at high rates it must cover a kernel timer tick's worth of
bytes, or tbf cannot reach the rate; we use ``max(1600 bytes, rate x 5 ms)`` (1600 B: an MTU-1500
frame plus headroom; 5 ms: above one tick at HZ=250). So the link lets at most ~5 ms worth of
bytes through at once (a 62.5 kB burst at 100 Mbit/s, a single frame at 1 Mbit/s and below).
``limit`` (bytes queued behind the bucket) is large (``max(256 kB, rate x 2 s)``) so that a
slow link queues rather than drops: TCP then sees delay, not loss (a drop at 0.01 Mbit/s would
cost a retransmission timeout of seconds). There is no ``netem`` here: no propagation delay or
loss is modelled by the link (a benchmark that wants a round-trip delay adds it itself).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from typing import Sequence

_COUNTER = itertools.count()
_STALE = re.compile(r"^si(\d+)x\d+-[cs]$")


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be used here (not root, no `ip`/`tc`, or the kernel refuses)."""


def netns_available() -> tuple[bool, str]:
    """(usable, why not): root and the `ip` and `tc` tools (the kernel may still refuse)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "not root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"`{tool}` not found"
    return True, ""


def tbf_burst_bytes(rate_bps: float) -> int:
    """The tbf bucket size for a rate: max(1600 bytes, 5 ms at that rate)."""
    return int(max(1600, rate_bps / 8 * 0.005))


def tbf_limit_bytes(rate_bps: float) -> int:
    """The tbf queue limit: max(256 kB, 2 s at that rate) (queue, do not drop)."""
    return int(max(256 * 1024, rate_bps / 8 * 2.0))


def _run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(cmd), capture_output=True, text=True, timeout=30)
    if check and p.returncode != 0:
        raise NetnsUnavailable(f"`{' '.join(cmd)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p


def list_namespaces() -> list[str]:
    p = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in p.stdout.splitlines() if line.strip()]


def cleanup_stale() -> list[str]:
    """Delete namespaces this module made in processes that are gone (a killed benchmark)."""
    removed = []
    for ns in list_namespaces():
        m = _STALE.match(ns)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            _run(["ip", "netns", "del", ns], check=False)
            removed.append(ns)
    return removed


class NetnsLink:
    """Two namespaces ("client", "server") joined by a veth pair, each end shaped by tbf.

    rate_mbit: the initial rate of both directions (None: unshaped). shape: "both" (a symmetric
    link) or "uplink" (client -> server only). Addresses: ``client_ip``, ``server_ip``.
    """

    def __init__(self, rate_mbit: float | None = None, shape: str = "both", tag: str | None = None,
                 client_ip: str = "10.203.0.1", server_ip: str = "10.203.0.2", prefix_len: int = 30):
        if shape not in ("both", "uplink"):
            raise ValueError(f"shape must be 'both' or 'uplink', not {shape!r}")
        self.tag = tag or f"{os.getpid()}x{next(_COUNTER)}"
        self.ns = {"client": f"si{self.tag}-c", "server": f"si{self.tag}-s"}
        self.dev = {"client": f"si{self.tag}c", "server": f"si{self.tag}s"}
        if any(len(d) > 15 for d in self.dev.values()):
            raise ValueError(f"tag {self.tag!r} too long for an interface name")
        self.ip = {"client": client_ip, "server": server_ip}
        self.prefix_len = prefix_len
        self.shape = shape
        self.initial_rate = rate_mbit
        self.rate_mbit: float | None = None
        self.active = False

    @property
    def client_ip(self) -> str:
        return self.ip["client"]

    @property
    def server_ip(self) -> str:
        return self.ip["server"]

    @property
    def broadcast(self) -> str:
        """The veth subnet's broadcast address (a destination nobody answers)."""
        import ipaddress
        return str(ipaddress.ip_interface(f"{self.client_ip}/{self.prefix_len}").network.broadcast_address)

    def exec_prefix(self, side: str) -> list[str]:
        """Prefix a command with this to run it inside the ``side`` namespace."""
        return ["ip", "netns", "exec", self.ns[side]]

    # -- set-up and tear-down ---------------------------------------------------------------------------
    def up(self) -> "NetnsLink":
        ok, why = netns_available()
        if not ok:
            raise NetnsUnavailable(why)
        cleanup_stale()
        self.active = True
        try:
            for side in ("client", "server"):
                _run(["ip", "netns", "add", self.ns[side]])
            _run(["ip", "link", "add", self.dev["client"], "type", "veth", "peer", "name", self.dev["server"]])
            for side in ("client", "server"):
                ns, dev = self.ns[side], self.dev[side]
                _run(["ip", "link", "set", dev, "netns", ns])
                # IPv4 only: no IPv6 neighbour discovery or MLD packets on the shaped link
                for key in ("all", "default", dev):
                    _run(["ip", "netns", "exec", ns, "sh", "-c",
                          f"echo 1 > /proc/sys/net/ipv6/conf/{key}/disable_ipv6"], check=False)
                _run(["ip", "-n", ns, "addr", "add", f"{self.ip[side]}/{self.prefix_len}", "dev", dev])
                _run(["ip", "-n", ns, "link", "set", dev, "up"])
                _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            if self.initial_rate is not None:
                self.set_rate(self.initial_rate)
        except BaseException:
            self.down()
            raise
        return self

    def down(self) -> None:
        """Remove both namespaces (their veth ends and qdiscs go with them); idempotent."""
        for side in ("client", "server"):
            _run(["ip", "netns", "del", self.ns[side]], check=False)
        _run(["ip", "link", "del", self.dev["client"]], check=False)  # if it never moved
        self.active = False
        self.rate_mbit = None

    def exists(self) -> dict[str, bool]:
        names = set(list_namespaces())
        return {side: ns in names for side, ns in self.ns.items()}

    def __enter__(self) -> "NetnsLink":
        return self.up()

    def __exit__(self, *exc) -> None:
        self.down()

    # -- shaping ------------------------------------------------------------------------------------------
    def _sides(self) -> list[str]:
        return ["client", "server"] if self.shape == "both" else ["client"]

    def set_rate(self, rate_mbit: float | None) -> None:
        """(Re)shape both directions (or the uplink) to ``rate_mbit``; None removes the shaping."""
        for side in self._sides():
            ns, dev = self.ns[side], self.dev[side]
            if rate_mbit is None:
                _run(["tc", "-n", ns, "qdisc", "del", "dev", dev, "root"], check=False)
                continue
            bps = float(rate_mbit) * 1e6
            _run(["tc", "-n", ns, "qdisc", "replace", "dev", dev, "root", "tbf",
                  "rate", f"{int(round(bps))}bit", "burst", str(tbf_burst_bytes(bps)),
                  "limit", str(tbf_limit_bytes(bps))])
        self.rate_mbit = rate_mbit

    def qdisc(self, side: str = "client") -> dict:
        """The root qdisc of one end as ``tc -s -j`` reports it (kind, rate, bytes, packets, drops...)."""
        p = _run(["tc", "-s", "-j", "-n", self.ns[side], "qdisc", "show", "dev", self.dev[side]])
        for q in json.loads(p.stdout or "[]"):
            if q.get("root") or q.get("parent") in (None, "root"):
                return q
        return {}

    def counters(self) -> dict[str, dict[str, int]]:
        """Bytes and packets sent by each end so far: by its root qdisc (``bytes``, ``packets``,
        ``drops``; an unshaped end has none) and by its veth (``tx_bytes``, ``tx_packets``, L2)."""
        out = {}
        for side in ("client", "server"):
            q = self.qdisc(side)
            p = _run(["ip", "-s", "-j", "-n", self.ns[side], "link", "show", "dev", self.dev[side]])
            tx = (json.loads(p.stdout or "[{}]")[0].get("stats64") or {}).get("tx") or {}
            out[side] = {"bytes": int(q.get("bytes", 0)), "packets": int(q.get("packets", 0)),
                         "drops": int(q.get("drops", 0)), "tx_bytes": int(tx.get("bytes", 0)),
                         "tx_packets": int(tx.get("packets", 0))}
        return out
