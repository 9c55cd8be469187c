"""Access policy and rate limiting as plain values: who is served, who is refused, who is slowed."""

import asyncio
import ipaddress

import dns.flags
import dns.message
import dns.rcode
import pytest

from sidecar.fastpath.fastpath import FastPath
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.chain import Chain
from sidecar.resolve.forward import Forwarder
from sidecar.resolve.local import LocalZone
from sidecar.server.access import AccessPolicy, Clients
from sidecar.server.handler import QueryHandler
from sidecar.server.ratelimit import RateLimiter, Verdict, client_prefix
from sidecar.server.responder import Responder, reply_to
from sidecar.zone.build import build_zone
from sidecar.zone.parse import parse_record_line
from sidecar.zone.store import Store
from sidecar.zone.zone import Fragment, Zone


def zone_with_view(cidr: str) -> Zone:
    zone, _ = build_zone({"docker:net": Fragment((), {"front": (ipaddress.ip_network(cidr),)})})
    return zone


@pytest.mark.parametrize(("client", "allowed"), [
    ("127.0.0.1", True), ("127.9.9.9", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("172.20.3.4", True),  # inside a network the zone knows
    ("198.51.100.7", True),  # --allow
    ("192.0.2.1", False), ("2001:db8::1", False), ("not-an-ip", False),
])
def test_default_policy_serves_loopback_known_networks_and_allowed_ranges(client, allowed):
    policy = AccessPolicy([ipaddress.ip_network("198.51.100.0/24")])
    assert policy.allows(client, zone_with_view("172.20.0.0/16")) is allowed


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_rate_limit_drops_and_slips_over_the_rate_per_prefix():
    clock = Clock()
    limiter = RateLimiter(rate=10, burst=10, slip=2, clock=clock)
    verdicts = [limiter.check("192.0.2.1") for _ in range(16)]
    assert verdicts[:10] == [Verdict.ANSWER] * 10
    assert verdicts[10:] == [Verdict.DROP, Verdict.SLIP] * 3
    assert limiter.check("192.0.2.200") == Verdict.DROP  # same /24 shares the bucket
    assert limiter.check("198.51.100.1") == Verdict.ANSWER  # another prefix does not
    clock.now += 0.5  # five tokens back
    assert [limiter.check("192.0.2.1") for _ in range(5)] == [Verdict.ANSWER] * 5


def test_ipv6_prefix_is_a_56():
    assert client_prefix("2001:db8:1:ff::1") == client_prefix("2001:db8:1:0::2") == "2001:db8:1::"
    assert client_prefix("2001:db8:1:100::1") != client_prefix("2001:db8:1::1")



def make_handler(local_to_any: bool) -> QueryHandler:
    """The real handler over a real zone; the forwarder has no upstream, so a forwarded question
    would come back SERVFAIL, which tells it apart from the policy's REFUSED."""
    store = Store()
    store.put("flags", Fragment(tuple(parse_record_line("web.test. 60 IN A 192.0.2.1"))))
    local = LocalZone(store)
    chain = Chain([local], Forwarder(lambda: (), AnswerCache()))
    return QueryHandler(store, chain, Clients(store, AccessPolicy((), local_to_any)), local=local)


def ask(responder: Responder, data: bytes, client: str, transport: str = "udp") -> bytes | None:
    return asyncio.run(reply_to(responder, data, client, transport))


def rcode_of(reply: bytes | None) -> int:
    assert reply is not None
    return dns.message.from_wire(reply).rcode()


def test_strangers_are_refused_on_the_fast_and_the_slow_path():
    handler = make_handler(local_to_any=False)
    fast = FastPath(handler, handler.store)
    data = dns.message.make_query("web.test", "A").to_wire()
    assert rcode_of(ask(handler, data, "127.0.0.1")) == dns.rcode.NOERROR
    assert rcode_of(ask(fast, data, "127.0.0.1")) == dns.rcode.NOERROR
    assert rcode_of(ask(fast, data, "127.0.0.1")) == dns.rcode.NOERROR
    assert fast.packets.total_hits() == 1  # the second from the packet cache
    assert rcode_of(ask(fast, data, "192.0.2.7")) == dns.rcode.REFUSED
    assert rcode_of(ask(handler, data, "192.0.2.7", "tcp")) == dns.rcode.REFUSED
    response = bytearray(data)
    response[2] |= 0x80
    assert ask(fast, bytes(response), "192.0.2.7") is None  # a response is never answered
    assert fast.packets.total_hits() == 1


def test_local_to_any_answers_local_names_but_never_forwards():
    handler = make_handler(local_to_any=True)
    fast = FastPath(handler, handler.store)
    local = dns.message.make_query("web.test", "A").to_wire()
    other = dns.message.make_query("example.org", "A").to_wire()
    for _ in range(2):
        reply = dns.message.from_wire(ask(fast, local, "192.0.2.7"))
        assert reply.answer[0][0].to_text() == "192.0.2.1"
    assert len(fast.packets) == 0 and fast.packets.total_hits() == 0  # nothing kept for strangers
    assert rcode_of(ask(handler, other, "192.0.2.7")) == dns.rcode.REFUSED
    assert rcode_of(ask(fast, other, "192.0.2.7")) == dns.rcode.REFUSED
    assert rcode_of(ask(handler, other, "127.0.0.1")) == dns.rcode.SERVFAIL  # tried upstream

