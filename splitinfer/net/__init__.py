"""Shaped network links for the bandwidth benchmark.

- ``netns``: two network namespaces joined by a veth pair, rate-limited with ``tc qdisc ... tbf``
  on both ends (root, ``ip`` and ``tc`` needed): the real kernel TCP/IP stack over a link of a
  given rate.
- ``relay``: a token-bucket TCP relay on loopback (no privileges): the same sweep in user space.
"""
from .netns import NetnsLink, NetnsUnavailable, netns_available, tbf_burst_bytes
from .relay import Relay, TokenBucket

__all__ = ["NetnsLink", "NetnsUnavailable", "Relay", "TokenBucket", "netns_available", "tbf_burst_bytes"]
