"""Upstream replies cut down to the question's answer chain before they are relayed or cached,
as unbound's scrubber does: a reply may carry records nobody asked about (another owner's
address, an NS set and its glue for a name outside the chain), and a client that caches them
would be poisoned by whoever forged or corrupted that reply. Sans-IO: bytes in, bytes out
(docs/security-forwarding.md lists what is kept)."""

from __future__ import annotations

import struct

from ..dns.wire import HEADER

Name = tuple[bytes, ...]  # lower-case labels, the root left out: (b"www", b"example", b"com")

A, NS, CNAME, SOA, MX, AAAA, SRV, DNAME, DS, RRSIG, NSEC, NSEC3, SVCB, HTTPS, ANY = (
    1, 2, 5, 6, 15, 28, 33, 39, 43, 46, 47, 50, 64, 65, 255)
_RR_FIXED = struct.Struct("!HHIH")
_MAX_HOPS = 64
# Where a name starts in the record data of the types whose targets matter here.
_TARGET_AT = {NS: 0, CNAME: 0, DNAME: 0, MX: 2, SRV: 6, SVCB: 2, HTTPS: 2}
# Types whose record data may hold compressed names (RFC 3597 section 4): (names, fixed bytes before).
_COMPRESSIBLE = {NS: (1, 0), CNAME: (1, 0), 12: (1, 0), MX: (1, 2), SOA: (2, 0), DNAME: (1, 0)}
_ANSWER, _AUTHORITY, _ADDITIONAL = 0, 1, 2


class _Record:
    __slots__ = ("covered", "end", "owner", "rdata_at", "rtype", "section", "start", "target")

    def __init__(self, section: int, start: int, owner: Name, rtype: int, rdata_at: int, end: int) -> None:
        self.section = section
        self.start = start
        self.owner = owner
        self.rtype = rtype
        self.rdata_at = rdata_at
        self.end = end
        self.covered = 0  # for an RRSIG: the type it signs
        self.target: Name = ()  # for a type in `_TARGET_AT`, or an RRSIG's signer


def read_name(message: bytes, pos: int) -> tuple[Name, int]:
    """The name at `pos` (lower-case labels, pointers followed) and where it ends in place.
    Raises ValueError for a pointer loop or a name past the end."""
    labels: list[bytes] = []
    end = -1
    for _ in range(_MAX_HOPS):
        length = message[pos]
        if length >= 0xC0:
            if end < 0:
                end = pos + 2
            pointer = ((length & 0x3F) << 8) | message[pos + 1]
            if pointer >= pos:
                raise ValueError("a name's pointer does not point back")
            pos = pointer
            continue
        if length > 63:
            raise ValueError("a label of a reserved kind")
        if length == 0:
            return tuple(labels), pos + 1 if end < 0 else end
        labels.append(message[pos + 1 : pos + 1 + length].lower())
        pos += length + 1
    raise ValueError("a name with too many pointers")


def _at_or_below(name: Name, zone: Name) -> bool:
    return len(name) >= len(zone) and name[len(name) - len(zone) :] == zone


def _records(message: bytes, pos: int, counts: tuple[int, int, int]) -> list[_Record]:
    found = []
    for section, count in enumerate(counts):
        for _ in range(count):
            start = pos
            owner, pos = read_name(message, pos)
            rtype, _, _, rdlength = _RR_FIXED.unpack_from(message, pos)
            rdata_at = pos + 10
            pos = rdata_at + rdlength
            if pos > len(message):
                raise IndexError("record data runs past the end of the message")
            record = _Record(section, start, owner, rtype, rdata_at, pos)
            if rtype in _TARGET_AT:
                record.target = read_name(message, rdata_at + _TARGET_AT[rtype])[0]
            elif rtype == RRSIG:
                record.covered = struct.unpack_from("!H", message, rdata_at)[0]
                record.target = read_name(message, rdata_at + 18)[0]
            found.append(record)
    return found


def _chain(qname: Name, answers: list[_Record]) -> set[Name]:
    """The question's name and every name a CNAME or DNAME of the answer section leads to."""
    chain = {qname}
    grew = True
    while grew:
        grew = False
        for record in answers:
            if record.rtype == CNAME and record.owner in chain and record.target not in chain:
                chain.add(record.target)
                grew = True
            elif record.rtype == DNAME:
                for name in list(chain):
                    if len(name) > len(record.owner) and _at_or_below(name, record.owner):
                        synthesized = name[: len(name) - len(record.owner)] + record.target
                        if synthesized not in chain and len(synthesized) < 128:
                            chain.add(synthesized)
                            grew = True
    return chain


def _above_chain(name: Name, chain: set[Name]) -> bool:
    return any(_at_or_below(member, name) for member in chain)


