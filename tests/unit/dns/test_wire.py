"""The sans-IO wire layer: bytes in, bytes or typed errors out."""

import struct

import pytest
from dnslib import EDNS0, QTYPE, RCODE, RR, TXT, A, DNSRecord

from sidecar.api import Answer
from sidecar.dns import relay as relaying
from sidecar.dns.question import parse_query, read_question
from sidecar.dns.relay import relay_reply, without_opt
from sidecar.dns.reply import build_reply, error_reply
from sidecar.errors import MalformedQuery


def packed_query(name="web.dev.test", qtype="A", edns: int | None = None, do=False) -> bytes:
    q = DNSRecord.question(name, qtype)
    if edns is not None:
        q.add_ar(EDNS0(udp_len=edns, flags="do" if do else ""))
    return q.pack()


@pytest.mark.parametrize(("data", "rcode", "reason"), [
    (b"\x12\x34", None, "shorter than a DNS header"),
    (b"\x12\x34\x81\x80" + b"\x00\x01\x00\x00\x00\x00\x00\x00", None, "a response"),
    (b"\x12\x34\x28\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00", RCODE.NOTIMP, "opcode"),  # UPDATE
    (b"\x12\x34\x01\x00" + b"\x00\x00\x00\x00\x00\x00\x00\x00", RCODE.FORMERR, "0 questions"),
    (b"\x12\x34\x01\x00" + b"\x00\x02\x00\x00\x00\x00\x00\x00", RCODE.FORMERR, "2 questions"),
    (b"\x12\x34\x01\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x03ab", RCODE.FORMERR, "unparseable"),
    (b"\x12\x34\x01\x00" + b"\x00\x01\x00\x00\x00\x00\x00\x00" + b"\xc0\x0c\x00\x01\x00\x01", RCODE.FORMERR,
     "unparseable"),  # a compression pointer to itself
])
def test_malformed_queries_are_classified(data, rcode, reason):
    with pytest.raises(MalformedQuery) as caught:
        parse_query(data)
    assert caught.value.reply_rcode == rcode
    assert reason in str(caught.value)


def test_two_opt_records_are_formerr():
    q = DNSRecord.question("a.test")
    q.add_ar(EDNS0())
    q.add_ar(EDNS0())
    with pytest.raises(MalformedQuery, match="bad OPT"):
        parse_query(q.pack())


def test_error_reply_echoes_id_opcode_and_rd():
    reply = error_reply(b"\xbe\xef\x01\x00" + bytes(8), RCODE.FORMERR)
    qid, flags, *counts = struct.unpack("!6H", reply)
    assert qid == 0xBEEF and flags & 0x8000 and flags & 0x0100 and flags & 0xF == RCODE.FORMERR
    assert counts == [0, 0, 0, 0]


@pytest.mark.parametrize(("edns", "limit"), [(None, 512), (100, 512), (1232, 1232), (4096, 1232)])
def test_udp_limit_follows_client_edns(edns, limit):
    assert read_question(packed_query(edns=edns)).udp_limit == limit


def test_reply_sets_flags_and_echoes_do_bit():
    query = packed_query(edns=1232, do=True)
    answer = Answer(answer=(RR("web.dev.test", QTYPE.A, ttl=30, rdata=A("192.0.2.1")),),
                    authoritative=True)
    reply = DNSRecord.parse(build_reply(read_question(query), query, answer, 1232))
    assert (reply.header.qr, reply.header.aa, reply.header.ra, reply.header.rd, reply.header.tc) == (1, 1, 1, 1, 0)
    opt = next(rr for rr in reply.ar if rr.rtype == QTYPE.OPT)
    assert opt.ttl & 0x8000  # DO echoed (RFC 3225)
    assert str(reply.rr[0].rdata) == "192.0.2.1"


