"""The answer cache with an injected clock: TTL countdown, RFC 2308 negative caching, clamps, LRU,
serve-stale (RFC 8767) and brief failure caching."""

from __future__ import annotations

from dnslib import QTYPE, RCODE, RR, SOA, A

from sidecar.api import Answer
from sidecar.resolve.cache import FAILURE_TTL, STALE_ANSWER_TTL, AnswerCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def a_answer(name: str = "x.test.", ttl: int = 300) -> Answer:
    return Answer(answer=(RR(name, QTYPE.A, rdata=A("192.0.2.1"), ttl=ttl),), source="forward")


def nxdomain(soa_ttl: int = 3600, minimum: int = 60) -> Answer:
    soa = RR("test.", QTYPE.SOA, ttl=soa_ttl,
             rdata=SOA("ns.test.", "admin.test.", (1, 3600, 600, 86400, minimum)))
    return Answer(rcode=RCODE.NXDOMAIN, authority=(soa,), source="forward")


def key(name: str = "x.test.") -> tuple[str, int, int, bool]:
    return (name, QTYPE.A, 1, False)


def test_ttls_count_down_and_expire() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock, stale_ttl=0)
    stored = cache.put(key(), a_answer(ttl=300))
    assert stored.cache_for == 300
    clock.now += 120.4
    got = cache.get(key())
    assert got is not None and got.answer[0].ttl == 180 and got.cache_for == 180
    clock.now += 180
    assert cache.get(key()) is None
    assert len(cache) == 0


def test_negative_answer_kept_for_soa_minimum_and_soa_shows_it() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock)
    stored = cache.put(key(), nxdomain(soa_ttl=3600, minimum=60))
    assert stored.cache_for == 60
    assert stored.authority[0].ttl == 60
    clock.now += 10
    got = cache.get(key())
    assert got is not None and got.rcode == RCODE.NXDOMAIN and got.authority[0].ttl == 50
    clock.now += 50
    assert cache.get(key()) is None


def test_negative_answer_without_soa_is_not_cached() -> None:
    cache = AnswerCache(clock=Clock())
    assert cache.put(key(), Answer(rcode=RCODE.NXDOMAIN, source="forward")).cache_for == 0
    assert cache.get(key()) is None


def test_min_and_max_ttl_clamp_what_is_kept_and_shown() -> None:
    clock = Clock()
    cache = AnswerCache(min_ttl=60, max_ttl=600, clock=clock)
    assert cache.put(key("short.test."), a_answer("short.test.", ttl=5)).answer[0].ttl == 60
    assert cache.put(key("long.test."), a_answer("long.test.", ttl=86400)).cache_for == 600
    clock.now += 30
    got = cache.get(key("short.test."))
    assert got is not None and got.answer[0].ttl == 30


def test_lru_evicts_least_recently_used() -> None:
    cache = AnswerCache(max_entries=3, clock=Clock())
    for name in ("a.test.", "b.test.", "c.test."):
        cache.put(key(name), a_answer(name))
    assert cache.get(key("a.test.")) is not None  # a becomes most recent; b is now oldest
    cache.put(key("d.test."), a_answer("d.test."))
    assert len(cache) == 3
    assert cache.get(key("b.test.")) is None
    assert all(cache.get(key(n)) is not None for n in ("a.test.", "c.test.", "d.test."))


def test_serve_stale_within_stale_ttl_with_short_ttl_then_recheck_timer() -> None:
    clock = Clock()
    cache = AnswerCache(stale_ttl=3600, clock=clock)
    cache.put(key(), a_answer(ttl=60))
    clock.now += 61
    assert cache.get(key()) is None  # expired: ask upstream first
    stale = cache.stale(key())
    assert stale is not None and stale.answer[0].ttl == STALE_ANSWER_TTL and stale.cache_for == 0
    clock.now += STALE_ANSWER_TTL - 1
    again = cache.get(key())  # failure recheck timer running: stale straight away
    assert again is not None and again.answer[0].ttl == STALE_ANSWER_TTL
    clock.now += 2
    assert cache.get(key()) is None
    clock.now += 3600
    assert cache.stale(key()) is None


def test_fresh_answer_replaces_stale_one() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock)
    cache.put(key(), a_answer(ttl=10))
    clock.now += 20
    assert cache.stale(key()) is not None
    cache.put(key(), a_answer(ttl=100))
    got = cache.get(key())
    assert got is not None and got.answer[0].ttl == 100


def test_stale_ttl_zero_turns_serve_stale_off() -> None:
    clock = Clock()
    cache = AnswerCache(stale_ttl=0, clock=clock)
    cache.put(key(), a_answer(ttl=10))
    clock.now += 11
    assert cache.stale(key()) is None


def test_failures_are_remembered_briefly() -> None:
    clock = Clock()
    cache = AnswerCache(clock=clock)
    cache.put_failure(key(), "no upstream answered")
    assert cache.failure(key()) == "no upstream answered"
    clock.now += FAILURE_TTL
    assert cache.failure(key()) is None


def test_servfail_from_upstream_is_not_cached_as_an_answer() -> None:
    cache = AnswerCache(clock=Clock())
    assert cache.put(key(), Answer(rcode=RCODE.SERVFAIL, source="forward")).cache_for == 0
    assert cache.get(key()) is None
