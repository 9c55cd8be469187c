"""What the forwarder puts on the wire and what it accepts back, checked with a scripted upstream
(a UDP socket on loopback answering with dnspython) and with real dnsmasq: random IDs and
ports, spoofed replies ignored, no client subnet added, DO bit carried, coalescing, LRU bound."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from dnslib import QTYPE

from sidecar.api import Answer, Query
from sidecar.dns.question import Question
from sidecar.errors import UpstreamError
from sidecar.net.endpoint import Endpoint
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.forward import Forwarder
from tests.helpers.upstream import answer_a

T = TypeVar("T")


def with_forwarder(use: Callable[[Forwarder], Awaitable[T]], *upstreams: Endpoint, timeout: float = 1.0,
                   cache: AnswerCache | None = None) -> T:
    """`use(forwarder)` on a fresh event loop, the forwarder's sockets closed afterwards."""
    async def main() -> T:
        fwd = Forwarder(lambda: upstreams, AnswerCache(stale_ttl=0) if cache is None else cache, timeout)
        try:
            return await use(fwd)
        finally:
            fwd.close()

    return asyncio.run(main())


def test_spoofed_and_mismatched_replies_are_ignored(scripted) -> None:
    def respond(query, addr, sock) -> None:
        wrong_id = answer_a(query, "198.51.100.66")
        wrong_id.id = (query.id + 1) % 65536
        sock.sendto(wrong_id.to_wire(), addr)
        other_question = answer_a(dns.message.make_query("other.test.", "A"), "198.51.100.67")
        other_question.id = query.id
        sock.sendto(other_question.to_wire(), addr)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:  # right ID, wrong source
            spoofer.bind(("127.0.0.7", 0))
            spoofer.sendto(answer_a(query, "198.51.100.68").to_wire(), addr)
        time.sleep(0.05)
        sock.sendto(answer_a(query).to_wire(), addr)

    upstream = scripted(respond)

    answer = with_forwarder(lambda fwd: fwd.resolve(Query("www.spoof.test.", QTYPE.A)), upstream.endpoint)
    assert [str(rr.rdata) for rr in answer.answer] == ["192.0.2.1"]


def test_a_reply_matches_its_question_in_any_case_of_the_name_but_not_another_type() -> None:
    question = Question.of("www.case.test.", 65, 1, False)  # type 65 (HTTPS) is the bytes 00 41: "A" in ASCII
    sent = question.query(b"\x12\x34")
    reply = bytearray(sent)
    reply[2] |= 0x80  # QR: a response
    name_end = question.end - 4
    assert question.answered_by(bytes(reply))
    assert question.answered_by(bytes(reply[:12] + reply[12:name_end].upper() + reply[name_end:]))  # 0x20 echo
    assert not question.answered_by(bytes(reply[:name_end] + b"\x00a\x00\x01" + reply[question.end:]))  # type 97
    assert not question.answered_by(sent)  # a query, not a response
    assert not question.answered_by(bytes(reply[:5]) + b"\x02" + bytes(reply[6:]))  # two questions
    assert not question.answered_by(bytes(reply[:13]) + b"x" + bytes(reply[14:]))  # another name
    assert not question.answered_by(bytes(reply[: question.end - 1]))  # cut short


def test_ids_and_source_ports_vary_no_client_subnet_do_bit_carried(scripted) -> None:
    upstream = scripted(lambda q, addr, sock: sock.sendto(answer_a(q).to_wire(), addr))

    async def ask(fwd: Forwarder) -> None:
        for i in range(16):
            await fwd.resolve(Query(f"n{i}.wire.test.", QTYPE.A, dnssec_ok=i % 2 == 1))

    with_forwarder(ask, upstream.endpoint)
    queries = [q for q, _ in upstream.seen]
    assert len(queries) == 16
    assert len({q.id for q in queries}) >= 14  # random 16-bit IDs: a repeat is possible, many are not
    assert len({addr[1] for _, addr in upstream.seen}) >= 2  # a pool of sockets, random ports
    for i, query in enumerate(queries):
        assert query.flags & dns.flags.RD
        assert query.edns == 0
        assert not any(opt.otype == dns.edns.ECS for opt in query.options)
        assert bool(query.ednsflags & dns.flags.DO) == (i % 2 == 1)


