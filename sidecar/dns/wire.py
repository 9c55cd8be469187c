"""Sans-IO DNS message handling: bytes in, bytes out, no sockets and no clock.

Two speeds live here. The slow path parses with dnslib and builds replies from an `Answer`.
The fast path (`question_key`, `patch_reply`) reads only the header and question by hand, so
a packet-cache hit never touches dnslib."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, replace

import dns.name
from dnslib import EDNS0, OPCODE, QTYPE, RCODE, RR, DNSHeader, DNSRecord

from ..api import Answer
from ..errors import MalformedQuery

HEADER = struct.Struct("!HHHHHH")
OUR_UDP_SIZE = 1232  # DNS flag day 2020: avoids IP fragmentation on every common path
MIN_UDP_SIZE = 512
# A plain query is a header, a name of at most 255 bytes and an OPT record whose options (a
# cookie, padding) fit in the rest: anything longer takes the parser and is never a cache key.
MAX_PLAIN_QUERY = 512
DO_BIT = 0x8000
BADVERS = 16  # RFC 6891: an extended rcode, its upper eight bits carried in the OPT record
_QR, _OPCODE_MASK, _TC = 0x8000, 0x7800, 0x0200
_UPDATE = 5 << 11  # the opcode, in place in the flags
_OPT = int(QTYPE.OPT)  # a plain int for the byte-level walks: dnslib's QTYPE lookups are slow
# Compiled once: struct's format cache lookup costs as much as the unpacking on the hot path.
_RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdata length
_FLAGS_AND_COUNTS = struct.Struct("!HHHHH")
_SHORT = struct.Struct("!H")
_TWO_SHORTS = struct.Struct("!HH")
_FLAGS_AND_COUNTS_OUT = struct.Struct("!5H")
# Our OPT record, packed once: root owner, our UDP size, no options; indexed by the DO bit.
OUR_OPT = (b"\x00" + _RR_FIXED.pack(_OPT, OUR_UDP_SIZE, 0, 0), b"\x00" + _RR_FIXED.pack(_OPT, OUR_UDP_SIZE, DO_BIT, 0))


@dataclass(frozen=True, slots=True)
class QuestionKey:
    """A normalized query (ID dropped, name lower-cased, EDNS reduced to size and DO bit) and
    where its question section ends, so a cached reply can take the asker's bytes back."""

    key: bytes
    question_end: int


def question_key(data: bytes) -> QuestionKey | None:
    """The packet-cache key of a plain query, or None when the packet needs the full parser
    (not a query, several questions, compression in the question, other additional records,
    anything after them, over `MAX_PLAIN_QUERY` bytes)."""
    if not 17 <= len(data) <= MAX_PLAIN_QUERY:
        return None
    flags, qdcount, ancount, nscount, arcount = _FLAGS_AND_COUNTS.unpack_from(data, 2)
    if flags & (_QR | _OPCODE_MASK) or qdcount != 1 or ancount or nscount or arcount > 1:
        return None
    pos, end = 12, len(data)
    while True:
        if pos >= end:
            return None
        length = data[pos]
        if length == 0:
            break
        if length > 63:
            return None
        pos += length + 1
    qend = pos + 5
    if qend > end:
        return None
    if arcount == 0:
        return QuestionKey(data[2:12] + data[12:qend].lower(), qend) if qend == end else None
    # Exactly one additional record: it must be a root-owned OPT; keep size and DO bit only.
    if end < qend + 11 or data[qend] != 0 or data[qend + 1 : qend + 3] != b"\x00\x29" \
            or qend + 11 + _SHORT.unpack_from(data, qend + 9)[0] != end:
        return None
    edns = data[qend + 3 : qend + 5] + bytes((data[qend + 7] & 0x80, data[qend + 6]))
    return QuestionKey(data[2:12] + data[12:qend].lower() + edns, qend)


@dataclass(frozen=True, slots=True)
class PlainQuestion:
    """What answering needs from a query's question: the name as asked, type, class, DO bit, the
    client's UDP limit, and the packet-cache key. Read by hand (no dnslib) from a plain query by
    `plain_question`; the handler fills one from dnslib's parse for any other query, and then
    `qkey` is None when the query has no packet-cache key."""

    name: str
    qtype: int
    qclass: int
    dnssec_ok: bool
    udp_limit: int
    qkey: QuestionKey | None


# Printable ASCII but space and the characters a name's presentation form escapes (`\\"();@$`):
# for these names the text is the key form (`records.name_key`) as it is.
_PLAIN_NAME = re.compile(rb"[!#%-'*-:<-?A-\[\]-~]*")


