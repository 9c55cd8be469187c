"""The answer cache for forwarded replies. TTLs count down in what clients see; negative answers
are kept as RFC 2308 5 says; failures are remembered briefly (RFC 2308 7) so a broken name does
not cost every asker a full round of upstream timeouts; size is bounded with LRU eviction.
Expired entries are kept a while longer to serve stale (RFC 8767) when no upstream can answer.
The clock is injected so tests can move time instead of sleeping."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from dnslib import QTYPE, RCODE, RR

from ..api import Answer

CacheKey = tuple[str, int, int, bool]

STALE_ANSWER_TTL = 30
FAILURE_TTL = 5


@dataclass(slots=True)
class _Entry:
    answer: Answer
    stored_at: float
    ttl: int
    stale_until: float = float("-inf")  # serving stale without asking upstream until then


def answer_ttl(answer: Answer) -> int | None:
    """How long an upstream answer may be kept: its smallest TTL; for a negative answer the SOA's
    TTL capped by its minimum field (RFC 2308 5); None when it must not be cached."""
    if answer.rcode not in (RCODE.NOERROR, RCODE.NXDOMAIN):
        return None
    if answer.answer and answer.rcode == RCODE.NOERROR:
        return min(rr.ttl for rr in answer.answer + answer.authority + answer.additional)
    soa = next((rr for rr in answer.authority if rr.rtype == QTYPE.SOA), None)
    if soa is None:
        return None
    return min(soa.ttl, soa.rdata.times[-1])


def _with_ttls(answer: Answer, ttl_of: Callable[[RR], int], cache_for: float) -> Answer:
    def each(records: tuple[RR, ...]) -> tuple[RR, ...]:
        return tuple(RR(rr.rname, rr.rtype, rr.rclass, ttl_of(rr), rr.rdata) for rr in records)

    return replace(answer, answer=each(answer.answer), authority=each(answer.authority),
                   additional=each(answer.additional), cache_for=cache_for)


class AnswerCache:
    def __init__(self, max_entries: int = 10_000, min_ttl: int = 0, max_ttl: int = 86_400,
                 stale_ttl: int = 86_400, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        # key -> (until when, why). Public so the forwarding hot path can skip calling `failure`
        # and `forget_failure` while it is empty, which is nearly always.
        self.failures: OrderedDict[CacheKey, tuple[float, str]] = OrderedDict()
        self.max_entries = max_entries
        self.min_ttl = min_ttl
        self.max_ttl = max_ttl
        self.stale_ttl = stale_ttl
        self._clock = clock
        self.hits = 0
        self.misses = 0
        self.stale_served = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: CacheKey) -> Answer | None:
        """The cached answer with TTLs lowered by its age; a stale one while its failure recheck
        timer runs; else None."""
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        now = self._clock()
        elapsed = int(now - entry.stored_at)
        if elapsed >= entry.ttl:
            if now < entry.stale_until:
                return self._stale(entry)
            if elapsed >= entry.ttl + self.stale_ttl:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return _with_ttls(entry.answer, lambda rr: max(0, rr.ttl - elapsed), entry.ttl - elapsed)

    def stale(self, key: CacheKey) -> Answer | None:
        """An expired answer still within `stale_ttl`, for when no upstream can answer, with a TTL
        of `STALE_ANSWER_TTL`. Serving it starts the failure recheck timer (RFC 8767 4): for that
        long `get` serves it straight away instead of waiting on upstreams again."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        now = self._clock()
        age = now - entry.stored_at
        if age >= entry.ttl + self.stale_ttl:
            del self._entries[key]
            return None
        if age < entry.ttl:  # still fresh: answered by get(), unless it just expired meanwhile
            return None
        entry.stale_until = now + STALE_ANSWER_TTL
        return self._stale(entry)

    def _stale(self, entry: _Entry) -> Answer:
        self.stale_served += 1
        return _with_ttls(entry.answer, lambda rr: STALE_ANSWER_TTL, 0)

    def put(self, key: CacheKey, answer: Answer) -> Answer:
        """Keep `answer` if cacheable; return it with TTLs clamped to --min-ttl/--max-ttl (the SOA
        of a negative answer showing the negative TTL) and `cache_for` set to how long it may
        live."""
        self.forget_failure(key)
        ttl = answer_ttl(answer)
        if ttl is None:
            return replace(answer, cache_for=0)
        ttl = max(self.min_ttl, min(self.max_ttl, ttl))
        if ttl <= 0:
            return replace(answer, cache_for=0)
        negative = not answer.answer
        answer = _with_ttls(answer, lambda rr: ttl if negative and rr.rtype == QTYPE.SOA
                            else max(self.min_ttl, min(self.max_ttl, rr.ttl)), ttl)
        self._entries[key] = _Entry(answer, self._clock(), ttl)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return answer

    def put_failure(self, key: CacheKey, reason: str) -> None:
        """Remember that no upstream could answer `key`, for `FAILURE_TTL` seconds."""
        self.failures[key] = (self._clock() + FAILURE_TTL, reason)
        self.failures.move_to_end(key)
        while len(self.failures) > self.max_entries:
            self.failures.popitem(last=False)

    def forget_failure(self, key: CacheKey) -> None:
        """An upstream answered `key`: a failure remembered for it no longer holds."""
        self.failures.pop(key, None)

    def failure(self, key: CacheKey) -> str | None:
        """Why `key` failed a moment ago, or None."""
        found = self.failures.get(key)
        if found is None:
            return None
        if self._clock() >= found[0]:
            del self.failures[key]
            return None
        return found[1]
