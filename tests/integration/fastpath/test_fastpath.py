"""The fast path against the slow one: for any query, its replies are the handler's own, byte for
byte, however often it is asked; what it keeps is bounded and junk keeps nothing. Upstreams are
real dnsmasq processes on loopback."""

from __future__ import annotations

import asyncio
import random
import tracemalloc

import dns.edns
import dns.flags
import dns.message
import dns.rdataclass
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.daemons import free_port
from sidecar.fastpath.fastpath import FastPath
from sidecar.fastpath.packetcache import PacketCache
from sidecar.net.endpoint import Endpoint
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.chain import Chain
from sidecar.resolve.conditional import ConditionalForwards
from sidecar.resolve.forward import Forwarder
from sidecar.resolve.local import LocalZone
from sidecar.server.handler import QueryHandler
from sidecar.server.responder import Responder, reply_to
from sidecar.zone.parse import parse_record_line, parse_zone
from sidecar.zone.store import Store
from sidecar.zone.zone import Fragment
from tests.helpers.process import Daemon, query, start_daemon, wait_for

ZONE = """$ORIGIN dev.test.
@ 60 SOA ns admin 1 2 3 4 5
@ 60 MX 10 web
web 60 A 192.0.2.1
web 60 AAAA 2001:db8::1
web 60 TXT "a text" "in two strings"
*.apps 30 A 192.0.2.2
alias 60 CNAME web
out 60 CNAME www.zero.test.
"""
NAMES = ["web.dev.test.", "nope.dev.test.", "x.apps.dev.test.", "alias.dev.test.", "out.dev.test.", "dev.test.",
         "web.romcyber.com.", "www.zero.test.", "a.b.zero.test.", "www.keep.test.", "no.keep.test."]
TYPES = ["A", "AAAA", "MX", "TXT", "CNAME", "SOA", "HTTPS", "TYPE65280"]
NOW = 1000.0


def clock() -> float:
    return NOW


@pytest.fixture(scope="module")
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory):
    """zero.test answered with TTL 0 (relayed, never kept), keep.test with TTL 300 (kept)."""
    started = []
    for domain, ttl in (("zero.test", 0), ("keep.test", 300)):
        port = free_port("127.0.0.2")
        log = tmp_path_factory.mktemp("dnsmasq") / "dnsmasq.log"
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--port={port}",
                "--listen-address=127.0.0.2", "--bind-interfaces", "--user=root", f"--local-ttl={ttl}",
                "--log-facility=-", "--pid-file=", f"--address=/{domain}/192.0.2.{ttl % 250 + 5}",
                f"--host-record=www.{domain},192.0.2.{ttl % 250 + 6}"]
        daemon = Daemon(start_daemon(argv, log), log, "127.0.0.2", port)
        started.append(daemon)
        wait_for(lambda d=daemon: query(d.host, d.port, "probe.invalid", timeout=0.5), what=f"dnsmasq for {domain}")
    yield [Endpoint(d.host, d.port) for d in started]
    for daemon in started:
        daemon.stop()


def stack(endpoints: list[Endpoint]) -> QueryHandler:
    """A handler over the zone, a --record override and two upstreams, on the frozen clock."""
    store = Store()
    store.put("file", Fragment(tuple(parse_zone(ZONE, "dev.zone"))))
    store.put("flags", Fragment(tuple(parse_record_line("web.romcyber.com. 60 IN A 127.0.0.1"))))
    local = LocalZone(store)
    rules = ConditionalForwards([("keep.test.", (endpoints[1],))])
    forwarder = Forwarder(lambda: (endpoints[0],), AnswerCache(clock=clock), conditional=rules)
    return QueryHandler(store, Chain([local], forwarder), local=local)


@pytest.fixture(scope="module")
def paths(loop, upstreams):
    asyncio.set_event_loop(loop)
    slow = stack(upstreams)
    fast_handler = stack(upstreams)
    return slow, FastPath(fast_handler, fast_handler.store, PacketCache(clock=clock))


@st.composite
def queries(draw) -> tuple[bytes, str, str]:
    name = "".join(c.upper() if draw(st.booleans()) else c for c in draw(st.sampled_from(NAMES)))
    message = dns.message.make_query(name, draw(st.sampled_from(TYPES)),
                                     rdclass=draw(st.sampled_from([dns.rdataclass.IN] * 5 + [dns.rdataclass.CH])))
    message.flags = (dns.flags.RD if draw(st.booleans()) else 0) | (dns.flags.CD if draw(st.booleans()) else 0)
    if draw(st.booleans()):
        options = [dns.edns.GenericOption(dns.edns.COOKIE, draw(st.binary(min_size=8, max_size=8)))] \
            if draw(st.booleans()) else []
        message.use_edns(0, dns.flags.DO if draw(st.booleans()) else 0, draw(st.sampled_from([512, 1232, 4096])),
                         options=options)
    message.id = draw(st.integers(0, 65535))
    return message.to_wire(), draw(st.sampled_from(["udp", "tcp"])), draw(st.sampled_from(["127.0.0.1", "192.0.2.9"]))