def plain_question(data: bytes) -> PlainQuestion | None:
    """The question of a plain query, or None when it needs the full parser (anything unusual:
    a label with a dot, a space or another character that a name's presentation form escapes;
    an over-long name; an EDNS version other than 0)."""
    qkey = question_key(data)
    if qkey is None:
        return None
    qend = qkey.question_end
    labels, pos = [], 12
    while data[pos]:
        labels.append(data[pos + 1 : pos + 1 + data[pos]])
        pos += data[pos] + 1
    joined = b".".join(labels)
    if qend - 16 > 255 or joined.count(b".") != max(len(labels) - 1, 0) or not _PLAIN_NAME.fullmatch(joined):
        return None
    qtype, qclass = _TWO_SHORTS.unpack_from(data, qend - 4)
    name = joined.decode("ascii") + "."
    if len(data) == qend:
        return PlainQuestion(name, qtype, qclass, False, MIN_UDP_SIZE, qkey)
    if data[qend + 6]:  # EDNS version
        return None
    size = _SHORT.unpack_from(data, qend + 3)[0]
    return PlainQuestion(name, qtype, qclass, bool(data[qend + 7] & 0x80),
                         max(MIN_UDP_SIZE, min(size, OUR_UDP_SIZE)), qkey)


def patch_reply(cached: bytes, query: bytes, question_end: int) -> bytes:
    """A cached reply made the asker's own: its ID and its question bytes (the case it used)."""
    return query[:2] + cached[2:12] + query[12:question_end] + cached[question_end:]


def truncated_reply(data: bytes) -> bytes | None:
    """An empty TC reply echoing the question, built from the query's own bytes: what rate
    limiting "slips" so a real client retries over TCP. None for anything but a plain query."""
    qkey = question_key(data)
    if qkey is None:
        return None
    return data[:2] + _truncated_after_id(_SHORT.unpack_from(data, 2)[0], data[12 : qkey.question_end])


def _truncated_after_id(client_flags: int, question: bytes) -> bytes:
    """An empty TC reply but its ID: QR, TC and RA set, the client's opcode and RD echoed."""
    flags = _QR | _TC | (client_flags & (_OPCODE_MASK | 0x0100)) | 0x0080
    return _FLAGS_AND_COUNTS_OUT.pack(flags, 1, 0, 0, 0) + question


def parse_query(data: bytes) -> DNSRecord:
    """Parse a query or raise `MalformedQuery` saying whether (and how) to answer it."""
    if len(data) < 12:
        raise MalformedQuery("shorter than a DNS header", None)
    _, flags, qdcount, *_ = HEADER.unpack_from(data)
    if flags & _QR:
        raise MalformedQuery("a response, not a query", None)
    if (flags & _OPCODE_MASK) >> 11 != OPCODE.QUERY:
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


def question_name(request: DNSRecord) -> str:
    """The question's name in presentation form (RFC 1035 5.1 escapes, as dnspython writes it),
    the form zone keys take: `a\\.b` for a label holding a dot."""
    return dns.name.Name([*request.q.qname.label, b""]).to_text()


def error_reply(data: bytes, rcode: int) -> bytes:
    """The reply to a query we will not answer (ID, opcode and RD echoed; RA only to a standard
    query, no other flag): with the query's question and an OPT record of ours (EDNS version 0,
    the extended rcode's upper bits, the client's DO bit) when the query's question and OPT can
    be read and it is not an UPDATE, else the header alone. So Knot DNS answers, and RFC 6891
    6.1.3 wants for BADVERS."""
    qid, flags, qdcount, ancount, nscount, arcount = HEADER.unpack_from(data)
    opcode = flags & _OPCODE_MASK
    out = _QR | opcode | (flags & 0x0100) | (0 if opcode else 0x0080) | (rcode & 0xF)
    # An UPDATE's "question" is its zone section, whose rules (an SOA type) a client checks.
    qend = _question_end(data) if qdcount == 1 and opcode != _UPDATE else None
    if qend is None:
        return HEADER.pack(qid, out, 0, 0, 0, 0)
    question, opt = data[12:qend], b""
    if arcount == 1 and not ancount and not nscount and data[qend : qend + 3] == b"\x00\x00\x29" \
            and len(data) >= qend + 11:
        opt = b"\x00" + _RR_FIXED.pack(_OPT, OUR_UDP_SIZE, (rcode >> 4) << 24 | (data[qend + 7] & 0x80) << 8, 0)
    return HEADER.pack(qid, out, 1, 0, 0, 1 if opt else 0) + question + opt


def _question_end(data: bytes) -> int | None:
    """Where the first question of `data` ends, if it is a plain one (no compression) that fits."""
    pos, end = 12, len(data)
    while pos < end and data[pos]:
        if data[pos] > 63:
            return None
        pos += data[pos] + 1
    return pos + 5 if pos + 5 <= end else None