def test_identical_questions_in_flight_share_one_upstream_query(scripted) -> None:
    def slow(query, addr, sock) -> None:
        time.sleep(0.3)
        sock.sendto(answer_a(query).to_wire(), addr)

    upstream = scripted(slow)

    answers = with_forwarder(lambda fwd: asyncio.gather(*(fwd.resolve(Query("same.test.", QTYPE.A))
                                                           for _ in range(20))), upstream.endpoint)
    assert len(answers) == 20 and all(str(a.answer[0].rdata) == "192.0.2.1" for a in answers)
    assert len(upstream.seen) == 1


def test_no_answer_within_the_budget_raises_upstream_error(scripted) -> None:
    upstream = scripted(lambda q, addr, sock: None)

    with pytest.raises(UpstreamError, match="timeout"):
        with_forwarder(lambda fwd: fwd.resolve(Query("silent.test.", QTYPE.A)), upstream.endpoint, timeout=0.3)


def queried_names(log: str) -> list[str]:
    names = (line.split("query[A] ", 1)[1].split()[0] for line in log.splitlines() if "query[A] " in line)
    return [name for name in names if name != "probe.invalid"]  # the fixture's readiness check


def test_lru_bound_evicts_the_oldest_answer(dnsmasq) -> None:
    upstream = dnsmasq("127.0.0.2", ["--address=/lru.test/192.0.2.5", "--log-queries"])

    async def ask(fwd: Forwarder) -> int:
        for name in ("a.lru.test.", "b.lru.test.", "c.lru.test.", "c.lru.test.", "a.lru.test."):
            await fwd.resolve(Query(name, QTYPE.A))
        return len(fwd.cache)

    lru = AnswerCache(max_entries=2, stale_ttl=0)
    assert with_forwarder(ask, Endpoint(upstream.host, upstream.port), cache=lru) == 2
    assert queried_names(upstream.log_text()) == ["a.lru.test", "b.lru.test", "c.lru.test", "a.lru.test"]


def test_servfail_is_remembered_briefly_instead_of_asked_again(scripted) -> None:
    def servfail(query, addr, sock) -> None:
        reply = dns.message.make_response(query)
        reply.set_rcode(dns.rcode.SERVFAIL)
        sock.sendto(reply.to_wire(), addr)

    upstream = scripted(servfail)

    async def ask(fwd: Forwarder) -> None:
        for _ in range(3):
            with pytest.raises(UpstreamError, match="SERVFAIL"):
                await fwd.resolve(Query("broken.test.", QTYPE.A))

    with_forwarder(ask, upstream.endpoint)
    assert len(upstream.seen) == 1


def test_a_bug_while_handling_a_reply_costs_that_question_only(scripted, monkeypatch, caplog) -> None:
    upstream = scripted(lambda q, addr, sock: sock.sendto(answer_a(q).to_wire(), addr))

    async def ask(fwd: Forwarder) -> Answer:
        monkeypatch.setattr(fwd, "_on_reply", lambda flight, data: 1 / 0)
        with pytest.raises(UpstreamError, match="internal error"):
            await fwd.resolve(Query("bug.test.", QTYPE.A))
        monkeypatch.undo()
        return await fwd.resolve(Query("fine.test.", QTYPE.A))

    answer = with_forwarder(ask, upstream.endpoint)
    assert [str(rr.rdata) for rr in answer.answer] == ["192.0.2.1"]
    assert "forwarding bug.test. failed" in caplog.text and "ZeroDivisionError" in caplog.text


@pytest.mark.parametrize("tcp", [False, True])
def test_uncacheable_answer_is_relayed_with_our_opt_only_to_a_client_that_sent_one(dnsmasq, sidecar, tcp) -> None:
    """A TTL-0 answer is relayed as bytes, not rebuilt: the upstream's OPT (its own size, here
    4096) must not reach the client; a client with EDNS gets ours, one without gets none."""
    upstream = dnsmasq("127.0.0.2", ["--address=/zero.test/192.0.2.7", "--edns-packet-max=4096"], ttl=0)
    server = sidecar("--upstream", f"{upstream.host}:{upstream.port}")
    for _ in range(2):  # the first relay and the remembered one
        with_edns = server.query("Web.Zero.Test", tcp=tcp, use_edns=0, payload=4096, want_dnssec=True)
        assert [(rrset.ttl, rrset[0].to_text()) for rrset in with_edns.answer] == [(0, "192.0.2.7")]
        assert str(with_edns.question[0].name) == "Web.Zero.Test."
        assert (with_edns.edns, with_edns.payload, bool(with_edns.ednsflags & dns.flags.DO)) == (0, 1232, True)
        plain = server.query("web.zero.test", tcp=tcp)
        assert [(rrset.ttl, rrset[0].to_text()) for rrset in plain.answer] == [(0, "192.0.2.7")]
        assert plain.edns == -1 and not plain.additional


