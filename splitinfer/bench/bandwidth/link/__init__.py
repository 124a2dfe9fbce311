"""Shaped network links for the bandwidth benchmark.

- ``netns``: two network namespaces joined by a veth pair, rate-limited with ``tc qdisc ... tbf``
  on both ends (root, ``ip`` and ``tc`` needed): the real kernel TCP/IP stack over a link of a
  given rate.
- ``relay``: a token-bucket TCP relay on loopback (no privileges): the same sweep in user space.
- ``drain``: empties the tbf bucket before a frame, so that the frame pays its serialization time.
- ``shaped``: ``Link``, either of the two with the server behind it, as the benchmark drives it.
"""
from .netns import NetnsLink, NetnsUnavailable, netns_available, tbf_burst_bytes
from .relay import Relay, TokenBucket
from .shaped import Link

__all__ = ["Link", "NetnsLink", "NetnsUnavailable", "Relay", "TokenBucket", "netns_available", "tbf_burst_bytes"]