def client_opt(request: DNSRecord) -> RR | None:
    return next((rr for rr in request.ar if rr.rtype == QTYPE.OPT), None)


def dnssec_ok(request: DNSRecord) -> bool:
    opt = client_opt(request)
    return bool(opt and opt.ttl & DO_BIT)


def udp_limit(request: DNSRecord) -> int:
    """Largest UDP reply this client can take: its EDNS size, never below 512 nor above ours."""
    opt = client_opt(request)
    if opt is None:
        return MIN_UDP_SIZE
    return max(MIN_UDP_SIZE, min(opt.rclass, OUR_UDP_SIZE))


def build_reply(request: DNSRecord, answer: Answer, limit: int | None) -> bytes:
    """Pack `answer` as the reply to `request`; over `limit` bytes, a TC reply with no records
    (RFC 2181 9: the client retries over TCP rather than use a partial set)."""
    header = DNSHeader(id=request.header.id, qr=1, aa=int(answer.authoritative), ra=1,
                       rd=request.header.rd, cd=request.header.cd, rcode=answer.rcode & 0xF)
    reply = DNSRecord(header, q=request.q)
    reply.rr.extend(answer.answer)
    reply.auth.extend(answer.authority)
    reply.ar.extend(rr for rr in answer.additional if rr.rtype != QTYPE.OPT)
    opt = client_opt(request)
    if opt is not None:
        reply.add_ar(EDNS0(udp_len=OUR_UDP_SIZE, flags="do" if opt.ttl & DO_BIT else ""))
    packed = bytes(reply.pack())
    if limit is None or len(packed) <= limit:
        return packed
    reply.header.tc = 1
    reply.rr, reply.auth = [], []
    reply.ar = [rr for rr in reply.ar if rr.rtype == QTYPE.OPT]
    return bytes(reply.pack())


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


def relay_reply(upstream: bytes, query: bytes, qkey: QuestionKey | None, limit: int | None) -> bytes | None:
    """The upstream's reply bytes (its OPT record already taken out by `without_opt`) made the
    answer to `query` (whose `question_key` the caller already has), as `RelayFrame.reply` makes
    it. None when the reply is not for this exact question; the caller then parses and builds the
    reply instead."""
    if qkey is None or len(upstream) < 12:
        return None
    qend = qkey.question_end
    if not same_question(upstream[12:qend], query[12:qend]):
        return None
    return RelayFrame.of(query, qkey, limit).reply(query[:2], upstream)


_ECHOED = _OPCODE_MASK | 0x0100 | 0x0010  # what a relayed reply keeps of the client's flags: opcode, RD, CD


def _reply_heads(echoed: int) -> tuple[bytes, ...]:
    """A relayed reply's flags and QDCOUNT for each value of the upstream's AD and rcode bits
    (flags & 0x2F): QR, the client's `echoed` bits, RA."""
    flags = _QR | echoed | 0x0080
    return tuple(_TWO_SHORTS.pack(flags | upstream, 1) for upstream in range(0x30))


# By the client's echoed bits, so whatever else a query sets cannot grow it: plain queries (opcode
# 0) have four.
_REPLY_HEADS: dict[int, tuple[bytes, ...]] = {}


@dataclass(frozen=True, slots=True)
class RelayFrame:
    """What a relayed reply takes from its query but the ID, worked out once: the question bytes
    (the client's case), RD and CD bits, our OPT record if the client sent one, and its UDP
    limit. The ID comes with each query; the upstream gives the rest: its records, rcode and AD
    bit. Every query with the same bytes but its ID gets its replies from the same frame, so a
    question relayed again and again does no header arithmetic at all."""

    heads: tuple[bytes, ...]  # `_reply_heads` of the client's flags
    question: bytes
    question_end: int
    opt: bytes  # our OPT record, or b"" for a client without EDNS
    limit: int | None  # None over TCP
    truncated: bytes  # the empty TC reply after its ID, for a reply over `limit`

    @classmethod
    def of(cls, query: bytes, qkey: QuestionKey, limit: int | None) -> RelayFrame:
        qend = qkey.question_end
        client_flags = _SHORT.unpack_from(query, 2)[0]
        echoed = client_flags & _ECHOED
        heads = _REPLY_HEADS.get(echoed)
        if heads is None:
            heads = _REPLY_HEADS[echoed] = _reply_heads(echoed)
        # A plain query holds nothing after its question but its OPT record.
        opt = OUR_OPT[query[qend + 7] >> 7] if len(query) > qend else b""
        question = query[12:qend]
        return cls(heads, question, qend, opt, limit, _truncated_after_id(client_flags, question))

    def reply(self, qid: bytes, upstream: bytes) -> bytes:
        """`upstream`, a reply to this frame's question with its OPT taken out, as the reply to
        the query `qid` names; over the limit, an empty TC reply."""
        head = self.heads[upstream[3] & 0x2F]
        if self.opt:
            additional = _SHORT.pack(_SHORT.unpack_from(upstream, 10)[0] + 1)
            reply = qid + head + upstream[6:10] + additional + self.question + upstream[self.question_end:] + self.opt
        else:
            reply = qid + head + upstream[6:12] + self.question + upstream[self.question_end:]
        if self.limit is not None and len(reply) > self.limit:
            return qid + self.truncated
        return reply


