"""Upstream replies cut down to the answer chain: unrelated owners' records, NS sets and glue go,
the CNAME/DNAME chain and its DNSSEC records stay. Messages are made by dnspython; end to end,
a stand-in upstream (a UDP socket answering with a crafted reply, as no real server here sends
unrelated records) sits behind the real sidecar."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest

from sidecar.dns.question import read_question
from sidecar.dns.relay import without_opt
from sidecar.resolve.scrub import scrubbed
from tests.helpers.upstream import ScriptedUpstream

SIG = "A 13 3 300 20300101000000 20200101000000 12345 chain.test. AAAA"
EVIL_NSEC_SIG = "NSEC 13 3 300 20300101000000 20200101000000 12345 evil.example. AAAA"


def reply_to(name: str, rdtype: str, answer=(), authority=(), additional=(), rcode=0) -> dns.message.Message:
    reply = dns.message.make_response(dns.message.make_query(name, rdtype))
    reply.set_rcode(rcode)
    for section, texts in ((reply.answer, answer), (reply.authority, authority), (reply.additional, additional)):
        for text in texts:
            owner, kind, *data = text.split()
            section.append(dns.rrset.from_text(owner, 300, "IN", kind, " ".join(data)))
    return reply


def scrub(reply: dns.message.Message) -> bytes:
    wire = reply.to_wire()
    end = read_question(dns.message.make_query(reply.question[0].name, reply.question[0].rdtype).to_wire()).end
    return scrubbed(without_opt(wire, end)[0], end)


def texts(section) -> list[str]:
    return sorted(f"{rrset.name} {dns.rdatatype.to_text(rrset.rdtype)} {rr.to_text()}"
                  for rrset in section for rr in rrset)


POISONED = reply_to(
    "www.chain.test.", "A",
    answer=["www.chain.test. CNAME web.chain.test.", "web.chain.test. A 192.0.2.1", f"web.chain.test. RRSIG {SIG}",
            "bank.example. A 198.51.100.66", "www.chain.test. AAAA 2001:db8::66"],
    authority=["chain.test. NS ns.chain.test.", "example. NS ns.evil.example.", "bank.example. A 198.51.100.67"],
    additional=["ns.chain.test. A 192.0.2.53", "ns.evil.example. A 198.51.100.53",
                "web.chain.test. CNAME evil.example."])


def test_records_outside_the_chain_are_dropped_and_the_chain_kept() -> None:
    clean = dns.message.from_wire(scrub(POISONED))
    assert texts(clean.answer) == ["web.chain.test. A 192.0.2.1", f"web.chain.test. RRSIG {SIG}",
                                   "www.chain.test. CNAME web.chain.test."]
    assert texts(clean.authority) == ["chain.test. NS ns.chain.test."]
    assert texts(clean.additional) == ["ns.chain.test. A 192.0.2.53"]
    assert clean.id == POISONED.id and clean.rcode() == dns.rcode.NOERROR


def test_a_negative_proof_and_a_dname_chain_pass_byte_for_byte() -> None:
    nxdomain = reply_to(
        "gone.chain.test.", "A", rcode=dns.rcode.NXDOMAIN,
        authority=["chain.test. SOA ns.chain.test. admin.chain.test. 1 3600 600 86400 60",
                   f"chain.test. RRSIG {SIG.replace('A 13 3', 'SOA 13 2')}",
                   "a.chain.test. NSEC z.chain.test. A RRSIG NSEC",
                   f"a.chain.test. RRSIG {SIG.replace('A 13 3', 'NSEC 13 3')}"])
    dname = reply_to(
        "www.old.test.", "A",
        answer=["old.test. DNAME new.test.", "www.old.test. CNAME www.new.test.", "www.new.test. A 192.0.2.9"])
    for reply in (nxdomain, dname):
        wire = without_opt(reply.to_wire())[0]
        assert scrub(reply) == wire


def test_an_nsec_signed_by_an_unrelated_zone_and_ns_beside_nxdomain_go() -> None:
    reply = reply_to(
        "gone.chain.test.", "A", rcode=dns.rcode.NXDOMAIN,
        authority=["chain.test. SOA ns.chain.test. admin.chain.test. 1 3600 600 86400 60",
                   "chain.test. NS ns.chain.test.",
                   "a.evil.example. NSEC z.evil.example. A RRSIG NSEC",
                   "a.evil.example. RRSIG " + EVIL_NSEC_SIG])
    assert [rrset.rdtype for rrset in dns.message.from_wire(scrub(reply)).authority] == [dns.rdatatype.SOA]


@pytest.fixture
def poisoning_upstream():
    """A stand-in upstream on 127.0.0.6 that answers every question with the chain and, beside
    it, records nobody asked about."""
    def respond(query, addr, sock) -> None:
        reply = dns.message.from_wire(POISONED.to_wire())
        reply.id = query.id
        reply.question = query.question
        sock.sendto(reply.to_wire(), addr)

    upstream = ScriptedUpstream(respond)
    yield upstream
    upstream.close()


def test_the_sidecar_relays_and_caches_only_the_chain(poisoning_upstream, sidecar) -> None:
    host, port = poisoning_upstream.endpoint
    server = sidecar("--upstream", f"{host}:{port}")
    for _ in range(2):  # relayed, then from the cache
        reply = server.query("www.chain.test")
        assert texts(reply.answer) == ["web.chain.test. A 192.0.2.1", f"web.chain.test. RRSIG {SIG}",
                                       "www.chain.test. CNAME web.chain.test."]
        assert texts(reply.authority) == ["chain.test. NS ns.chain.test."]
        assert texts(reply.additional) == ["ns.chain.test. A 192.0.2.53"]
    assert len(poisoning_upstream.seen) == 1
    assert server.query("bank.example").rcode() == dns.rcode.NOERROR  # asked upstream, not taken from the junk
    assert len(poisoning_upstream.seen) == 2