def test_a_relay_asked_again_answers_each_asker_with_its_own_id_case_and_flags(dnsmasq, sidecar) -> None:
    """Once a question is known not to be local, its replies are made from a remembered frame:
    every asker still gets its own ID, question case, RD and CD bits, and the upstream's rcode."""
    upstream = dnsmasq("127.0.0.2", ["--address=/zero.test/192.0.2.7", "--address=/nx.zero.test/"], ttl=0)
    server = sidecar("--upstream", f"{upstream.host}:{upstream.port}")
    for attempt in range(3):
        for name, rcode, flags in (("Www.Zero.TEST", dns.rcode.NOERROR, dns.flags.RD),
                                   ("gone.NX.zero.test", dns.rcode.NXDOMAIN, dns.flags.RD | dns.flags.CD),
                                   ("www.zero.test", dns.rcode.NOERROR, 0)):
            query = dns.message.make_query(name, "A", flags=flags)
            query.id = 0x1000 + attempt
            reply = dns.query.udp(query, server.host, port=server.port, timeout=3)
            assert reply.id == query.id and str(reply.question[0].name) == name + "."
            assert reply.rcode() == rcode
            assert reply.flags & (dns.flags.QR | dns.flags.RA | dns.flags.RD | dns.flags.CD) == \
                dns.flags.QR | dns.flags.RA | flags
            expected = [] if rcode == dns.rcode.NXDOMAIN else [(0, "192.0.2.7")]
            assert [(rrset.ttl, rrset[0].to_text()) for rrset in reply.answer] == expected


def test_a_relay_asked_again_truncates_for_a_small_buffer_and_fails_without_its_upstream(dnsmasq, sidecar) -> None:
    """The remembered frame keeps the asker's UDP limit: a TTL-0 answer too big for 512 bytes
    comes back empty with TC set, every time, and whole to a client with a larger EDNS buffer.
    With the upstream gone, the same remembered question gets SERVFAIL."""
    records = [f"--host-record=big.zero.test,192.0.2.{i}" for i in range(1, 41)]  # 40 x 16 bytes of answers
    upstream = dnsmasq("127.0.0.2", records, ttl=0)
    server = sidecar("--upstream", f"{upstream.host}:{upstream.port}")
    for _ in range(2):
        small = server.query("big.zero.test")
        assert small.flags & dns.flags.TC and not small.answer and small.rcode() == dns.rcode.NOERROR
        large = server.query("big.zero.test", use_edns=0, payload=1232)
        assert len(large.answer[0]) == 40 and large.answer[0].ttl == 0 and not large.flags & dns.flags.TC
    upstream.stop()
    assert server.query("big.zero.test", use_edns=0, payload=1232, timeout=5).rcode() == dns.rcode.SERVFAIL


def test_a_udp_reply_larger_than_our_edns_size_is_read_whole(scripted) -> None:
    """An upstream that ignores our EDNS size (1232) and sends 5 kB over UDP: the reply is read
    whole, never cut at a buffer's edge."""
    def oversized(query, addr, sock) -> None:
        reply = dns.message.make_response(query)
        texts = [f'"{i:02d}{"y" * 240}"' for i in range(20)]
        reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "TXT", *texts))
        wire = reply.to_wire(max_size=65535)  # past the size our query asked for
        assert len(wire) > 4096
        sock.sendto(wire, addr)

    upstream = scripted(oversized)
    answer = with_forwarder(lambda fwd: fwd.resolve(Query("big.test.", QTYPE.TXT)), upstream.endpoint)
    assert sorted(str(rr.rdata)[1:3] for rr in answer.answer) == [f"{i:02d}" for i in range(20)]
