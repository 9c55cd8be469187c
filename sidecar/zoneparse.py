"""Pure text -> records: RFC 1035 master files, hosts files and single `--record` lines.

Every error is a `ZoneSyntaxError` carrying `file:line: reason`; nothing here touches the disk
(callers pass text), so the same code serves the watcher, `check` and the tests."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterator

from dnslib import QTYPE, RD, RDMAP, DNSBuffer, DNSLabel

from .errors import ZoneSyntaxError
from .records import ZoneRecord, normalize_name
from .reverse import ptr_name

_SPECIAL = re.compile(r'[;()"]')
_ADDRESS_FAMILIES = {"A": socket.AF_INET, "AAAA": socket.AF_INET6}
_TYPE_CODES: dict[str, int] = {name: getattr(QTYPE, name) for name in RDMAP if hasattr(QTYPE, name)}
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
        if not depth and not _SPECIAL.search(line):  # the common line: one whole record, plain
            tokens = line.split()
            if tokens:
                yield lineno, tokens, line[:1] in (" ", "\t")
            continue
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
    """The normalized absolute form of an owner or rdata name; checked, since a typo must not
    load as some other name."""
    if token.endswith("."):
        name = token
    elif token == "@":
        if origin is None:
            raise ZoneSyntaxError(where, lineno, "'@' used without $ORIGIN")
        return origin
    elif origin is None:
        raise ZoneSyntaxError(where, lineno, f"relative name {token!r} without $ORIGIN (end it with '.')")
    else:
        name = f"{token}.{origin}" if origin != "." else f"{token}."
    try:
        return _checked(name)
    except Exception as exc:  # dnslib raises its own error types and ValueError
        raise ZoneSyntaxError(where, lineno, f"bad name {token!r}: {exc}") from None


def _checked(name: str) -> str:
    """RFC 1035 limits on an absolute name (no empty label, labels <= 63 bytes, <= 255 in all);
    the name lower-cased. Plain string tests, since nearly every name of a big zone passes them."""
    if not name.isascii():
        DNSLabel(name)  # IDNA encoding and its own checks
        return normalize_name(name)
    name = name.lower()
    if len(name) > 254:
        raise ValueError("name over 255 bytes")
    if name != "." and (name[0] == "." or ".." in name
                        or (len(name) > 64 and any(len(label) > 63 for label in name.split(".")))):
        raise ValueError("empty label or label over 63 bytes")
    return name


def _rdata(rtype: str, fields: list[str], origin: str | None, where: str, lineno: int) -> RD | bytes:
    """Validated rdata: an address in wire form (see `ZoneRecord.data`), else dnslib's object."""
    family = _ADDRESS_FAMILIES.get(rtype)
    if family is not None and len(fields) == 1:  # the bulk of most zones: checked by the C library
        try:
            return socket.inet_pton(family, fields[0])
        except OSError:
            raise ZoneSyntaxError(where, lineno, f"bad {rtype} data {fields[0]!r}: not an "
                                  f"IPv{4 if rtype == 'A' else 6} address") from None
    low, high = _FIELDS.get(rtype, (1, 10_000))
    if not low <= len(fields) <= high:
        want = str(low) if low == high else f"at least {low}"
        raise ZoneSyntaxError(where, lineno, f"{rtype} takes {want} field(s), got {len(fields)}")
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


class _MasterFile:
    """What an RFC 1035 master file carries from one record to the next: $ORIGIN, $TTL, the last
    owner and the last TTL."""

    def __init__(self, where: str, origin: str | None, default_ttl: int, view: str | None) -> None:
        self.where = where
        self.origin = normalize_name(origin) if origin else None
        self.view = view
        self.ttl_default: int | None = None
        self.last_ttl = default_ttl
        self.owner: str | None = None

    def directive(self, tokens: list[str], lineno: int) -> None:
        head = tokens[0].upper()
        if head == "$ORIGIN":
            if len(tokens) != 2:
                raise ZoneSyntaxError(self.where, lineno, "$ORIGIN takes one name")
            self.origin = _absolute(tokens[1], self.origin, self.where, lineno)
        elif head == "$TTL":
            if len(tokens) != 2:
                raise ZoneSyntaxError(self.where, lineno, "$TTL takes one value")
            self.ttl_default = self.last_ttl = self._ttl(tokens[1], lineno)
        else:
            raise ZoneSyntaxError(self.where, lineno, f"directive {tokens[0]} is not supported")

    def record(self, tokens: list[str], blank_owner: bool, lineno: int) -> ZoneRecord:
        """`[owner] [ttl] [class] type rdata...`."""
        if not blank_owner:
            self.owner = _absolute(tokens[0], self.origin, self.where, lineno)
        elif self.owner is None:
            raise ZoneSyntaxError(self.where, lineno, "record without an owner name")
        i, ttl = self._ttl_and_class(tokens, 0 if blank_owner else 1, lineno)
        rtype = tokens[i].upper()
        code = _TYPE_CODES.get(rtype)
        if code is None:
            raise ZoneSyntaxError(self.where, lineno, f"unknown or unsupported record type {rtype!r}")
        rdata = _rdata(rtype, tokens[i + 1:], self.origin, self.where, lineno)
        if ttl is None:
            ttl = self.ttl_default if self.ttl_default is not None else self.last_ttl
        self.last_ttl = ttl
        return ZoneRecord(self.owner, code, ttl, rdata, f"{self.where}:{lineno}", self.view)

    def _ttl_and_class(self, tokens: list[str], i: int, lineno: int) -> tuple[int, int | None]:
        """Step over the optional TTL and class (either order): the type's index, and the TTL."""
        ttl: int | None = None
        while i < len(tokens):
            token = tokens[i].upper()
            if token[:1].isdigit():
                ttl = self._ttl(tokens[i], lineno)
            elif token in ("CH", "HS"):
                raise ZoneSyntaxError(self.where, lineno, f"class {tokens[i]} is not served (only IN)")
            elif token != "IN":
                return i, ttl
            i += 1
        raise ZoneSyntaxError(self.where, lineno, "missing record type")

    def _ttl(self, token: str, lineno: int) -> int:
        try:
            return parse_ttl(token)
        except ValueError as exc:
            raise ZoneSyntaxError(self.where, lineno, str(exc)) from None


def parse_zone(text: str, where: str, origin: str | None = None, default_ttl: int = 3600,
               view: str | None = None) -> list[ZoneRecord]:
    """Parse an RFC 1035 master file. `where` names the file in errors and provenance."""
    state = _MasterFile(where, origin, default_ttl, view)
    records: list[ZoneRecord] = []
    for lineno, tokens, blank_owner in _logical_records(text, where):
        if tokens[0].startswith("$"):
            state.directive(tokens, lineno)
        else:
            records.append(state.record(tokens, blank_owner, lineno))
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
        rtype = QTYPE.A if address.version == 4 else QTYPE.AAAA
        for idx, token in enumerate(fields[1:]):
            name = _absolute(token if token.endswith(".") else token + ".", None, where, lineno)
            records.append(ZoneRecord(name, rtype, ttl, address.packed, f"{where}:{lineno}"))
            if idx == 0:
                ptr = RDMAP["PTR"].fromZone([name])
                records.append(ZoneRecord(ptr_name(address), QTYPE.PTR, ttl, ptr, f"{where}:{lineno}"))
    return records

