"""Pure text -> records: RFC 1035 master files, hosts files and single `--record` lines.

Every error is a `ZoneSyntaxError` carrying `file:line: reason`; nothing here touches the disk
(callers pass text), so the same code serves the watcher, `check` and the tests."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator

from dnslib import QTYPE, RDMAP, DNSBuffer, DNSLabel

from .errors import ZoneSyntaxError
from .records import ZoneRecord, normalize_name
from .reverse import ptr_name

_SPECIAL = re.compile(r'[;()"]')
_ADDRESS_FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_RE = re.compile(r"^(?:\d+[smhdw]?)+$", re.IGNORECASE)
MAX_TTL = 2**31 - 1

# Minimum and maximum rdata field counts for the types whose shape is fixed; dnslib silently
# ignores extra fields, and a typo that shifts a field must not load as something else.
_FIELDS = {
    "A": (1, 1), "AAAA": (1, 1), "CNAME": (1, 1), "PTR": (1, 1), "NS": (1, 1), "DNAME": (1, 1),
    "MX": (2, 2), "SRV": (4, 4), "SOA": (7, 7), "CAA": (3, 3), "TXT": (1, 10_000),
}
# Which rdata fields are domain names, made absolute here (dnslib ignores $ORIGIN for some).
_NAME_FIELDS = {"CNAME": (0,), "PTR": (0,), "NS": (0,), "DNAME": (0,), "MX": (1,), "SRV": (3,),
                "SOA": (0, 1)}


def parse_ttl(token: str) -> int:
    """`300`, `1h`, `1h30m`: RFC 2308 style units, as BIND accepts them."""
    if not _TTL_RE.match(token):
        raise ValueError(f"bad TTL {token!r}")
    if token.isdigit():
        value = int(token)
    else:
        value = sum(int(n) * _TTL_UNITS[u.lower()] for n, u in re.findall(r"(\d+)([smhdwSMHDW])", token))
    if value > MAX_TTL:
        raise ValueError(f"TTL {token} is over 2^31-1")
    return value


def _split_line(line: str, where: str, lineno: int) -> tuple[list[str], bool]:
    """Tokens of one physical line (a quoted string is one token that keeps its opening quote as
    a marker; comments dropped), and whether the line starts with blank space (owner omitted)."""
    indented = line[:1] in (" ", "\t")
    if not _SPECIAL.search(line):
        return line.split(), indented  # the common line: nothing quoted, no comment, no parentheses
    tokens: list[str] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i]
        if c in " \t\r":
            i += 1
        elif c == ";":
            break
        elif c in "()":
            tokens.append(c)
            i += 1
        elif c == '"':
            j, buf = i + 1, []
            while j < n and line[j] != '"':
                if line[j] == "\\" and j + 1 < n:
                    if line[j + 1 : j + 4].isdigit() and len(line[j + 1 : j + 4]) == 3:
                        buf.append(chr(int(line[j + 1 : j + 4])))
                        j += 4
                        continue
                    j += 1
                buf.append(line[j])
                j += 1
            if j >= n:
                raise ZoneSyntaxError(where, lineno, "unterminated quoted string")
            tokens.append('"' + "".join(buf))  # a leading quote marks "was quoted"
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in ' \t\r;()"':
                j += 1
            tokens.append(line[i:j])
            i = j
    return tokens, indented


def _logical_records(text: str, where: str) -> Iterator[tuple[int, list[str], bool]]:
    """Join parenthesized continuations: yield (first line number, tokens, owner omitted)."""
    pending: list[str] = []
    start, blank_owner, depth = 0, False, 0
    for lineno, line in enumerate(text.splitlines(), 1):
        tokens, indented = _split_line(line, where, lineno)
        if not pending and not depth:
            if not tokens:
                continue
            start, blank_owner = lineno, indented
        for tok in tokens:
            if tok == "(":
                depth += 1
            elif tok == ")":
                depth -= 1
                if depth < 0:
                    raise ZoneSyntaxError(where, lineno, "')' without '('")
            else:
                pending.append(tok)
        if depth == 0 and pending:
            yield start, pending, blank_owner
            pending = []
    if depth:
        raise ZoneSyntaxError(where, start, "'(' never closed")


def _absolute(token: str, origin: str | None, where: str, lineno: int) -> str:
    if token == "@":
        if origin is None:
            raise ZoneSyntaxError(where, lineno, "'@' used without $ORIGIN")
        return origin
    if token.endswith("."):
        name = token
    elif origin is None:
        raise ZoneSyntaxError(where, lineno, f"relative name {token!r} without $ORIGIN (end it with '.')")
    else:
        name = f"{token}.{origin}" if origin != "." else f"{token}."
    try:
        _check_name(name)
        return normalize_name(name)
    except Exception as exc:  # dnslib raises its own error types and ValueError
        raise ZoneSyntaxError(where, lineno, f"bad name {token!r}: {exc}") from None


def _check_name(name: str) -> None:
    """RFC 1035 limits on an absolute name: no empty label, labels <= 63 bytes, <= 255 in all."""
    if not name.isascii():
        DNSLabel(name)  # IDNA encoding and its own checks
        return
    if len(name) > 254:
        raise ValueError("name over 255 bytes")
    if name != "." and any(not label or len(label) > 63 for label in name[:-1].split(".")):
        raise ValueError("empty label or label over 63 bytes")


def _rdata(rtype: str, fields: list[str], origin: str | None, where: str, lineno: int):
    low, high = _FIELDS.get(rtype, (1, 10_000))
    if not low <= len(fields) <= high:
        want = str(low) if low == high else f"at least {low}"
        raise ZoneSyntaxError(where, lineno, f"{rtype} takes {want} field(s), got {len(fields)}")
    if rtype in _ADDRESS_FAMILIES:  # the bulk of most zones: validated and packed by the C library
        try:
            return RDMAP[rtype](tuple(socket.inet_pton(_ADDRESS_FAMILIES[rtype], fields[0])))
        except OSError:
            raise ZoneSyntaxError(where, lineno, f"bad {rtype} data {fields[0]!r}: not an "
                                  f"IPv{4 if rtype == 'A' else 6} address") from None
    plain = [f[1:] if f.startswith('"') else f for f in fields]
    for idx in _NAME_FIELDS.get(rtype, ()):
        plain[idx] = _absolute(plain[idx], origin, where, lineno)
    try:
        if rtype == "CAA":
            plain = [plain[0], plain[1], '"' + plain[2] + '"']
        rdata = RDMAP.get(rtype).fromZone(plain, DNSLabel(origin or ""))
        rdata.pack(DNSBuffer())  # range and length checks dnslib only does when packing
    except Exception as exc:
        raise ZoneSyntaxError(where, lineno, f"bad {rtype} data {' '.join(plain)!r}: {exc}") from None
    return rdata


def parse_zone(text: str, where: str, origin: str | None = None, default_ttl: int = 3600,
               view: str | None = None) -> list[ZoneRecord]:
    """Parse an RFC 1035 master file. `where` names the file in errors and provenance."""
    records: list[ZoneRecord] = []
    origin = normalize_name(origin) if origin else None
    ttl_default: int | None = None
    owner: str | None = None
    last_ttl = default_ttl
    for lineno, tokens, blank_owner in _logical_records(text, where):
        head = tokens[0].upper()
        if head == "$ORIGIN":
            if len(tokens) != 2:
                raise ZoneSyntaxError(where, lineno, "$ORIGIN takes one name")
            origin = _absolute(tokens[1], origin, where, lineno)
            continue
        if head == "$TTL":
            if len(tokens) != 2:
                raise ZoneSyntaxError(where, lineno, "$TTL takes one value")
            try:
                ttl_default = last_ttl = parse_ttl(tokens[1])
            except ValueError as exc:
                raise ZoneSyntaxError(where, lineno, str(exc)) from None
            continue
        if head.startswith("$"):
            raise ZoneSyntaxError(where, lineno, f"directive {tokens[0]} is not supported")
        rest = list(tokens)
        if not blank_owner:
            owner = _absolute(rest.pop(0), origin, where, lineno)
        elif owner is None:
            raise ZoneSyntaxError(where, lineno, "record without an owner name")
        ttl: int | None = None
        while rest and (rest[0][:1].isdigit() or rest[0].upper() in ("IN", "CH", "HS")):
            tok = rest.pop(0)
            if tok.upper() in ("CH", "HS"):
                raise ZoneSyntaxError(where, lineno, f"class {tok} is not served (only IN)")
            if tok.upper() != "IN":
                try:
                    ttl = parse_ttl(tok)
                except ValueError as exc:
                    raise ZoneSyntaxError(where, lineno, str(exc)) from None
        if not rest:
            raise ZoneSyntaxError(where, lineno, "missing record type")
        rtype = rest.pop(0).upper()
        if rtype not in RDMAP or not hasattr(QTYPE, rtype):
            raise ZoneSyntaxError(where, lineno, f"unknown or unsupported record type {rtype!r}")
        rdata = _rdata(rtype, rest, origin, where, lineno)
        if ttl is None:
            ttl = ttl_default if ttl_default is not None else last_ttl
        last_ttl = ttl
        records.append(ZoneRecord(owner, getattr(QTYPE, rtype), ttl, rdata, f"{where}:{lineno}", view))
    return records


def parse_record_line(line: str, where: str = "--record") -> list[ZoneRecord]:
    """One `--record` value: a single zonefile line with absolute names."""
    records = parse_zone(line, where, origin=None, default_ttl=60)
    if len(records) != 1:
        raise ZoneSyntaxError(where, 1, "expected exactly one record")
    return records


def parse_hosts(text: str, where: str, ttl: int = 60) -> list[ZoneRecord]:
    """`/etc/hosts` format: an address then names. Each name also gets a PTR for the address."""
    records: list[ZoneRecord] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        fields = raw.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) < 2:
            raise ZoneSyntaxError(where, lineno, "an address needs at least one name")
        try:
            address = ipaddress.ip_address(fields[0].split("%", 1)[0])
        except ValueError:
            raise ZoneSyntaxError(where, lineno, f"bad address {fields[0]!r}") from None
        rtype = "A" if address.version == 4 else "AAAA"
        for idx, token in enumerate(fields[1:]):
            name = _absolute(token if token.endswith(".") else token + ".", None, where, lineno)
            rdata = RDMAP[rtype].fromZone([str(address)])
            records.append(ZoneRecord(name, getattr(QTYPE, rtype), ttl, rdata, f"{where}:{lineno}"))
            if idx == 0:
                ptr = RDMAP["PTR"].fromZone([name])
                records.append(ZoneRecord(ptr_name(address), QTYPE.PTR, ttl, ptr, f"{where}:{lineno}"))
    return records

