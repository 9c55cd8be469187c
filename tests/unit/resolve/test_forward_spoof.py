"""Forwarding under attack, on loopback: a stand-in upstream on 127.0.0.6 (a UDP socket answering
with dnspython, `ScriptedUpstream`) records the source port and ID of every question; an attacker
with a raw socket (root) forges replies from the upstream's own address and port, and forges ICMP
"port unreachable" errors. The forwarder runs in-process on uvloop, as the sidecar does."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TypeVar

import dns.message
import pytest
import uvloop
from dnslib import QTYPE

from sidecar.api import Query
from sidecar.errors import UpstreamError
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.forward import Forwarder
from tests.helpers.upstream import ScriptedUpstream, answer_a

T = TypeVar("T")
FORGED = "198.51.100.66"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="forging packets needs a raw socket (root)")


def on_uvloop(use: Callable[[Forwarder], Awaitable[T]], upstream: ScriptedUpstream, timeout: float = 1.0) -> T:
    async def main() -> T:
        fwd = Forwarder(lambda: (upstream.endpoint,), AnswerCache(stale_ttl=0), timeout)
        try:
            return await use(fwd)
        finally:
            fwd.close()

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


@pytest.fixture
def upstream():
    """The stand-in upstream: answers at once, or holds its answers while `held` is set."""
    held: list[tuple[dns.message.Message, tuple]] = []

    def respond(query, addr, sock) -> None:
        if upstream.held:
            held.append((query, addr))
        else:
            sock.sendto(answer_a(query).to_wire(), addr)

    upstream = ScriptedUpstream(respond)
    upstream.held = False
    upstream.waiting = held
    yield upstream
    upstream.close()


def release(upstream: ScriptedUpstream) -> None:
    upstream.held = False
    for query, addr in upstream.waiting:
        upstream.sock.sendto(answer_a(query).to_wire(), addr)
    upstream.waiting.clear()


async def until(predicate: Callable[[], bool], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_every_question_leaves_from_its_own_random_port(upstream) -> None:
    """2,000 distinct names, 100 in flight at a time: nearly as many source ports as questions
    (the kernel draws each from about 28,000), never more than 3 questions on one port."""
    async def ask(fwd: Forwarder) -> None:
        for first in range(0, 2000, 100):
            await asyncio.gather(*(fwd.resolve(Query(f"n{i}.ports.test.", QTYPE.A)) for i in range(first, first + 100)))

    on_uvloop(ask, upstream)
    ports = Counter(addr[1] for _, addr in upstream.seen)
    ids = {query.id for query, _ in upstream.seen}
    print(f"2,000 questions: {len(ports)} source ports, at most {max(ports.values())} on one, {len(ids)} IDs")
    assert len(upstream.seen) == 2000
    assert len(ports) >= 1500 and max(ports.values()) <= 3, ports.most_common(3)
    assert len(ids) >= 1900  # random 16-bit IDs: a few repeat


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ipv4_udp(source: tuple[str, int], destination: tuple[str, int], payload: bytes) -> bytes:
    """An IPv4 header and a UDP header (no checksum) before `payload`."""
    udp = struct.pack("!HHHH", source[1], destination[1], 8 + len(payload), 0) + payload
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0,
                         socket.inet_aton(source[0]), socket.inet_aton(destination[0]))
    return header[:10] + struct.pack("!H", checksum(header)) + header[12:] + udp


@needs_root
def test_forged_replies_for_every_id_on_known_ports_do_not_poison(upstream) -> None:
    """The attacker learns the ports of earlier questions, then, while the upstream holds the real
    answer, sprays forged answers for all 65,536 IDs at each of those ports from the upstream's own
    address and port. With a port per question none of them can land."""
    forger = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)  # IP_HDRINCL implied

    def spray(name: str, ports: set[int]) -> None:
        template = bytearray(answer_a(dns.message.make_query(name, "A"), FORGED).to_wire())
        for port in ports:
            packet = bytearray(ipv4_udp(upstream.endpoint, ("127.0.0.1", port), bytes(template)))
            for qid in range(65536):
                struct.pack_into("!H", packet, 28, qid)
                forger.sendto(packet, ("127.0.0.1", 0))

    async def race(fwd: Forwarder) -> list[str]:
        for i in range(4):  # as many as the ports of a pool of four
            await fwd.resolve(Query(f"learn{i}.race.test.", QTYPE.A))
        known = {addr[1] for _, addr in upstream.seen}
        upstream.held = True
        target = asyncio.ensure_future(fwd.resolve(Query("target.race.test.", QTYPE.A)))
        await until(lambda: upstream.waiting)
        # From another thread, while the loop reads: a burst at a socket nobody reads overflows it.
        await asyncio.get_running_loop().run_in_executor(None, spray, "target.race.test.", known)
        await asyncio.sleep(0.2)  # every forged datagram read before the real answer is sent
        release(upstream)
        return [str(rr.rdata) for rr in (await target).answer]

    try:
        assert on_uvloop(race, upstream, timeout=60.0) == ["192.0.2.1"]
    finally:
        forger.close()


def port_unreachable(asked_from: tuple[str, int], upstream: tuple[str, int], quoted: bytes) -> bytes:
    """An ICMP "port unreachable" as the upstream's host would send it for a datagram from
    `asked_from`, quoting `quoted` as that datagram's payload."""
    inner = ipv4_udp(asked_from, upstream, quoted)
    body = struct.pack("!BBHI", 3, 3, 0, 0) + inner
    return body[:2] + struct.pack("!H", checksum(body)) + body[4:]


@needs_root
def test_forged_icmp_errors_fail_only_the_question_they_quote(upstream) -> None:
    """50 questions wait on the upstream. Every one of their ports gets a forged ICMP port
    unreachable that quotes a different ID and one that quotes nothing: nothing fails and the
    upstream is not marked dead. One more quotes question 0 exactly: only question 0 fails; the
    other 49 get the real answer."""
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)

    async def attack(fwd: Forwarder) -> list:
        upstream.held = True
        names = [f"q{i}.icmp.test." for i in range(50)]
        asked = [asyncio.ensure_future(fwd.resolve(Query(name, QTYPE.A))) for name in names]
        await until(lambda: len(upstream.waiting) == 50)
        for query, addr in upstream.waiting:
            wrong = query.to_wire()
            wrong = struct.pack("!H", (query.id + 1) % 65536) + wrong[2:]
            icmp.sendto(port_unreachable(addr, upstream.endpoint, wrong), ("127.0.0.1", 0))
            icmp.sendto(port_unreachable(addr, upstream.endpoint, b""), ("127.0.0.1", 0))  # quotes nothing
        await asyncio.sleep(0.3)  # the errors read before anything else happens
        assert not fwd.health.dead and not any(future.done() for future in asked)
        first_query, first_addr = next((q, a) for q, a in upstream.waiting if str(q.question[0].name) == names[0])
        icmp.sendto(port_unreachable(first_addr, upstream.endpoint, first_query.to_wire()), ("127.0.0.1", 0))
        await asyncio.sleep(0.3)
        release(upstream)
        return await asyncio.gather(*asked, return_exceptions=True)

    try:
        results = on_uvloop(attack, upstream, timeout=5.0)
    finally:
        icmp.close()
    assert isinstance(results[0], UpstreamError) and "ConnectionRefusedError" in str(results[0])
    assert [str(answer.answer[0].rdata) for answer in results[1:]] == ["192.0.2.1"] * 49
