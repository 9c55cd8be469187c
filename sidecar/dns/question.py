"""The question of a query, read once from its bytes and carried the whole way: packet cache,
local zone, answer cache, upstream and the reply. A plain query (one question, no compression,
at most an OPT record after it) is read by hand; anything else goes through dnslib, which also
says why a packet is no query we can answer."""

from __future__ import annotations

import re
from dataclasses import dataclass

import dns.name
from dnslib import OPCODE, QTYPE, RCODE, DNSLabel, DNSRecord

from ..errors import MalformedQuery
from .wire import (
    BADVERS,
    DO_BIT,
    FLAGS_AND_COUNTS,
    HEADER,
    MIN_UDP_SIZE,
    OPCODE_MASK,
    OUR_OPT,
    OUR_UDP_SIZE,
    QR,
    RD,
    SHORT,
    TWO_SHORTS,
    same_question,
)

# A plain query is a header, a name of at most 255 bytes and an OPT record whose options (a
# cookie, padding) fit in the rest: anything longer takes the parser and is never a cache key.
MAX_PLAIN_QUERY = 512
# Printable ASCII but space and the characters a name's presentation form escapes (`\\"();@$`):
# for these names the text is the presentation form as it is.
_PLAIN_NAME = re.compile(rb"[!#%-'*-:<-?A-\[\]-~]*")
_ASK_HEAD = HEADER.pack(0, RD, 1, 0, 0, 1)[2:]  # a recursive query's header after its ID, one OPT


@dataclass(frozen=True, slots=True)
class Question:
    """One question. `name` is in presentation form with the asker's case; `wire` is the name in
    lower case, then type and class, as asked upstream; `end` is where the question ends in a
    message that holds it first and uncompressed. For a client's query, `udp_limit` is its EDNS
    size (clamped to 512..ours), `key` its packet-cache key (the query but its ID, the name in
    lower case, EDNS reduced to size and DO bit; None when the query is not plain) and `request`
    dnslib's parse of it when that was needed."""

    name: str
    qtype: int
    qclass: int
    dnssec_ok: bool
    wire: bytes
    end: int
    udp_limit: int = MIN_UDP_SIZE
    key: bytes | None = None
    request: DNSRecord | None = None

    @classmethod
    def of(cls, name: str, qtype: int, qclass: int, dnssec_ok: bool) -> Question:
        """A question to ask upstream. Raises ValueError for a name that cannot be encoded."""
        wire = bytearray()
        for label in DNSLabel(name).label:
            if not 0 < len(label) < 64:
                raise ValueError(f"bad label in {name!r}")
            wire += bytes((len(label),)) + label
        wire += b"\x00"
        if len(wire) > 255:
            raise ValueError(f"name too long: {name!r}")
        return cls(name, qtype, qclass, dnssec_ok, bytes(wire).lower() + TWO_SHORTS.pack(qtype, qclass),
                   12 + len(wire) + 4)

    def query(self, qid: bytes) -> bytes:
        """This question as a recursive query with the ID `qid` (two bytes) and EDNS: our UDP
        size, DO as asked, no options (no client subnet is ever added)."""
        return qid + _ASK_HEAD + self.wire + OUR_OPT[self.dnssec_ok]

    def answered_by(self, reply: bytes) -> bool:
        """Whether `reply` is a response whose single question is this one (case aside)."""
        end = self.end
        if len(reply) < end or not reply[2] & 0x80 or reply[4:6] != b"\x00\x01":  # QR set, QDCOUNT 1
            return False
        return same_question(reply[12:end], self.wire)

    def quoted_in(self, datagram: bytes) -> bool:
        """Whether `datagram` (what an ICMP error quotes) holds this question as we sent it."""
        return datagram[12 : self.end] == self.wire


def read_question(data: bytes) -> Question:
    """The question of the query `data`; raises `MalformedQuery` saying whether (and how) to
    answer a packet that is not a query we can read."""
    key, end = plain_key(data)
    if key is not None:
        found = _plain_question(data, key, end)
        if found is not None:
            return found
    request = parse_query(data)
    labels = request.q.qname.label
    wire = b"".join(bytes((len(label),)) + label.lower() for label in labels) + b"\x00"
    qtype, qclass = request.q.qtype, request.q.qclass
    opt = next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)
    return Question(dns.name.Name([*labels, b""]).to_text(), qtype, qclass, bool(opt and opt.ttl & DO_BIT),
                    wire + TWO_SHORTS.pack(qtype, qclass), 12 + len(wire) + 4,
                    MIN_UDP_SIZE if opt is None else max(MIN_UDP_SIZE, min(opt.rclass, OUR_UDP_SIZE)), key, request)


