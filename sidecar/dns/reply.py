"""Replies to a client: built from an `Answer` with dnslib, or by hand from the query's own bytes
for the replies that carry no records (errors, rate limiting's TC slip). No sockets, no clock."""

from __future__ import annotations

from dataclasses import replace

from dnslib import EDNS0, QTYPE, RR, DNSHeader, DNSRecord

from ..api import Answer
from .question import Question, parse_query, plain_key
from .wire import (
    DO_BIT,
    FLAGS_AND_COUNTS,
    HEADER,
    OPCODE_MASK,
    OPT,
    OUR_UDP_SIZE,
    QR,
    RA,
    RD,
    RR_FIXED,
    SHORT,
    TC,
    UPDATE,
    question_end,
)


def build_reply(question: Question, query: bytes, answer: Answer, limit: int | None) -> bytes:
    """Pack `answer` as the reply to `query`; over `limit` bytes, a TC reply with no records
    (RFC 2181 9: the client retries over TCP rather than use a partial set)."""
    request = question.request or parse_query(query)
    header = DNSHeader(id=request.header.id, qr=1, aa=int(answer.authoritative), ra=1,
                       rd=request.header.rd, cd=request.header.cd, rcode=answer.rcode & 0xF)
    reply = DNSRecord(header, q=request.q)
    reply.rr.extend(answer.answer)
    reply.auth.extend(answer.authority)
    reply.ar.extend(rr for rr in answer.additional if rr.rtype != QTYPE.OPT)
    opt = _client_opt(request)
    if opt is not None:
        reply.add_ar(EDNS0(udp_len=OUR_UDP_SIZE, flags="do" if opt.ttl & DO_BIT else ""))
    packed = bytes(reply.pack())
    if limit is None or len(packed) <= limit:
        return packed
    reply.header.tc = 1
    reply.rr, reply.auth = [], []
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    return bytes(reply.pack())


def _client_opt(request: DNSRecord) -> RR | None:
    return next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)


def error_reply(data: bytes, rcode: int) -> bytes:
    """The reply to a query we will not answer (ID, opcode and RD echoed; RA only to a standard
    query, no other flag): with the query's question and an OPT record of ours (EDNS version 0,
    the extended rcode's upper bits, the client's DO bit) when the query's question and OPT can
    be read and it is not an UPDATE, else the header alone. So Knot DNS answers, and RFC 6891
    6.1.3 wants for BADVERS."""
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    opcode = flags & OPCODE_MASK
    out = QR | opcode | (flags & RD) | (0 if opcode else RA) | (rcode & 0xF)
    # An UPDATE's "question" is its zone section, whose rules (an SOA type) a client checks.
    qend = question_end(data) if qdcount == 1 and opcode != UPDATE else None
    if qend is None:
        return HEADER.pack(qid, out, 0, 0, 0, 0)
    question, opt = data[12:qend], b""
    if arcount == 1 and not ancount and not nscount and data[qend : qend + 3] == b"\x00\x00\x29" \
            and len(data) >= qend + 11:
        opt = b"\x00" + RR_FIXED.pack(OPT, OUR_UDP_SIZE, (rcode >> 4) << 24 | (data[qend + 7] & 0x80) << 8, 0)
    return HEADER.pack(qid, out, 1, 0, 0, 1 if opt else 0) + question + opt


def truncated_reply(data: bytes) -> bytes | None:
    """An empty TC reply echoing the question, built from the query's own bytes: what rate
    limiting "slips" so a real client retries over TCP. None for anything but a plain query."""
    key, qend = plain_key(data)
    if key is None:
        return None
    return data[:2] + truncated_after_id(SHORT.unpack_from(data, 2)[0], data[12:qend])


def truncated_after_id(client_flags: int, question: bytes) -> bytes:
    """An empty TC reply but its ID: QR, TC and RA set, the client's opcode and RD echoed."""
    flags = QR | TC | (client_flags & (OPCODE_MASK | RD)) | RA
    return FLAGS_AND_COUNTS.pack(flags, 1, 0, 0, 0) + question


def answer_from_reply(data: bytes, source: str = "forward") -> Answer:
    """An upstream's reply as an `Answer` with parsed records (OPT left out: ours is added)."""
    reply = DNSRecord.parse(data)
    return Answer(rcode=reply.header.rcode, answer=tuple(reply.rr), authority=tuple(reply.auth),
                  additional=tuple(rr for rr in reply.ar if rr.rtype != QTYPE.OPT), source=source)


def with_records(answer: Answer) -> Answer:
    """`answer` with its records parsed from `wire` when it carries bytes (for a caller that must
    add to them or rebuild the reply); its caching lifetime and source are kept."""
    if answer.wire is None:
        return answer
    return replace(answer_from_reply(answer.wire, answer.source), cache_for=answer.cache_for)


def patch_reply(kept: bytes, query: bytes, question_end: int) -> bytes:
    """A kept reply made the asker's own: its ID and its question bytes (the case it used)."""
    return query[:2] + kept[2:12] + query[12:question_end] + kept[question_end:]
