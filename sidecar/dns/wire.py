"""Packed DNS messages read and patched by hand: the header's layout, our OPT record, walks over
records, TCP framing. No dnslib, no sockets, no clock."""

from __future__ import annotations

import struct

HEADER = struct.Struct("!HHHHHH")
OUR_UDP_SIZE = 1232  # DNS flag day 2020: avoids IP fragmentation on every common path
MIN_UDP_SIZE = 512
DO_BIT = 0x8000
BADVERS = 16  # RFC 6891: an extended rcode, its upper eight bits carried in the OPT record
QR, OPCODE_MASK, TC, RD, RA = 0x8000, 0x7800, 0x0200, 0x0100, 0x0080
UPDATE = 5 << 11  # the opcode, in place in the flags
OPT = 41  # the OPT record's type, as a plain int: dnslib's QTYPE lookups are slow
RR_FIXED = struct.Struct("!HHIH")  # type, class, TTL, rdata length
SHORT = struct.Struct("!H")
TWO_SHORTS = struct.Struct("!HH")
FLAGS_AND_COUNTS = struct.Struct("!5H")
# Our OPT record, packed once: root owner, our UDP size, no options; indexed by the DO bit.
OUR_OPT = (b"\x00" + RR_FIXED.pack(OPT, OUR_UDP_SIZE, 0, 0), b"\x00" + RR_FIXED.pack(OPT, OUR_UDP_SIZE, DO_BIT, 0))


def frame(message: bytes) -> bytes:
    """TCP framing (RFC 1035 4.2.2): a two-byte length before each message."""
    return SHORT.pack(len(message)) + message


def same_question(found: bytes, asked: bytes) -> bool:
    """Whether two questions in wire form (name, then type and class) are the same: the name's
    case aside, the type and class bytes exactly (folding them would make type 65, the bytes
    00 41, into type 97)."""
    return found == asked or (found[-4:] == asked[-4:] and found[:-4].lower() == asked[:-4].lower())


def question_end(data: bytes) -> int | None:
    """Where the first question of `data` ends, if it is a plain one (no compression) that fits."""
    pos, end = 12, len(data)
    while pos < end and data[pos]:
        if data[pos] > 63:
            return None
        pos += data[pos] + 1
    return pos + 5 if pos + 5 <= end else None


def skip_name(message: bytes, pos: int) -> int:
    """Where the name at `pos` ends (after its last label or its compression pointer)."""
    while True:
        length = message[pos]
        if length == 0:
            return pos + 1
        if length & 0xC0 == 0xC0:
            return pos + 2
        pos += length + 1


def records_start(message: bytes) -> int:
    """Where the records of a packed message start: after its questions."""
    pos = 12
    for _ in range(SHORT.unpack_from(message, 4)[0]):
        pos = skip_name(message, pos) + 4
    return pos


def record_spans(message: bytes) -> list[tuple[int, int, int, int, int]]:
    """Where each record of a packed message starts, where its TTL field is, its type and TTL,
    and where it ends. A record that runs past the end raises IndexError, a cut-off one
    IndexError or struct.error."""
    _, _, _, an, ns, ar = HEADER.unpack_from(message)
    pos = records_start(message)
    unpack, found = RR_FIXED.unpack_from, []
    for _ in range(an + ns + ar):
        at, first = pos, message[pos]
        # An owner name is most often a compression pointer to the question, or the root (OPT).
        pos = pos + 2 if first >= 0xC0 else pos + 1 if first == 0 else skip_name(message, pos)
        rtype, _, ttl, rdlength = unpack(message, pos)
        found.append((at, pos + 4, rtype, ttl, pos + 10 + rdlength))
        pos += 10 + rdlength
    if pos > len(message):
        raise IndexError("record data runs past the end of the message")
    return found


def ttl_offsets(message: bytes) -> list[tuple[int, int]]:
    """(offset, ttl) of every TTL field in a packed message except OPT's, so a kept copy can
    count its TTLs down without being parsed again."""
    return [(ttl_at, ttl) for _, ttl_at, rtype, ttl, _ in record_spans(message) if rtype != OPT]


def count_down(message: bytes, offsets: list[tuple[int, int]], elapsed: int) -> bytes:
    """A copy of `message` with each TTL lowered by `elapsed` seconds (never below zero)."""
    patched = bytearray(message)
    for offset, ttl in offsets:
        struct.pack_into("!I", patched, offset, max(0, ttl - elapsed))
    return bytes(patched)
