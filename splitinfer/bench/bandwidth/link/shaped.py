"""The link the benchmark drives: tbf on a veth pair between network namespaces (root), or the
token-bucket relay on loopback; the server starts behind it, the client runs on its far side."""
from __future__ import annotations

from .netns import NetnsLink, tbf_burst_bytes
from .relay import Relay

RELAY_OVERHEAD = 66     # bytes of Ethernet + IPv4 + TCP (with timestamps) per 1448-byte segment


class Link:
    """The shaped link the benchmark runs over: tbf between namespaces, or the loopback relay."""

    def __init__(self, kind: str, shape: str = "uplink"):
        self.kind = kind
        self.shape = shape
        self.netns = None
        self.relay = None
        self.server = None

    def start(self, server_factory) -> None:
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
