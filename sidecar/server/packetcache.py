"""Packed replies keyed by normalized query bytes plus the client's view: the fast path.

A hit costs a dict lookup and a few byte slices; no DNS parsing. Entries carry the zone
generation they were built from, so any zone swap retires them all at once; forwarded entries
also expire with their TTL and have their TTLs counted down on the way out."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ..wire import count_down, ttl_offsets

FOREVER = float("inf")


@dataclass(slots=True)
class _Packed:
    reply: bytes
    ttls: list[tuple[int, int]]
    stored_at: float
    expires_at: float
    generation: int


class PacketCache:
    def __init__(self, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[bytes, _Packed] = {}
        self.max_entries = max_entries
        self._clock = clock
        self.hits = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: bytes, generation: int) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != generation:
            del self._entries[key]
            return None
        if entry.expires_at != FOREVER:
            now = self._clock()
            if now >= entry.expires_at:
                del self._entries[key]
                return None
            elapsed = int(now - entry.stored_at)
            if elapsed:
                self.hits += 1
                return count_down(entry.reply, entry.ttls, elapsed)
        self.hits += 1
        return entry.reply

    def put(self, key: bytes, reply: bytes, cache_for: float | None, generation: int) -> None:
        """Keep `reply`: for `cache_for` seconds, until the zone changes if None, not at all if 0."""
        if cache_for is not None and cache_for <= 0:
            return
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # oldest insertion goes first
        if cache_for is None:
            self._entries[key] = _Packed(reply, [], now, FOREVER, generation)
        else:
            self._entries[key] = _Packed(reply, ttl_offsets(reply), now, now + cache_for, generation)
