"""The handler's paths, called directly with real query bytes: what each entry point sends, when,
and what it says may be kept. The upstream is a real dnsmasq on loopback."""

from __future__ import annotations

import asyncio

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from sidecar.api import Found
from sidecar.dns.question import read_question
from sidecar.net.endpoint import Endpoint
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.chain import Chain
from sidecar.resolve.forward import Forwarder
from sidecar.resolve.local import LocalZone
from sidecar.server.access import AccessPolicy, Clients
from sidecar.server.handler import QueryHandler
from sidecar.zone.parse import parse_zone
from sidecar.zone.store import Store
from sidecar.zone.zone import Fragment

ZONE = """$ORIGIN dev.test.
@ 60 SOA ns admin 1 2 3 4 5
web 60 A 192.0.2.1
out 60 CNAME www.fwd.test.
"""


class Sent:
    """A `send` that records what it got, and a `keep` that records what it was offered."""

    def __init__(self) -> None:
        self.calls: list[bytes | None] = []
        self.kept: list[tuple[bytes, float | None]] = []

    def __call__(self, reply: bytes | None) -> None:
        self.calls.append(reply)

    def keep(self, reply: bytes, keep_for: float | None) -> None:
        assert not self.calls  # kept before it is sent
        self.kept.append((reply, keep_for))

    def message(self) -> dns.message.Message:
        [reply] = self.calls
        return dns.message.from_wire(reply)


def answer(handler: QueryHandler, data: bytes, client: str, transport: str, sent: Sent):
    """As the fast path asks: the question read first, the client placed, a `keep` offered."""
    return handler.answer(read_question(data), data, client, transport, handler.clients.place(client), sent,
                          sent.keep)


@pytest.fixture
def upstream(dnsmasq):
    """dnsmasq answering fwd.test names with TTL 0 (nothing to keep)."""
    return dnsmasq(args=["--address=/fwd.test/192.0.2.80"], ttl=0)


def make_handler(upstream, plugins=(), local_to_any: bool = False) -> QueryHandler:
    store = Store()
    store.put("file", Fragment(tuple(parse_zone(ZONE, "dev.zone"))))
    local = LocalZone(store)
    forwarder = Forwarder(lambda: (Endpoint(upstream.host, upstream.port),), AnswerCache())
    return QueryHandler(store, Chain([*plugins, local], forwarder), Clients(store, AccessPolicy((), local_to_any)),
                        local=local)


def query(name: str, rdtype: str = "A", qid: int = 7, **kwargs) -> bytes:
    message = dns.message.make_query(name, rdtype, **kwargs)
    message.id = qid
    return message.to_wire()


async def settle(sent: Sent) -> None:
    for _ in range(300):
        if sent.calls:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("no reply within 3 s")


def test_a_local_name_is_answered_before_receive_returns_and_kept_until_the_zone_changes(upstream):
    async def scenario() -> None:
        handler, sent = make_handler(upstream), Sent()
        assert answer(handler, query("WEB.dev.test"), "127.0.0.1", "udp", sent) is None
        reply = sent.message()
        assert reply.id == 7 and reply.flags & dns.flags.AA
        assert reply.question[0].name.to_text() == "WEB.dev.test."
        assert [rr.to_text() for rr in reply.answer[0]] == ["192.0.2.1"]
        assert sent.kept == [(sent.calls[0], None)]  # kept until the zone changes
        assert not handler._tasks  # no task on the way

        sent = Sent()
        handler.receive(query("nope.dev.test"), "127.0.0.1", "tcp", sent)
        assert sent.message().rcode() == dns.rcode.NXDOMAIN

    asyncio.run(scenario())


def test_a_name_not_ours_is_relayed_and_its_relay_serves_the_next_asker(upstream):
    async def scenario() -> None:
        handler, sent = make_handler(upstream), Sent()
        data = query("www.Fwd.test", qid=1, use_edns=0, payload=1232)
        relay = answer(handler, data, "127.0.0.1", "udp", sent)
        assert relay is not None and relay.question.name == "www.Fwd.test." and relay.transport == "udp"
        await settle(sent)
        first = sent.message()
        assert first.id == 1 and first.question[0].name.to_text() == "www.Fwd.test."
        assert [rr.to_text() for rr in first.answer[0]] == ["192.0.2.80"] and first.edns == 0
        assert not sent.kept  # TTL 0: never kept

        again = Sent()
        handler.relay(relay, query("www.Fwd.test", qid=2, use_edns=0, payload=1232), "127.0.0.1", again, again.keep)
        await settle(again)
        assert again.calls[0] == b"\x00\x02" + sent.calls[0][2:]  # the same reply but its ID

    asyncio.run(scenario())


def test_a_plugin_chain_answers_in_a_task(upstream):
    async def scenario() -> None:
        handler, sent = make_handler(upstream, [lambda q: Found(f"{q.name} 30 IN A 192.0.2.9")
                                                if q.name.startswith("plug") else None]), Sent()
        handler.receive(query("plug.test"), "127.0.0.1", "udp", sent)
        assert not sent.calls and len(handler._tasks) == 1  # not answered yet: the chain runs in a task
        await settle(sent)
        assert [rr.to_text() for rr in sent.message().answer[0]] == ["192.0.2.9"]

    asyncio.run(scenario())


def test_a_cname_leaving_our_data_is_finished_by_the_chain(upstream):
    async def scenario() -> None:
        handler, sent = make_handler(upstream), Sent()
        handler.receive(query("out.dev.test"), "127.0.0.1", "udp", sent)
        await settle(sent)
        answer = sent.message().answer
        assert [(rrset.name.to_text(), rrset.rdtype) for rrset in answer] == [
            ("out.dev.test.", dns.rdatatype.CNAME), ("www.fwd.test.", dns.rdatatype.A)]

    asyncio.run(scenario())


@pytest.mark.parametrize(("data", "rcode"), [
    (b"\x00\x09\x28\x00" + bytes(8), dns.rcode.NOTIMP),  # UPDATE
    (b"\x00\x09\x01\x00\x00\x02" + bytes(6), dns.rcode.FORMERR),  # two questions
    (b"\x00\x09", None),  # no header: silence
    (bytes(dns.message.make_response(dns.message.make_query("a.test", "A")).to_wire()), None),  # a response
])
def test_what_is_no_query_gets_its_rcode_or_silence_and_is_counted(upstream, data, rcode):
    handler, sent = make_handler(upstream), Sent()
    handler.receive(data, "127.0.0.1", "udp", sent)
    [reply] = sent.calls
    assert (reply is None) if rcode is None else dns.message.from_wire(reply).rcode() == rcode
    assert handler.metrics.malformed == 1


def test_other_classes_and_strangers_are_refused_and_nothing_is_kept(upstream):
    async def scenario() -> None:
        handler = make_handler(upstream)
        chaos, stranger = Sent(), Sent()
        answer(handler, query("web.dev.test", "TXT", rdclass="CH"), "127.0.0.1", "udp", chaos)
        handler.receive(query("web.dev.test"), "192.0.2.7", "udp", stranger)
        for sent in (chaos, stranger):
            assert sent.message().rcode() == dns.rcode.REFUSED and not sent.kept
        assert handler.metrics.queries[("udp", dns.rcode.REFUSED, "policy", b"")] == 1

        lenient, sent = make_handler(upstream, local_to_any=True), Sent()
        answer(lenient, query("web.dev.test"), "192.0.2.7", "udp", sent)
        assert [rr.to_text() for rr in sent.message().answer[0]] == ["192.0.2.1"]
        assert not sent.kept  # a stranger's answer is never kept

    asyncio.run(scenario())
