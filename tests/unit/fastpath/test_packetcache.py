"""The packet cache alone, fed real query bytes (made by dnspython) and a clock we move by hand:
IDs and question case come from the asker, TTLs count down, swaps and expiry retire entries."""

from __future__ import annotations

import random
import tracemalloc

import dns.edns
import dns.message
import dns.rrset

from sidecar.dns.wire import question_key
from sidecar.fastpath.packetcache import PacketCache

SUFFIX = b"U"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_query(name: str = "web.dev.test.", qid: int = 1, **kwargs) -> bytes:
    msg = dns.message.make_query(name, "A", **kwargs)
    msg.id = qid
    return msg.to_wire()


def make_reply(query: bytes, ttl: int = 300) -> bytes:
    reply = dns.message.make_response(dns.message.from_wire(query))
    reply.answer.append(dns.rrset.from_text(reply.question[0].name, ttl, "IN", "A", "192.0.2.10"))
    return reply.to_wire()


def store(cache: PacketCache, query: bytes, cache_for: float | None, generation: int = 1, ttl: int = 300) -> None:
    cache.put(question_key(query).key + SUFFIX, make_reply(query, ttl), cache_for, generation)


def test_hit_takes_the_askers_id_and_question_case():
    cache = PacketCache()
    store(cache, make_query("web.dev.test.", qid=1), None)
    asked = make_query("WeB.Dev.TEST.", qid=4242)
    for _ in range(2):  # the first hit normalizes, the second comes from the exact-bytes memo
        reply = dns.message.from_wire(cache.answer(asked, SUFFIX, 1))
        assert reply.id == 4242
        assert reply.question[0].name.to_text() == "WeB.Dev.TEST."
        assert [rr.to_text() for rr in reply.answer[0]] == ["192.0.2.10"]
    assert cache.total_hits() == 2 and cache.hits == {(SUFFIX, 0): 2}  # counted by key suffix and rcode


def test_miss_for_other_name_transport_or_view():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None)
    assert cache.answer(make_query("api.dev.test."), SUFFIX, 1) is None
    assert cache.answer(query, b"T", 1) is None
    assert cache.answer(query, SUFFIX + b"backend", 1) is None


def test_zone_swap_retires_local_entries_even_after_they_were_seen():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None, generation=1)
    assert cache.answer(query, SUFFIX, 1) is not None
    assert cache.answer(query, SUFFIX, 2) is None
    store(cache, query, None, generation=2, ttl=60)  # the new zone's answer
    assert dns.message.from_wire(cache.answer(query, SUFFIX, 2)).answer[0].ttl == 60


def test_forwarded_ttls_count_down_and_expire():
    clock = Clock()
    cache = PacketCache(clock=clock)
    query = make_query()
    store(cache, query, 300, ttl=300)
    assert dns.message.from_wire(cache.answer(query, SUFFIX, 1)).answer[0].ttl == 300
    clock.now += 100.5
    assert dns.message.from_wire(cache.answer(query, SUFFIX, 1)).answer[0].ttl == 200
    clock.now += 1
    assert dns.message.from_wire(cache.answer(make_query(qid=9), SUFFIX, 1)).answer[0].ttl == 199
    clock.now += 199
    assert cache.answer(query, SUFFIX, 1) is None
    assert len(cache) == 0


def test_uncacheable_reply_is_not_kept():
    cache = PacketCache()
    query = make_query()
    store(cache, query, 0)
    assert cache.answer(query, SUFFIX, 1) is None


def test_a_query_that_missed_hits_once_its_answer_is_kept():
    """A miss is remembered only until the next reply is kept, whichever question it answers."""
    cache = PacketCache()
    query = make_query("Web.Dev.Test.", qid=9)
    assert cache.answer(query, SUFFIX, 1) is None
    assert cache.answer(query, SUFFIX, 1) is None
    store(cache, make_query("other.dev.test."), 60)
    assert cache.answer(query, SUFFIX, 1) is None
    store(cache, make_query("web.dev.test."), 60)
    assert dns.message.from_wire(cache.answer(query, SUFFIX, 1)).id == 9


def test_a_query_seen_before_a_zone_swap_misses_then_hits_the_new_zones_answer():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None, generation=1)
    assert cache.answer(query, SUFFIX, 1) is not None
    assert cache.answer(query, SUFFIX, 2) is None  # swapped: the old answer is gone
    assert cache.answer(query, SUFFIX, 2) is None
    store(cache, query, None, generation=2)
    assert cache.answer(query, SUFFIX, 2) is not None


def test_edns_cookie_does_not_split_the_cache_but_do_bit_does():
    cache = PacketCache()
    store(cache, make_query(use_edns=0, payload=1232), None)
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    with_cookie = make_query(qid=7, use_edns=0, payload=1232, options=[cookie])
    reply = dns.message.from_wire(cache.answer(with_cookie, SUFFIX, 1))
    assert reply.id == 7 and reply.edns == 0
    assert cache.answer(make_query(use_edns=0, payload=1232, want_dnssec=True), SUFFIX, 1) is None