def same_question(found: bytes, asked: bytes) -> bool:
    """Whether two questions in wire form (name, then type and class) are the same: the name's
    case aside, the type and class bytes exactly (folding them would make type 65, the bytes
    00 41, into type 97). The plain comparison comes first: most replies echo the case asked."""
    return found == asked or (found[-4:] == asked[-4:] and found[:-4].lower() == asked[:-4].lower())


def without_opt(message: bytes, question_end: int | None = None) -> tuple[bytes, int]:
    """A packed reply with its OPT record taken out (ARCOUNT lowered to match), and the smallest
    TTL of the records left (0 when none), in one walk: what relaying an upstream's reply needs.
    Its OPT answered our EDNS, not the client's: `relay_reply` gives the client ours. A caller
    that has matched the reply's question passes where it ends, and the walk starts there. The
    walk is `_records` written out: this runs once per relayed reply."""
    if question_end is None:
        question_end = _records_start(message)
    _, _, _, an, ns, ar = HEADER.unpack_from(message)
    unpack, pos, smallest, opt_at, opt_end = _RR_FIXED.unpack_from, question_end, -1, -1, 0
    for _ in range(an + ns + ar):
        at, first = pos, message[pos]
        pos = pos + 2 if first >= 0xC0 else pos + 1 if first == 0 else _skip_name(message, pos)
        rtype, _, ttl, rdlength = unpack(message, pos)
        pos += 10 + rdlength
        if rtype == _OPT:
            opt_at, opt_end = at, pos
        elif ttl < smallest or smallest < 0:
            smallest = ttl
    if pos > len(message):
        raise IndexError("record data runs past the end of the message")
    if opt_at >= 0:
        message = message[:10] + _SHORT.pack(ar - 1) + message[12:opt_at] + message[opt_end:]
    return message, smallest if smallest > 0 else 0


def ttl_offsets(message: bytes) -> list[tuple[int, int]]:
    """(offset, ttl) of every TTL field in a packed message except OPT's, so a cached copy can
    count its TTLs down without being parsed again."""
    return [(ttl_at, ttl) for _, ttl_at, rtype, ttl, _ in _records(message) if rtype != _OPT]


def _records(message: bytes) -> list[tuple[int, int, int, int, int]]:
    """Where each record of a packed message starts, where its TTL field is, its type and TTL,
    and where it ends. A record that runs past the end raises IndexError, a cut-off one
    IndexError or struct.error."""
    _, _, _, an, ns, ar = HEADER.unpack_from(message)
    pos = _records_start(message)
    unpack, found = _RR_FIXED.unpack_from, []
    for _ in range(an + ns + ar):
        start, first = pos, message[pos]
        # An owner name is most often a compression pointer to the question, or the root (OPT).
        pos = pos + 2 if first >= 0xC0 else pos + 1 if first == 0 else _skip_name(message, pos)
        rtype, _, ttl, rdlength = unpack(message, pos)
        found.append((start, pos + 4, rtype, ttl, pos + 10 + rdlength))
        pos += 10 + rdlength
    if pos > len(message):
        raise IndexError("record data runs past the end of the message")
    return found


def _records_start(message: bytes) -> int:
    """Where the records of a packed message start: after its questions."""
    pos = 12
    for _ in range(_SHORT.unpack_from(message, 4)[0]):
        pos = _skip_name(message, pos) + 4
    return pos


def count_down(message: bytes, offsets: list[tuple[int, int]], elapsed: int) -> bytes:
    """A copy of `message` with each TTL lowered by `elapsed` seconds (never below zero)."""
    patched = bytearray(message)
    for offset, ttl in offsets:
        struct.pack_into("!I", patched, offset, max(0, ttl - elapsed))
    return bytes(patched)


def _skip_name(message: bytes, pos: int) -> int:
    while True:
        length = message[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += length + 1


def frame(message: bytes) -> bytes:
    """TCP framing (RFC 1035 4.2.2): a two-byte length before each message."""
    return struct.pack("!H", len(message)) + message
