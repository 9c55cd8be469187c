"""An upstream's reply relayed to a client as the upstream sent it: its records, rcode and AD bit
kept byte for byte; the ID, flags, question case and OPT record made the client's. Nothing is
parsed or packed again, so a type no library knows passes untouched."""

from __future__ import annotations

from dataclasses import dataclass

from .question import Question
from .reply import truncated_after_id
from .wire import (
    HEADER,
    OPCODE_MASK,
    OPT,
    OUR_OPT,
    QR,
    RA,
    RD,
    RR_FIXED,
    SHORT,
    TWO_SHORTS,
    records_start,
    same_question,
    skip_name,
)

_ECHOED = OPCODE_MASK | RD | 0x0010  # what a relayed reply keeps of the client's flags: opcode, RD, CD


def without_opt(message: bytes, question_end: int | None = None) -> tuple[bytes, int]:
    """A packed reply with its OPT record taken out (ARCOUNT lowered to match), and the smallest
    TTL of the records left (0 when none). Its OPT answered our EDNS, not the client's: the
    client gets ours. A caller that has matched the reply's question passes where it ends. The
    walk is `record_spans` written out: it runs once per relayed reply."""
    _, _, _, an, ns, ar = HEADER.unpack_from(message)
    unpack, smallest, opt_at, opt_end = RR_FIXED.unpack_from, -1, -1, 0
    pos = records_start(message) if question_end is None else question_end
    for _ in range(an + ns + ar):
        at, first = pos, message[pos]
        pos = pos + 2 if first >= 0xC0 else pos + 1 if first == 0 else skip_name(message, pos)
        rtype, _, ttl, rdlength = unpack(message, pos)
        pos += 10 + rdlength
        if rtype == OPT:
            opt_at, opt_end = at, pos
        elif ttl < smallest or smallest < 0:
            smallest = ttl
    if pos > len(message):
        raise IndexError("record data runs past the end of the message")
    if opt_at >= 0:
        message = message[:10] + SHORT.pack(ar - 1) + message[12:opt_at] + message[opt_end:]
    return message, smallest if smallest > 0 else 0


def _reply_heads(echoed: int) -> tuple[bytes, ...]:
    """A relayed reply's flags and QDCOUNT for each value of the upstream's AD and rcode bits
    (flags & 0x2F): QR, the client's `echoed` bits, RA."""
    flags = QR | echoed | RA
    return tuple(TWO_SHORTS.pack(flags | upstream, 1) for upstream in range(0x30))


# By the client's echoed bits, so whatever else a query sets cannot grow it: plain queries (opcode
# 0) have four.
_REPLY_HEADS: dict[int, tuple[bytes, ...]] = {}


@dataclass(frozen=True, slots=True)
class RelayFrame:
    """What a relayed reply takes from its query but the ID: the question bytes (the client's
    case), RD and CD bits, our OPT record if the client sent one, and its UDP limit (None over
    TCP). Made once per query, or once for every repeat of the same query bytes."""

    heads: tuple[bytes, ...]  # `_reply_heads` of the client's flags
    question: bytes
    question_end: int
    opt: bytes  # our OPT record, or b"" for a client without EDNS
    limit: int | None
    truncated: bytes  # the empty TC reply after its ID, for a reply over `limit`

    @classmethod
    def of(cls, query: bytes, question: Question, limit: int | None) -> RelayFrame:
        """The frame of a plain query (`question.key` is set)."""
        qend = question.end
        client_flags = SHORT.unpack_from(query, 2)[0]
        echoed = client_flags & _ECHOED
        heads = _REPLY_HEADS.get(echoed)
        if heads is None:
            heads = _REPLY_HEADS[echoed] = _reply_heads(echoed)
        # A plain query holds nothing after its question but its OPT record.
        opt = OUR_OPT[query[qend + 7] >> 7] if len(query) > qend else b""
        asked = query[12:qend]
        return cls(heads, asked, qend, opt, limit, truncated_after_id(client_flags, asked))

    def reply(self, qid: bytes, upstream: bytes) -> bytes:
        """`upstream`, a reply to this frame's question with its OPT taken out, as the reply to
        the query `qid` names; over the limit, an empty TC reply."""
        head = self.heads[upstream[3] & 0x2F]
        if self.opt:
            additional = SHORT.pack(SHORT.unpack_from(upstream, 10)[0] + 1)
            reply = qid + head + upstream[6:10] + additional + self.question + upstream[self.question_end:] + self.opt
        else:
            reply = qid + head + upstream[6:12] + self.question + upstream[self.question_end:]
        if self.limit is not None and len(reply) > self.limit:
            return qid + self.truncated
        return reply


def relay_reply(upstream: bytes, query: bytes, question: Question, limit: int | None) -> bytes | None:
    """The upstream's reply bytes (OPT already out: `without_opt`) made the reply to `query`.
    None when the query is not plain or the reply is not for its exact question: the caller then
    parses and builds the reply instead."""
    if question.key is None or len(upstream) < 12:
        return None
    qend = question.end
    if not same_question(upstream[12:qend], query[12:qend]):
        return None
    return RelayFrame.of(query, question, limit).reply(query[:2], upstream)