def plain_key(data: bytes) -> tuple[bytes | None, int]:
    """The packet-cache key of a plain query and where its question ends; (None, 0) when the
    packet needs the full parser (not a query, several questions, compression in the question,
    other additional records, anything after them, over `MAX_PLAIN_QUERY` bytes)."""
    if not 17 <= len(data) <= MAX_PLAIN_QUERY:
        return None, 0
    flags, qdcount, ancount, nscount, arcount = FLAGS_AND_COUNTS.unpack_from(data, 2)
    if flags & (QR | OPCODE_MASK) or qdcount != 1 or ancount or nscount or arcount > 1:
        return None, 0
    pos, end = 12, len(data)
    while True:
        if pos >= end:
            return None, 0
        length = data[pos]
        if length == 0:
            break
        if length > 63:
            return None, 0
        pos += length + 1
    qend = pos + 5
    if qend > end:
        return None, 0
    if arcount == 0:
        return (data[2:12] + data[12:qend].lower(), qend) if qend == end else (None, 0)
    # Exactly one additional record: it must be a root-owned OPT; keep size and DO bit only.
    if end < qend + 11 or data[qend] != 0 or data[qend + 1 : qend + 3] != b"\x00\x29" \
            or qend + 11 + SHORT.unpack_from(data, qend + 9)[0] != end:
        return None, 0
    edns = data[qend + 3 : qend + 5] + bytes((data[qend + 7] & 0x80, data[qend + 6]))
    return data[2:12] + data[12:qend].lower() + edns, qend


def _plain_question(data: bytes, key: bytes, qend: int) -> Question | None:
    """The question of a plain query, read by hand; None when it needs the full parser after all
    (a label holding a dot, a space or another character presentation form escapes; an
    over-long name; an EDNS version other than 0)."""
    labels, pos = [], 12
    while data[pos]:
        labels.append(data[pos + 1 : pos + 1 + data[pos]])
        pos += data[pos] + 1
    joined = b".".join(labels)
    if qend - 16 > 255 or joined.count(b".") != max(len(labels) - 1, 0) or not _PLAIN_NAME.fullmatch(joined):
        return None
    qtype, qclass = TWO_SHORTS.unpack_from(data, qend - 4)
    name = joined.decode("ascii") + "."
    wire = data[12 : qend - 4].lower() + data[qend - 4 : qend]
    if len(data) == qend:
        return Question(name, qtype, qclass, False, wire, qend, MIN_UDP_SIZE, key)
    if data[qend + 6]:  # EDNS version
        return None
    size = SHORT.unpack_from(data, qend + 3)[0]
    return Question(name, qtype, qclass, bool(data[qend + 7] & 0x80), wire, qend,
                    max(MIN_UDP_SIZE, min(size, OUR_UDP_SIZE)), key)


def parse_query(data: bytes) -> DNSRecord:
    """Parse a query with dnslib or raise `MalformedQuery` saying whether (and how) to answer it."""
    if len(data) < 12:
        raise MalformedQuery("shorter than a DNS header", None)
    _, flags, qdcount, *_ = HEADER.unpack_from(data)
    if flags & QR:
        raise MalformedQuery("a response, not a query", None)
    if (flags & OPCODE_MASK) >> 11 != OPCODE.QUERY:
        raise MalformedQuery("opcode not implemented", RCODE.NOTIMP)
    if qdcount != 1:
        raise MalformedQuery(f"{qdcount} questions (exactly one is allowed)", RCODE.FORMERR)
    try:
        request = DNSRecord.parse(data)
    except Exception as exc:  # dnslib raises a zoo of types on hostile input; all mean FORMERR
        raise MalformedQuery(f"unparseable: {exc}", RCODE.FORMERR) from None
    labels = request.q.qname.label
    if any(len(label) > 63 for label in labels) or sum(len(label) + 1 for label in labels) > 254:
        raise MalformedQuery("question name over the RFC 1035 length limits", RCODE.FORMERR)
    opts = [rr for rr in request.ar if rr.rtype == QTYPE.OPT]
    if len(opts) > 1 or (opts and str(opts[0].rname) != "."):
        raise MalformedQuery("bad OPT record", RCODE.FORMERR)
    if opts and opts[0].ttl >> 16 & 0xFF:
        raise MalformedQuery(f"EDNS version {opts[0].ttl >> 16 & 0xFF}", BADVERS)  # RFC 6891 6.1.3
    return request