def _kept(records: list[_Record], qname: Name, qtype: int, rcode: int) -> list[bool]:
    """Which records stay. Answers: the chain's records of the asked type, CNAME or RRSIG, and
    DNAMEs (with RRSIGs) above it. Authority: an SOA, DS or NS set (not beside a negative answer)
    above the chain, and NSEC/NSEC3 signed by a zone above it. Additional: the addresses of names
    a kept NS, MX, SRV, SVCB or HTTPS record points to."""
    answers = [r for r in records if r.section == _ANSWER]
    chain = _chain(qname, answers)
    kept = []
    for record in answers:
        rtype = record.rtype
        if record.owner in chain:
            keep = rtype in (qtype, CNAME, RRSIG) or qtype == ANY
        else:
            dname = rtype == DNAME or (rtype == RRSIG and record.covered == DNAME)
            keep = dname and any(len(n) > len(record.owner) and _at_or_below(n, record.owner) for n in chain)
        kept.append(keep)
    authority = [r for r in records if r.section == _AUTHORITY]
    # No NS set beside a negative answer (NXDOMAIN, or NODATA: an SOA and no answer), as unbound.
    negative = rcode == 3 or (rcode == 0 and not any(kept) and any(r.rtype == SOA for r in authority))
    signed = {(r.owner, r.covered) for r in authority
              if r.rtype == RRSIG and _above_chain(r.target, chain) and _at_or_below(r.owner, r.target)}
    targets = set()
    for record in authority:
        rtype = record.covered if record.rtype == RRSIG else record.rtype
        if rtype in (NSEC, NSEC3):
            keep = (record.owner, rtype) in signed
        elif rtype in (SOA, DS):
            keep = _above_chain(record.owner, chain)
        elif rtype == NS:
            keep = not negative and _above_chain(record.owner, chain)
        else:
            keep = False
        kept.append(keep)
        if keep and record.rtype == NS:
            targets.add(record.target)
    for record, keep in zip(answers, kept, strict=False):
        if keep and record.rtype in _TARGET_AT and record.rtype not in (CNAME, DNAME):
            targets.add(record.target)
    for record in records[len(answers) + len(authority) :]:
        rtype = record.covered if record.rtype == RRSIG else record.rtype
        kept.append(rtype in (A, AAAA) and record.owner in targets)
    return kept


def scrubbed(message: bytes, question_end: int) -> bytes:
    """`message` (a reply to one question ending at `question_end`, its OPT already taken out)
    with the records outside the question's answer chain dropped; `message` itself, byte for
    byte, when none are (else written anew, names uncompressed). Raises ValueError, IndexError
    or struct.error for a message that cannot be read."""
    _, flags, _, an, ns, ar = HEADER.unpack_from(message)
    qtype = struct.unpack_from("!H", message, question_end - 4)[0]
    if not ns and not ar and _answers_only_the_question(message, question_end, an, qtype):
        return message  # the common case, checked without reading a name
    qname = read_name(message, 12)[0]
    records = _records(message, question_end, (an, ns, ar))
    kept = _kept(records, qname, qtype, flags & 0xF)
    if all(kept):
        return message
    counts = [0, 0, 0]
    body = bytearray()
    for record, keep in zip(records, kept, strict=True):
        if keep:
            counts[record.section] += 1
            body += _uncompressed(message, record, qname)
    return message[:6] + struct.pack("!HHH", *counts) + message[12:question_end] + bytes(body)


def _answers_only_the_question(message: bytes, pos: int, count: int, qtype: int) -> bool:
    """Whether each of `count` records from `pos` is owned by the question's name (a pointer to
    it) and of the asked type: then nothing can be outside the chain."""
    for _ in range(count):
        if message[pos : pos + 2] != b"\xc0\x0c":
            return False
        rtype, _, _, rdlength = _RR_FIXED.unpack_from(message, pos + 2)
        if rtype != qtype:
            return False
        pos += 12 + rdlength
    return pos == len(message)


def _wire(name: Name) -> bytes:
    return b"".join(bytes((len(label),)) + label for label in name) + b"\x00"


def _uncompressed(message: bytes, record: _Record, qname: Name) -> bytes:
    """One record as it stands alone: owner and the names in its data written out (an owner
    that is the question's name points to it, so it keeps the asker's case), the rest as it
    came."""
    fixed = message[record.rdata_at - 10 : record.rdata_at - 2]
    rdata = message[record.rdata_at : record.end]
    names = _COMPRESSIBLE.get(record.rtype)
    if names is not None:
        count, before = names
        pos = record.rdata_at + before
        parts = [message[record.rdata_at : pos]]
        for _ in range(count):
            name, pos = read_name(message, pos)
            parts.append(_wire(name))
        parts.append(message[pos : record.end])
        rdata = b"".join(parts)
    owner = b"\xc0\x0c" if record.owner == qname else _wire(record.owner)
    return owner + fixed + struct.pack("!H", len(rdata)) + rdata