def test_exact_memo_is_bounded():
    cache = PacketCache(max_entries=3)
    store(cache, make_query(), None)
    for qid in range(10):
        name = "".join(c.upper() if qid >> i & 1 else c for i, c in enumerate("web.dev.test."))
        assert dns.message.from_wire(cache.answer(make_query(name, qid=qid), SUFFIX, 1)).id == qid
    assert len(cache.table(SUFFIX)) <= 3 and len(cache._keys) <= 3
    for qid in range(10):
        assert cache.answer(make_query(f"n{qid}.dev.test."), SUFFIX, 1) is None
    assert len(cache._missed) <= 3


def batch_reply(cache: PacketCache, query: bytes, host: str = "192.0.2.1", generation: int = 1) -> bytes | None:
    """`tails` for a batch of one query from `host`, whose view is the one SUFFIX names, as the
    UDP listener asks it: the reply after its ID put back behind that ID, or None."""
    [tail] = cache.tails([query[2:]], [host], {"192.0.2.1": cache.table(SUFFIX)}, generation)
    return None if tail is None else query[:2] + tail


def test_a_batch_is_answered_from_what_answer_made_ready_for_that_exact_query_and_view():
    cache = PacketCache()
    store(cache, make_query(), None)
    asked = make_query("WEB.dev.test.", qid=77)
    assert batch_reply(cache, asked) is None  # not seen yet: `answer` makes it ready
    assert cache.answer(asked, SUFFIX, 1) == batch_reply(cache, asked) == batch_reply(cache, asked)
    reply = dns.message.from_wire(batch_reply(cache, asked))
    assert (reply.id, reply.question[0].name.to_text()) == (77, "WEB.dev.test.")
    assert batch_reply(cache, make_query("WEB.dev.test.", qid=78)) is not None  # any ID
    assert batch_reply(cache, make_query("web.dev.test.", qid=77)) is None  # other bytes: not seen yet
    assert batch_reply(cache, asked, host="192.0.2.2") is None  # a client with no view yet
    assert cache.hits == {(SUFFIX, 0): 5}  # one `answer`, four batch hits


def test_a_batch_leaves_an_answer_a_second_old_to_answer_which_ages_its_ttls():
    clock = Clock()
    cache = PacketCache(clock=clock)
    query = make_query()
    store(cache, query, 300, ttl=300)
    cache.answer(query, SUFFIX, 1)
    clock.now += 0.9
    assert dns.message.from_wire(batch_reply(cache, query)).answer[0].ttl == 300
    clock.now += 0.1
    assert batch_reply(cache, query) is None
    assert dns.message.from_wire(cache.answer(query, SUFFIX, 1)).answer[0].ttl == 299
    assert dns.message.from_wire(batch_reply(cache, query)).answer[0].ttl == 299
    clock.now += 299
    assert batch_reply(cache, query) is None and cache.answer(query, SUFFIX, 1) is None  # expired


def test_a_zone_swap_empties_the_ready_tables():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None)
    cache.answer(query, SUFFIX, 1)
    assert batch_reply(cache, query) is not None
    assert batch_reply(cache, query, generation=2) is None
    assert len(cache.table(SUFFIX)) == 0
    store(cache, query, None, generation=2, ttl=60)
    cache.answer(query, SUFFIX, 2)
    assert dns.message.from_wire(batch_reply(cache, query, generation=2)).answer[0].ttl == 60


def junk(i: int, size: int = 4000) -> list[bytes]:
    """Three kinds of datagram that are not a plain question, each distinct by `i`: random
    bytes; a good question and OPT with junk after them; a good question with a huge OPT."""
    rng = random.Random(i)
    noise = rng.randbytes(size)
    good = make_query(f"j{i}.dev.test.", qid=i, use_edns=0, payload=1232)
    huge_opt = good[:-2] + (size - len(good)).to_bytes(2, "big") + noise[: size - len(good)]
    return [noise, good + noise[: size - len(good)], huge_opt]


def test_junk_datagrams_never_become_keys():
    """What is not a plain question misses, and nothing of it is kept: 1,500 distinct 4 kB junk
    datagrams leave the cache's memory as it was (a key per datagram would hold 6 MB)."""
    cache = PacketCache()
    store(cache, make_query(), None)
    assert cache.answer(make_query(qid=9), SUFFIX, 1) is not None  # the cache works meanwhile
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(500):
            for datagram in junk(i):
                assert cache.answer(datagram, SUFFIX, 1) is None
        cache.last_miss = (b"", b"")  # the one reference kept on purpose: the latest miss
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
                    if stat.traceback[0].filename.endswith("packetcache.py"))
    finally:
        tracemalloc.stop()
    assert grown < 100_000
    assert dns.message.from_wire(cache.answer(make_query(qid=10), SUFFIX, 1)).id == 10