def sections(reply: bytes) -> list:
    """A reply's records as a comparable value: names compared as DNS compares them (case aside),
    TTLs and rdata exactly, and the EDNS it carries."""
    message = dns.message.from_wire(reply)
    return [[(rrset, rrset.ttl) for rrset in section] for section in message.sections] + [
        (message.edns, message.ednsflags, message.payload, message.options)]


def assert_same_reply(reply: bytes | None, expected: bytes | None) -> None:
    """Byte for byte where it must be: the ID, flags and counts, and the question as the client
    wrote it. The records alike, though a kept reply's names may be compressed, or cased, as the
    first asker's were."""
    if expected is None or reply is None:
        assert reply == expected
        return
    question_end = 12 + len(dns.message.from_wire(expected).question[0].name.to_wire()) + 4 if \
        expected[4:6] == b"\x00\x01" else 12
    assert reply[:question_end] == expected[:question_end]
    assert sections(reply) == sections(expected)


def ask(loop, responder: Responder, data: bytes, transport: str, client: str) -> bytes | None:
    return loop.run_until_complete(reply_to(responder, data, client, transport))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(queries(), st.integers(0, 65535))
def test_for_any_query_the_fast_path_replies_as_the_slow_path(loop, paths, asked, other_id):
    data, transport, client = asked
    slow, fast = paths
    expected = ask(loop, slow, data, transport, client)
    for qid in (data[:2], other_id.to_bytes(2, "big"), data[:2]):  # the first, a repeat, a repeat seen before
        reply = ask(loop, fast, qid + data[2:], transport, client)
        assert_same_reply(reply, None if expected is None else qid + expected[2:])


def test_the_fast_path_answers_repeats_itself(loop, upstreams):
    """Kept local and cacheable forwarded answers come back from ready tables; a relay is
    remembered so a repeat goes straight upstream; the zone changing forgets both."""
    handler = stack(upstreams)
    fast = FastPath(handler, handler.store, PacketCache(clock=clock))
    hits = 0
    for name in ("web.dev.test.", "www.keep.test."):
        for qid in range(3):
            ask(loop, fast, dns.message.make_query(name, "A", id=qid).to_wire(), "udp", "127.0.0.1")
    assert fast.packets.total_hits() - hits == 4  # all but the first of each
    relayed = dns.message.make_query("www.zero.test.", "A", id=1).to_wire()
    ask(loop, fast, relayed, "udp", "127.0.0.1")
    assert any(relay.question.name == "www.zero.test." for relay, _ in fast._relays.values())
    fast._store.put("flags", Fragment(tuple(parse_record_line("web.romcyber.com. 60 IN A 127.0.0.2"))))
    reply = dns.message.from_wire(ask(loop, fast, dns.message.make_query("web.romcyber.com.", "A").to_wire(),
                                      "udp", "127.0.0.1"))
    assert [rr.to_text() for rr in reply.answer[0]] == ["127.0.0.2"]  # the new zone's, not a kept one
    assert not fast._relays


def junk(i: int, size: int = 4000) -> list[bytes]:
    """Three kinds of datagram that are not a plain question, each distinct by `i`: random
    bytes; a good question and OPT with junk after them; a good question with a huge OPT."""
    rng = random.Random(i)
    noise = rng.randbytes(size)
    good = dns.message.make_query(f"j{i}.dev.test.", "A", id=i, use_edns=0, payload=1232).to_wire()
    huge_opt = good[:-2] + (size - len(good)).to_bytes(2, "big") + noise[: size - len(good)]
    return [noise, good + noise[: size - len(good)], huge_opt]


def test_junk_datagrams_keep_nothing(loop, paths):
    """What is not a plain question is answered or dropped, and nothing of it is kept: 1,500
    distinct 4 kB junk datagrams leave the fast path's memory as it was (a key per datagram
    would hold 6 MB)."""
    _, fast = paths
    web = dns.message.make_query("web.dev.test.", "A").to_wire()
    ask(loop, fast, web, "udp", "127.0.0.1")
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for i in range(500):
            for datagram in junk(i):
                ask(loop, fast, datagram, "udp", "127.0.0.1")
        grown = sum(stat.size_diff for stat in tracemalloc.take_snapshot().compare_to(before, "filename")
                    if "/fastpath/" in stat.traceback[0].filename)
    finally:
        tracemalloc.stop()
    assert grown < 100_000
    assert dns.message.from_wire(ask(loop, fast, web, "udp", "127.0.0.1")).answer
