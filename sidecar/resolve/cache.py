"""The answer cache for forwarded replies: TTLs count down, negative answers are kept for the
SOA minimum (RFC 2308), size is bounded with LRU eviction. The clock is injected so tests can
move time instead of sleeping."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from dnslib import QTYPE, RCODE, RR

from ..outcome import Answer

CacheKey = tuple[str, int, int, bool]


@dataclass(frozen=True, slots=True)
class _Entry:
    answer: Answer
    stored_at: float
    ttl: int


def _records(answer: Answer) -> tuple[RR, ...]:
    return answer.answer + answer.authority + answer.additional


def answer_ttl(answer: Answer) -> int | None:
    """How long an upstream answer may be kept: its smallest TTL; for a negative answer the SOA's
    TTL capped by its minimum field (RFC 2308 5); None when it must not be cached."""
    if answer.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        return None
    if answer.answer and answer.rcode == RCODE.NOERROR:
        return min(rr.ttl for rr in _records(answer))
    soa = next((rr for rr in answer.authority if rr.rtype == QTYPE.SOA), None)
    if soa is None:
        return None
    return min(soa.ttl, soa.rdata.times[-1])


def _aged(rr: RR, elapsed: int) -> RR:
    return RR(rr.rname, rr.rtype, rr.rclass, max(0, rr.ttl - elapsed), rr.rdata)


class AnswerCache:
    def __init__(self, max_entries: int = 10_000, min_ttl: int = 0, max_ttl: int = 86_400,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self._clock = clock
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Answer | None:
        """The cached answer with TTLs lowered by its age, or None if absent or expired."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        elapsed = int(self._clock() - entry.stored_at)
        if elapsed >= entry.ttl:
            del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        answer = entry.answer
        return replace(answer, answer=tuple(_aged(rr, elapsed) for rr in answer.answer),
                       authority=tuple(_aged(rr, elapsed) for rr in answer.authority),
                       additional=tuple(_aged(rr, elapsed) for rr in answer.additional),
                       cache_for=entry.ttl - elapsed)

    def put(self, key: CacheKey, answer: Answer) -> Answer:
        """Keep `answer` if cacheable; return it with `cache_for` set to how long it may live."""
        ttl = answer_ttl(answer)
        if ttl is None:
            return replace(answer, cache_for=0)
        ttl = max(self.min_ttl, min(self.max_ttl, ttl))
        if ttl <= 0:
            return replace(answer, cache_for=0)
        self._entries[key] = _Entry(answer, self._clock(), ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return replace(answer, cache_for=ttl)