def test_oversized_udp_reply_is_truncated_to_an_empty_tc_reply():
    query = packed_query(qtype="TXT")
    question = read_question(query)
    big = tuple(RR("web.dev.test", QTYPE.TXT, ttl=30, rdata=TXT("x" * 200)) for _ in range(5))
    packed = build_reply(question, query, Answer(answer=big), question.udp_limit)
    reply = DNSRecord.parse(packed)
    assert len(packed) <= 512
    assert reply.header.tc == 1 and not reply.rr and str(reply.q.qname) == "web.dev.test."
    full = DNSRecord.parse(build_reply(question, query, Answer(answer=big), None))  # TCP: no limit
    assert full.header.tc == 0 and len(full.rr) == 5


def upstream_reply(name: str, qtype: str = "A", edns: bool = True, ttl: int = 0, count: int = 1) -> bytes:
    """What an upstream sends back for our lower-cased question (AD and AA set to see them handled)."""
    reply = DNSRecord.question(name.lower(), qtype).reply(ra=1, aa=1)
    reply.header.ad = 1
    for i in range(count):
        reply.add_answer(RR(name.lower(), QTYPE.A, ttl=ttl, rdata=A(f"192.0.2.{i + 1}")))
    if edns:
        reply.add_ar(EDNS0(udp_len=1232))
    return bytes(reply.pack())


def relay(upstream: bytes, query: bytes, limit: int) -> bytes | None:
    return relay_reply(without_opt(upstream)[0], query, read_question(query), limit)


def test_relayed_reply_takes_the_clients_id_case_and_flags_and_our_opt():
    query = packed_query("WeB.Fwd.TEST", edns=4096, do=True)
    relayed = DNSRecord.parse(relay(upstream_reply("web.fwd.test"), query, 1232))
    assert relayed.header.id == DNSRecord.parse(query).header.id
    assert str(relayed.q.qname) == "WeB.Fwd.TEST."
    assert (relayed.header.qr, relayed.header.rd, relayed.header.ra, relayed.header.aa, relayed.header.ad) == (
        1, 1, 1, 0, 1)  # ours is never authoritative for a relayed answer; AD is the upstream's word
    assert [str(rr.rdata) for rr in relayed.rr] == ["192.0.2.1"]
    [opt] = relayed.ar
    assert (opt.rtype, opt.rclass, opt.ttl) == (QTYPE.OPT, 1232, 0x8000)  # our size, the client's DO bit


def test_relayed_reply_has_no_opt_for_a_client_without_edns():
    relayed = DNSRecord.parse(relay(upstream_reply("web.fwd.test"), packed_query("web.fwd.test"), 512))
    assert relayed.ar == [] and [str(rr.rdata) for rr in relayed.rr] == ["192.0.2.1"]


def test_a_relayed_reply_echoes_rd_and_cd_only_whatever_else_the_query_sets():
    """AA, TC, RA, Z, AD and rcode bits in a query are not the client's to set in our reply, and
    each combination of them must not be remembered as a reply header of its own."""
    upstream = without_opt(upstream_reply("web.fwd.test"))[0]
    for junk in range(0, 0x0800, 0x0010):  # every combination of the bits from CD to AA
        query = bytearray(packed_query("web.fwd.test"))
        struct.pack_into("!H", query, 2, junk | 0x0110 | 0x000F)  # with RD and CD set, and rcode 15
        relayed = DNSRecord.parse(relay_reply(upstream, bytes(query), read_question(bytes(query)), 512))
        header = relayed.header
        assert (header.qr, header.rd, header.cd, header.ra, header.aa, header.tc, header.ad, header.rcode) == (
            1, 1, 1, 1, 0, 0, 1, RCODE.NOERROR)  # AD and the rcode are the upstream's
    assert len(relaying._REPLY_HEADS) <= 4


