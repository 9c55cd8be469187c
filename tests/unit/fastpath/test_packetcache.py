"""The packet cache alone, fed real query bytes (made by dnspython) and a clock we move by hand:
IDs and question case come from the asker, TTLs count down, swaps and expiry retire entries."""

from __future__ import annotations

import dns.edns
import dns.message
import dns.rrset

from sidecar.dns.question import read_question
from sidecar.fastpath.packetcache import TAG_TRANSPORT, PacketCache, ReadyTable
from sidecar.server.access import Placement

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
    cache.put(read_question(query).key + SUFFIX, make_reply(query, ttl), cache_for, generation)


def table(cache: PacketCache, suffix: bytes) -> ReadyTable:
    return cache.table(TAG_TRANSPORT[suffix[0]], Placement((), suffix[1:]))


def answer(cache: PacketCache, query: bytes, suffix: bytes, generation: int) -> bytes | None:
    """As the fast path asks the packet cache of a plain query: ready for these exact bytes,
    else a kept reply for its question made ready."""
    cache.retire(generation)
    ready = table(cache, suffix)
    tail = cache.ready(ready, query[2:])
    if tail is None:
        tail = cache.make_ready(ready, query, read_question(query), generation)
    return None if tail is None else query[:2] + tail


def test_hit_takes_the_askers_id_and_question_case():
    cache = PacketCache()
    store(cache, make_query("web.dev.test.", qid=1), None)
    asked = make_query("WeB.Dev.TEST.", qid=4242)
    for _ in range(2):  # the first hit normalizes, the second comes from the exact-bytes memo
        reply = dns.message.from_wire(answer(cache, asked, SUFFIX, 1))
        assert reply.id == 4242
        assert reply.question[0].name.to_text() == "WeB.Dev.TEST."
        assert [rr.to_text() for rr in reply.answer[0]] == ["192.0.2.10"]
    assert cache.total_hits() == 2 and cache.hits == {(SUFFIX, 0): 2}  # counted by key suffix and rcode


def test_miss_for_other_name_transport_or_view():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None)
    assert answer(cache, make_query("api.dev.test."), SUFFIX, 1) is None
    assert answer(cache, query, b"T", 1) is None
    assert answer(cache, query, SUFFIX + b"backend", 1) is None


def test_zone_swap_retires_local_entries_even_after_they_were_seen():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None, generation=1)
    assert answer(cache, query, SUFFIX, 1) is not None
    assert answer(cache, query, SUFFIX, 2) is None
    store(cache, query, None, generation=2, ttl=60)  # the new zone's answer
    assert dns.message.from_wire(answer(cache, query, SUFFIX, 2)).answer[0].ttl == 60


def test_forwarded_ttls_count_down_and_expire():
    clock = Clock()
    cache = PacketCache(clock=clock)
    query = make_query()
    store(cache, query, 300, ttl=300)
    assert dns.message.from_wire(answer(cache, query, SUFFIX, 1)).answer[0].ttl == 300
    clock.now += 100.5
    assert dns.message.from_wire(answer(cache, query, SUFFIX, 1)).answer[0].ttl == 200
    clock.now += 1
    assert dns.message.from_wire(answer(cache, make_query(qid=9), SUFFIX, 1)).answer[0].ttl == 199
    clock.now += 199
    assert answer(cache, query, SUFFIX, 1) is None
    assert len(cache) == 0


def test_uncacheable_reply_is_not_kept():
    cache = PacketCache()
    query = make_query()
    store(cache, query, 0)
    assert answer(cache, query, SUFFIX, 1) is None


