"""The idempotency ledger: answers of recent frames, so that a frame resent after a reconnect is
answered again without being classified twice, and never with another frame's answer.

An entry is keyed by the stream (its id and the client's session bytes, hashed to 16 bytes, so a
long stream id costs its length once per open, not per entry) and the frame's seq, and holds the
frame's payload digest: a resent frame whose payload differs from the one recorded under its key
is a ``Conflict`` (the caller answers ALREADY_EXISTS), never a stale answer.

Bounded: entries are charged ``ENTRY_BYTES`` each and streams ``STREAM_BYTES`` (measured upper
bounds of what an entry and a stream hold in CPython, answers included: 100k entries over 10k streams measured
~260 bytes of RSS per entry, stream shares included); past ``stream_bytes`` a
stream forgets its oldest entries, past ``max_bytes`` the least recently used streams are
forgotten whole. A stream's entries expire ``grace_s`` after its last call closed (a client that
reconnects within the grace still finds them).
"""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, deque
from typing import Any, Callable

ENTRY_BYTES = 256     # one entry: its dict slot, seq, digest and the answer (serialized, ~10-60 B)
STREAM_BYTES = 512    # one stream: its record, dicts and key


class Conflict(Exception):
    """A (stream, seq) seen before with a different payload."""


class _Stream:
    __slots__ = ("key", "entries", "bytes", "calls", "closed_at")

    def __init__(self, key: bytes):
        self.key = key
        self.entries: dict[int, tuple] = {}    # seq -> (payload digest, answer), oldest first
        self.bytes = STREAM_BYTES
        self.calls = 0
        self.closed_at: float | None = None


class Ledger:
    def __init__(self, max_bytes: int = 64 << 20, stream_bytes: int = 1 << 20, grace_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.max_bytes = int(max_bytes)
        self.stream_bytes = max(STREAM_BYTES + ENTRY_BYTES, int(stream_bytes))
        self.grace_s = float(grace_s)
        self.clock = clock
        self.bytes = 0
        self._streams: OrderedDict[bytes, _Stream] = OrderedDict()
        self._closed: deque[tuple[float, _Stream]] = deque()

    def __len__(self) -> int:
        return len(self._streams)

    @staticmethod
    def key(stream_id: str, session: bytes = b"") -> bytes:
        return hashlib.blake2b(stream_id.encode() + b"\0" + bytes(session), digest_size=16).digest()

    # -- streams ------------------------------------------------------------------------------------
    def open(self, stream_id: str, session: bytes = b"") -> _Stream:
        """The stream's record (new or remembered), counted as open until ``close``."""
        self.expire()
        k = self.key(stream_id, session)
        s = self._streams.get(k)
        if s is None:
            s = self._streams[k] = _Stream(k)
            self.bytes += STREAM_BYTES
            self._trim_total(keep=s)
        else:
            self._streams.move_to_end(k)
        s.calls += 1
        s.closed_at = None
        return s

    def close(self, s: _Stream) -> None:
        s.calls -= 1
        if s.calls <= 0:
            s.calls = 0
            s.closed_at = self.clock()
            self._closed.append((s.closed_at, s))
            if len(self._closed) > 2 * len(self._streams) + 64:   # forget what was already dropped
                self._closed = deque((t, x) for t, x in self._closed
                                     if x.closed_at == t and self._streams.get(x.key) is x)
        self.expire()

    def expire(self) -> None:
        """Forget streams closed longer than the grace period."""
        now = self.clock()
        while self._closed and self._closed[0][0] + self.grace_s <= now:
            closed_at, s = self._closed.popleft()
            if s.closed_at == closed_at and s.calls == 0:
                self._drop(s)

    def _drop(self, s: _Stream) -> None:
        if self._streams.get(s.key) is s:
            del self._streams[s.key]
            self.bytes -= s.bytes
            s.entries = {}        # a call still holding the record must not keep them alive
            s.bytes = STREAM_BYTES

    def _trim_total(self, keep: _Stream | None = None) -> None:
        while self.bytes > self.max_bytes and self._streams:
            oldest = next(iter(self._streams.values()))
            if oldest is keep:
                if len(self._streams) == 1:
                    self._trim_stream(keep, self.max_bytes)
                    return
                self._streams.move_to_end(keep.key)
                continue
            self._drop(oldest)

    def _trim_stream(self, s: _Stream, limit: int) -> None:
        while s.bytes > limit and s.entries:
            del s.entries[next(iter(s.entries))]
            s.bytes -= ENTRY_BYTES
            self.bytes -= ENTRY_BYTES

    # -- entries ------------------------------------------------------------------------------------
    def get(self, s: _Stream, seq: int, digest: int) -> Any:
        """The answer (or its future) recorded for (stream, seq), None when there is none;
        raises Conflict when it was recorded for a different payload."""
        e = s.entries.get(seq)
        if e is None:
            return None
        if e[0] != digest:
            raise Conflict(f"seq {seq} of this stream was already used for a different frame")
        return e[1]

    def _live(self, s: _Stream) -> None:
        """Re-admit a stream forgotten (for the total budget) while a call still uses it."""
        if self._streams.get(s.key) is not s:
            s.entries.clear()
            s.bytes = STREAM_BYTES
            self._streams[s.key] = s
            self.bytes += STREAM_BYTES

    def put(self, s: _Stream, seq: int, digest: int, value: Any) -> None:
        self._live(s)
        if seq in s.entries:
            s.entries[seq] = (digest, value)
            return
        s.entries[seq] = (digest, value)
        s.bytes += ENTRY_BYTES
        self.bytes += ENTRY_BYTES
        if s.bytes > self.stream_bytes:
            self._trim_stream(s, self.stream_bytes)
        if self.bytes > self.max_bytes:
            self._trim_total(keep=s)

    def discard(self, s: _Stream, seq: int, value: Any) -> None:
        """Forget (stream, seq) if it still holds ``value`` (a failed or abandoned attempt)."""
        if self._streams.get(s.key) is not s:
            return
        e = s.entries.get(seq)
        if e is not None and e[1] is value:
            del s.entries[seq]
            s.bytes -= ENTRY_BYTES
            self.bytes -= ENTRY_BYTES