def test_relay_refuses_a_reply_for_another_question_and_truncates_when_too_big():
    assert relay(upstream_reply("other.fwd.test"), packed_query("web.fwd.test"), 512) is None
    assert relay(upstream_reply("web.fwd.tes"), packed_query("web.fwd.test"), 512) is None
    # HTTPS is type 65, the bytes 00 41 ("A"): folding case must not make it type 97 (00 61).
    https = upstream_reply("web.fwd.test", "HTTPS")
    assert relay(https, packed_query("WEB.fwd.test", "HTTPS"), 512) is not None
    as_type_97 = https.replace(b"\x04test\x00\x00\x41", b"\x04test\x00\x00\x61", 1)
    assert relay(as_type_97, packed_query("web.fwd.test", "HTTPS"), 512) is None
    big = relay(upstream_reply("web.fwd.test", count=40), packed_query("web.fwd.test"), 512)
    reply = DNSRecord.parse(big)
    assert reply.header.tc == 1 and not reply.rr and str(reply.q.qname) == "web.fwd.test."


def test_a_plain_question_is_read_by_hand_the_way_the_parser_reads_it():
    query = packed_query("WeB.Dev.Test", "AAAA", edns=4096, do=True)
    plain = read_question(query)
    assert (plain.name, plain.qtype, plain.qclass, plain.dnssec_ok, plain.udp_limit) == (
        "WeB.Dev.Test.", QTYPE.AAAA, 1, True, 1232)
    assert plain.request is None  # no dnslib on the way
    assert plain.wire == b"\x03web\x03dev\x04test\x00\x00\x1c\x00\x01" and plain.end == len(query) - 11
    assert plain.key == query[2:12] + query[12:plain.end].lower() + b"\x10\x00\x80\x00"  # size, DO, version
    assert read_question(packed_query("web.dev.test")).udp_limit == 512
    dotted = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03a.b\x04test\x00\x00\x01\x00\x01"
    parsed = read_question(dotted)  # left to the full parser
    assert parsed.request is not None and parsed.name == "a\\.b.test." and parsed.key is not None
    assert read_question(packed_query(".", "NS")).name == "."


@pytest.mark.parametrize("label", [b"\t", b" ", b"a\\b", b"\x7f"])
def test_labels_the_presentation_form_escapes_are_left_to_the_parser(label):
    """A tab or a backslash in a label is legal on the wire; read by hand it would make a name
    that means something else (or nothing: "\t.apps.test." stripped to ".apps.test.")."""
    query = b"\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + bytes((len(label),)) + label
    assert read_question(query + b"\x04test\x00\x00\x01\x00\x01").request is not None


@pytest.mark.parametrize(("ttls", "expected"), [((300, 60, 3600), 60), ((300, 0), 0), ((), 7200)])
def test_without_opt_takes_the_opt_out_and_reads_the_smallest_ttl_of_the_rest(ttls, expected) -> None:
    reply = DNSRecord.question("ttl.test.").reply()
    for i, ttl in enumerate(ttls):
        reply.add_answer(RR("ttl.test.", QTYPE.A, rdata=A(f"192.0.2.{i + 1}"), ttl=ttl))
    reply.add_ar(EDNS0(udp_len=1232))  # OPT's "TTL" field holds flags, never a TTL
    reply.add_ar(RR("ns.ttl.test.", QTYPE.A, rdata=A("192.0.2.53"), ttl=7200))  # an OPT need not be last
    stripped, smallest = without_opt(bytes(reply.pack()))
    assert smallest == expected
    parsed = DNSRecord.parse(stripped)
    assert [rr.rtype for rr in parsed.ar] == [QTYPE.A] and len(parsed.rr) == len(ttls)


def test_without_opt_rejects_a_record_running_past_the_end():
    reply = bytes(DNSRecord.question("ttl.test.").reply().pack())
    record = b"\xc0\x0c" + struct.pack("!HHIH", QTYPE.A, 1, 60, 4) + b"\xc0\x00"  # 2 of 4 rdata bytes
    with pytest.raises(IndexError):
        without_opt(reply[:7] + b"\x01" + reply[8:] + record)