def test_a_query_that_missed_hits_once_its_answer_is_kept():
    """A miss is remembered only until the next reply is kept, whichever question it answers."""
    cache = PacketCache()
    query = make_query("Web.Dev.Test.", qid=9)
    assert answer(cache, query, SUFFIX, 1) is None
    assert answer(cache, query, SUFFIX, 1) is None
    store(cache, make_query("other.dev.test."), 60)
    assert answer(cache, query, SUFFIX, 1) is None
    store(cache, make_query("web.dev.test."), 60)
    assert dns.message.from_wire(answer(cache, query, SUFFIX, 1)).id == 9


def test_a_query_seen_before_a_zone_swap_misses_then_hits_the_new_zones_answer():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None, generation=1)
    assert answer(cache, query, SUFFIX, 1) is not None
    assert answer(cache, query, SUFFIX, 2) is None  # swapped: the old answer is gone
    assert answer(cache, query, SUFFIX, 2) is None
    store(cache, query, None, generation=2)
    assert answer(cache, query, SUFFIX, 2) is not None


def test_edns_cookie_does_not_split_the_cache_but_do_bit_does():
    cache = PacketCache()
    store(cache, make_query(use_edns=0, payload=1232), None)
    cookie = dns.edns.GenericOption(dns.edns.COOKIE, b"\x01" * 8)
    with_cookie = make_query(qid=7, use_edns=0, payload=1232, options=[cookie])
    reply = dns.message.from_wire(answer(cache, with_cookie, SUFFIX, 1))
    assert reply.id == 7 and reply.edns == 0
    assert answer(cache, make_query(use_edns=0, payload=1232, want_dnssec=True), SUFFIX, 1) is None


def test_ready_table_is_bounded():
    cache = PacketCache(max_entries=3)
    store(cache, make_query(), None)
    for qid in range(10):
        name = "".join(c.upper() if qid >> i & 1 else c for i, c in enumerate("web.dev.test."))
        assert dns.message.from_wire(answer(cache, make_query(name, qid=qid), SUFFIX, 1)).id == qid
    assert len(table(cache, SUFFIX)) <= 3


def batch_reply(cache: PacketCache, query: bytes, host: str = "192.0.2.1", generation: int = 1) -> bytes | None:
    """`ready_batch` for a batch of one query from `host`, whose view is the one SUFFIX names, as the
    UDP listener asks it: the reply after its ID put back behind that ID, or None."""
    cache.retire(generation)
    [tail] = cache.ready_batch([query[2:]], [host], {"192.0.2.1": table(cache, SUFFIX)})
    return None if tail is None else query[:2] + tail


def test_a_batch_is_answered_from_what_answer_made_ready_for_that_exact_query_and_view():
    cache = PacketCache()
    store(cache, make_query(), None)
    asked = make_query("WEB.dev.test.", qid=77)
    assert batch_reply(cache, asked) is None  # not seen yet: `answer` makes it ready
    assert answer(cache, asked, SUFFIX, 1) == batch_reply(cache, asked) == batch_reply(cache, asked)
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
    answer(cache, query, SUFFIX, 1)
    clock.now += 0.9
    assert dns.message.from_wire(batch_reply(cache, query)).answer[0].ttl == 300
    clock.now += 0.1
    assert batch_reply(cache, query) is None
    assert dns.message.from_wire(answer(cache, query, SUFFIX, 1)).answer[0].ttl == 299
    assert dns.message.from_wire(batch_reply(cache, query)).answer[0].ttl == 299
    clock.now += 299
    assert batch_reply(cache, query) is None and answer(cache, query, SUFFIX, 1) is None  # expired


def test_a_zone_swap_empties_the_ready_tables():
    cache = PacketCache()
    query = make_query()
    store(cache, query, None)
    answer(cache, query, SUFFIX, 1)
    assert batch_reply(cache, query) is not None
    assert batch_reply(cache, query, generation=2) is None
    assert len(table(cache, SUFFIX)) == 0
    store(cache, query, None, generation=2, ttl=60)
    answer(cache, query, SUFFIX, 2)
    assert dns.message.from_wire(batch_reply(cache, query, generation=2)).answer[0].ttl == 60
