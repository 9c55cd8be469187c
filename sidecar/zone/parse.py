"""Pure text -> records: RFC 1035 master files read as BIND reads them (docs/zonefiles.md), hosts
files and single `--record` lines.

dnspython parses every rdata and packs it in uncompressed wire form. Every error is a
`ZoneSyntaxError` carrying `file:line: reason`; nothing here touches the disk (callers pass text,
and a reader for `$INCLUDE`), so the same code serves the watcher, `check` and the tests."""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from ..errors import ZoneSyntaxError
from .records import ZoneRecord, name_key
from .reverse import ptr_name

_SPECIAL = re.compile(r'[;()"\\]')
_ADDRESS_FAMILIES = {dns.rdatatype.A: socket.AF_INET, dns.rdatatype.AAAA: socket.AF_INET6}
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_TTL_RE = re.compile(r"^(?:\d+[smhdw]?)+$", re.IGNORECASE)
# A name token that reads the same as text and as dnspython's presentation form: printable ASCII
# without escapes or the characters dnspython escapes when it prints a name.
_NEEDS_NAME_PARSER = re.compile(r'[^!#%&\'*+,\-./0-9:<=>?A-Z\[\]^_`a-z{|}~]')
MAX_TTL = 2**31 - 1
MAX_INCLUDE_DEPTH = 20
_IN = dns.rdataclass.IN
_SOA, _CNAME, _RRSIG = dns.rdatatype.SOA, dns.rdatatype.CNAME, dns.rdatatype.RRSIG
_SINGLETONS = frozenset({dns.rdatatype.SOA, dns.rdatatype.CNAME, dns.rdatatype.DNAME})
# Types BIND lets stand beside a CNAME (DNSSEC's own records about the name).
_BESIDE_CNAME = frozenset({dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.KEY, dns.rdatatype.SIG,
                           dns.rdatatype.NXT})
_GENERATE_FIELD = re.compile(r"\\\$|\$\{([^}]*)\}|\$")

_TYPES_SEEN: dict[str, int] = {}  # type tokens as written (`A`, `a`, `TYPE1`) -> their type

# `$INCLUDE`'s reader: (the file named, the including file) -> (its text, its name for messages).
IncludeReader = Callable[[str, str], tuple[str, str]]


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
    """Tokens of one physical line, each as written (quotes and escapes kept, for dnspython to
    read), comments dropped; and whether the line starts with blank space (owner omitted)."""
    indented = line[:1] in (" ", "\t")
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
            j = _closing_quote(line, i)
            if j < 0:
                raise ZoneSyntaxError(where, lineno, "unterminated quoted string")
            tokens.append(line[i : j + 1])
            i = j + 1
        else:
            j = i
            while j < n and line[j] not in " \t\r;()":
                if line[j] == '"':  # `key="a value"` (RFC 9460) is one token
                    close = _closing_quote(line, j)
                    if close < 0:
                        raise ZoneSyntaxError(where, lineno, "unterminated quoted string")
                    j = close + 1
                else:
                    j += 2 if line[j] == "\\" else 1
            tokens.append(line[i:j])
            i = j
    return tokens, indented


def _closing_quote(line: str, start: int) -> int:
    """Where the quoted string opening at `start` closes (escapes skipped), or -1."""
    j, n = start + 1, len(line)
    while j < n and line[j] != '"':
        j += 2 if line[j] == "\\" else 1
    return j if j < n else -1


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
    if depth:  # found at the end of the file, where BIND reports it
        raise ZoneSyntaxError(where, text.count("\n") + 1, f"'(' opened on line {start} never closed")


def _escaped_bytes(text: str) -> str:
    """`text` with every non-ASCII character written as `\\DDD` escapes of its UTF-8 bytes: BIND
    reads a master file as bytes, where dnspython would IDNA-encode a non-ASCII name."""
    return "".join(c if c.isascii() else "".join(f"\\{b:03d}" for b in c.encode()) for c in text)


def _checked(name: str) -> str:
    """RFC 1035 limits on an absolute plain name (no empty label, labels <= 63 bytes, <= 255 in
    all), lower-cased. Plain string tests, since nearly every name of a big zone passes them."""
    name = name.lower()
    if len(name) > 254:
        raise ValueError("name over 255 bytes")
    if name != "." and (name[0] == "." or ".." in name
                        or (len(name) > 64 and any(len(label) > 63 for label in name.split(".")))):
        raise ValueError("empty label or label over 63 bytes")
    return name


@dataclass(slots=True)
class _Origin:
    """The current $ORIGIN: its key form, and dnspython's (made when first needed)."""

    key: str | None
    _name: dns.name.Name | None = None

    @property
    def name(self) -> dns.name.Name | None:
        if self._name is None and self.key is not None:
            self._name = dns.name.from_text(self.key)
        return self._name


def _absolute(token: str, origin: _Origin, where: str, lineno: int) -> str:
    """The key form (see `records.name_key`) of an owner or $ORIGIN name; checked, since a typo
    must not load as some other name."""
    if token == "@":
        if origin.key is None:
            raise ZoneSyntaxError(where, lineno, "'@' used without $ORIGIN")
        return origin.key
    if not token.endswith(".") and origin.key is None:
        raise ZoneSyntaxError(where, lineno, f"relative name {token!r} without $ORIGIN (end it with '.')")
    try:
        if _NEEDS_NAME_PARSER.search(token) is None:
            return _checked(token if token.endswith(".") else f"{token}.{origin.key}" if origin.key != "."
                            else f"{token}.")
        return name_key(dns.name.from_text(_escaped_bytes(token).encode("ascii"), origin.name))
    except (ValueError, dns.exception.DNSException) as exc:
        raise ZoneSyntaxError(where, lineno, f"bad name {token!r}: {exc}") from None


def _rdata(rdtype: int, fields: list[str], origin: _Origin, where: str, lineno: int) -> bytes:
    """The rdata in uncompressed wire form, as dnspython reads it (addresses by `inet_pton`,
    proven equal)."""
    family = _ADDRESS_FAMILIES.get(rdtype)
    if family is not None and len(fields) == 1 and fields[0][:1] != "\\":
        try:
            return socket.inet_pton(family, fields[0])
        except OSError:
            raise ZoneSyntaxError(where, lineno, f"bad {dns.rdatatype.to_text(rdtype)} data {fields[0]!r}: "
                                  f"not an IPv{4 if family == socket.AF_INET else 6} address") from None
    text = " ".join(fields)
    try:
        rdata = dns.rdata.from_text(_IN, rdtype, _escaped_bytes(text), origin=origin.name, relativize=False)
        return rdata.to_wire()
    except dns.name.NeedAbsoluteNameOrOrigin:
        raise ZoneSyntaxError(where, lineno, f"relative name in {text!r} without $ORIGIN") from None
    except (dns.exception.DNSException, ValueError, TypeError, KeyError, IndexError) as exc:
        kind = dns.rdatatype.to_text(rdtype)
        raise ZoneSyntaxError(where, lineno, f"bad {kind} data {text!r}: {exc or type(exc).__name__}") from None


def _type_code(token: str) -> int | None:
    """The type a token names (a mnemonic or `TYPEnnn`), or None when it names none."""
    try:
        return dns.rdatatype.from_text(token)
    except (dns.exception.DNSException, ValueError):
        return None


class _MasterFile:
    """What a master file carries from one record to the next ($ORIGIN, $TTL, the last owner and
    TTL), and what the zone so far holds, for the per-file rules BIND applies while loading: one
    TTL per RRset (RFC 2181 5.2), CNAME beside other data, singleton types, records outside the
    zone's SOA."""

    def __init__(self, origin: str | None, default_ttl: int | None, view: str | None,
                 read_include: IncludeReader | None) -> None:
        self.origin = _Origin(name_key(dns.name.from_text(origin)) if origin else None)
        self.view = view
        self.read_include = read_include
        self.ttl_default: int | None = None
        self.last_ttl = default_ttl
        self.owner: str | None = None
        self.run, self.run_owner = 0, ""  # BIND's loader commits records at each change of owner
        self.retimed: set[tuple[str, int]] = set()  # RRsets a later run gave another TTL
        self.apex: str | None = None  # the SOA's owner, once seen
        self.records: list[ZoneRecord] = []
        # Per (name, type): [its TTL, the rdata seen (one, or a set), the run of lines with one
        # owner it was last given in]; lists, since a big zone makes one per name.
        self.rrsets: dict[tuple[str, int], list] = {}
        self.cnames: set[str] = set()
        self.others: set[str] = set()  # names holding data that may not stand beside a CNAME
        self.warnings: list[str] = []

    def read(self, text: str, where: str, depth: int = 0) -> None:
        for lineno, tokens, blank_owner in _logical_records(text, where):
            head = tokens[0]
            if head[0] == "$" and not blank_owner:
                self._directive(tokens, where, lineno, depth)
            else:
                self._record(tokens, blank_owner, where, lineno)

    def _directive(self, tokens: list[str], where: str, lineno: int, depth: int) -> None:
        head = tokens[0].upper()
        if head == "$ORIGIN":
            if len(tokens) != 2:
                raise ZoneSyntaxError(where, lineno, "$ORIGIN takes one name")
            self.origin = _Origin(_absolute(tokens[1], self.origin, where, lineno))
        elif head == "$TTL":
            if len(tokens) != 2:
                raise ZoneSyntaxError(where, lineno, "$TTL takes one value")
            self.ttl_default = self.last_ttl = self._ttl(tokens[1], where, lineno)
        elif head == "$INCLUDE":
            self._include(tokens, where, lineno, depth)
        elif head == "$GENERATE":
            self._generate(tokens, where, lineno)
        else:
            raise ZoneSyntaxError(where, lineno, f"unknown $ directive {tokens[0]}")

    def _include(self, tokens: list[str], where: str, lineno: int, depth: int) -> None:
        """`$INCLUDE file [origin]`: the file read in place; the origin and owner come back after
        it, as RFC 1035 section 5.1 and BIND have it."""
        if len(tokens) not in (2, 3):
            raise ZoneSyntaxError(where, lineno, "$INCLUDE takes a file name and an optional origin")
        if self.read_include is None:
            raise ZoneSyntaxError(where, lineno, "$INCLUDE is not allowed here")
        if depth >= MAX_INCLUDE_DEPTH:
            raise ZoneSyntaxError(where, lineno, f"$INCLUDE nested over {MAX_INCLUDE_DEPTH} deep")
        name = tokens[1][1:-1] if tokens[1].startswith('"') else tokens[1]
        saved = self.origin, self.owner
        if len(tokens) == 3:
            self.origin = _Origin(_absolute(tokens[2], self.origin, where, lineno))
        try:
            text, included = self.read_include(name, where)
        except OSError as exc:
            raise ZoneSyntaxError(where, lineno, f"{name}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ZoneSyntaxError(where, lineno, f"{name}: {exc}") from None
        self.read(text, included, depth + 1)
        self.origin, self.owner = saved

    def _generate(self, tokens: list[str], where: str, lineno: int) -> None:
        """`$GENERATE start-stop[/step] lhs [ttl] [class] type rhs`, `$` and `${offset,width,base}`
        replaced by each value of the range, as BIND does."""
        if len(tokens) < 5:
            raise ZoneSyntaxError(where, lineno, "$GENERATE takes a range, an owner, a type and rdata")
        found = re.fullmatch(r"(\d+)-(\d+)(?:/(\d+))?", tokens[1])
        if not found or int(found[1]) > int(found[2]) or (found[3] is not None and int(found[3]) == 0):
            raise ZoneSyntaxError(where, lineno, f"$GENERATE: bad range {tokens[1]!r}")
        start, stop, step = int(found[1]), int(found[2]), int(found[3] or 1)
        templates = [t[1:-1] if t.startswith('"') else t for t in tokens[2:]]
        for value in range(start, stop + 1, step):
            line = " ".join(_substitute(t, value, where, lineno) for t in templates)
            self._record(_split_line(line, where, lineno)[0], False, where, lineno)

    def _record(self, tokens: list[str], blank_owner: bool, where: str, lineno: int) -> None:
        """`[owner] [ttl] [class] type rdata...`, checked against the rules BIND loads by."""
        if not blank_owner:
            self.owner = _absolute(tokens[0], self.origin, where, lineno)
        elif self.owner is None:
            raise ZoneSyntaxError(where, lineno, "record without an owner name")
        i, ttl, rdtype = self._ttl_class_type(tokens, 0 if blank_owner else 1, where, lineno)
        wire = _rdata(rdtype, tokens[i + 1:], self.origin, where, lineno)
        if ttl is None:
            if self.ttl_default is not None:
                ttl = self.ttl_default
            elif self.last_ttl is not None:
                ttl = self.last_ttl
            elif rdtype == _SOA:
                ttl = self.ttl_default = int.from_bytes(wire[-4:])
                self.warnings.append(f"{where}:{lineno}: no TTL specified; using SOA MINTTL instead")
            else:
                raise ZoneSyntaxError(where, lineno, "no TTL specified; zone rejected")
        self.last_ttl = ttl
        name = self.owner
        if rdtype == _SOA:
            if self.apex is None:
                self.apex = name
                self._drop_outside(name)
            elif name != self.apex:
                if name.endswith("." + self.apex) or self.apex == ".":
                    raise ZoneSyntaxError(where, lineno, f"SOA record not at top of zone ({name})")
                self.warnings.append(f"{where}:{lineno}: ignoring out-of-zone data ({name})")
                return
        elif self.apex is not None and not _inside(name, self.apex):
            self.warnings.append(f"{where}:{lineno}: ignoring out-of-zone data ({name})")
            return
        if name != self.run_owner:
            self.run, self.run_owner = self.run + 1, name
        ttl = self._one_rrset(name, rdtype, ttl, wire, where, lineno)
        if ttl is not None:
            self.records.append(ZoneRecord(name, rdtype, ttl, wire, f"{where}:{lineno}", self.view))

    def _one_rrset(self, name: str, rdtype: int, ttl: int, wire: bytes, where: str, lineno: int) -> int | None:
        """The TTL the record is kept with, or None for a repeat; raises for what BIND refuses:
        more than one record of a singleton type, a CNAME beside other data. As BIND loads, the
        first TTL of a run of lines with one owner holds for the RRset (a different one is
        warned about), and a later run's replaces it for the whole RRset."""
        key = _rrset_key(name, rdtype, wire)
        rrset = self.rrsets.get(key)
        if rrset is None:
            self.rrsets[key] = [ttl, wire, self.run]
            if rdtype == _CNAME:
                self.cnames.add(name)
                if name in self.others:
                    raise ZoneSyntaxError(where, lineno, f"{name}: CNAME and other data")
            elif rdtype not in _BESIDE_CNAME:
                self.others.add(name)
                if name in self.cnames:
                    raise ZoneSyntaxError(where, lineno, f"{name}: CNAME and other data")
            return ttl
        first, wires, run = rrset
        if run != self.run:
            rrset[2] = self.run
            if ttl != first:
                rrset[0] = ttl
                self.retimed.add(key)
        elif ttl != first:
            self.warnings.append(f"{where}:{lineno}: {name}: TTL set to prior TTL ({first})")
        if isinstance(wires, bytes):
            wires = rrset[1] = {wires}
        if wire in wires:
            return None
        if rdtype in _SINGLETONS:
            raise ZoneSyntaxError(where, lineno, f"{name}: multiple RRs of singleton type")
        wires.add(wire)
        return rrset[0]

    def result(self) -> list[ZoneRecord]:
        """The records read, each RRset a later run gave another TTL carrying that one."""
        if not self.retimed:
            return self.records
        rrsets, retimed = self.rrsets, self.retimed
        return [replace(rec, ttl=rrsets[key][0]) if (key := _rrset_key(rec.name, rec.rtype, rec.wire)) in retimed
                else rec for rec in self.records]

    def _drop_outside(self, apex: str) -> None:
        """Records read before the SOA that lie outside its zone: dropped, each with a warning."""
        outside = [rec for rec in self.records if not _inside(rec.name, apex)]
        if not outside:
            return
        for rec in outside:
            self.warnings.append(f"{rec.origin}: ignoring out-of-zone data ({rec.name})")
            self.rrsets.pop(_rrset_key(rec.name, rec.rtype, rec.wire), None)
        self.records = [rec for rec in self.records if _inside(rec.name, apex)]

    def _ttl_class_type(self, tokens: list[str], i: int, where: str, lineno: int) -> tuple[int, int | None, int]:
        """Step over the optional TTL and class (either order): the type's index, the TTL, the type."""
        ttl: int | None = None
        while i < len(tokens):
            rdtype = _TYPES_SEEN.get(tokens[i])
            if rdtype is not None:
                return i, ttl, rdtype
            token = tokens[i].upper()
            if token[:1].isdigit():
                ttl = self._ttl(tokens[i], where, lineno)
            elif token in ("IN", "CLASS1"):
                pass
            elif token in ("CH", "HS", "CHAOS", "HESIOD", "NONE", "ANY") or (
                    token.startswith("CLASS") and token[5:].isdigit()):
                raise ZoneSyntaxError(where, lineno, f"class {tokens[i]!r} != zone class 'IN'")
            else:
                rdtype = _type_code(token)
                if rdtype is None:
                    raise ZoneSyntaxError(where, lineno, f"unknown RR type {tokens[i]!r}")
                if dns.rdatatype.is_metatype(rdtype) or rdtype == dns.rdatatype.OPT:
                    raise ZoneSyntaxError(where, lineno, f"meta type {tokens[i]} in a zone")
                if len(_TYPES_SEEN) < 4096:
                    _TYPES_SEEN[tokens[i]] = rdtype
                return i, ttl, rdtype
            i += 1
        raise ZoneSyntaxError(where, lineno, "missing record type")

    @staticmethod
    def _ttl(token: str, where: str, lineno: int) -> int:
        try:
            return parse_ttl(token)
        except ValueError as exc:
            raise ZoneSyntaxError(where, lineno, str(exc)) from None


def _rrset_key(name: str, rdtype: int, wire: bytes) -> tuple[str, int]:
    """An RRset's key; RRSIGs are kept apart by the type they cover, as BIND keeps them."""
    return name, rdtype if rdtype != _RRSIG else -int.from_bytes(wire[:2])


def _inside(name: str, apex: str) -> bool:
    return apex == "." or name == apex or name.endswith("." + apex)


def _substitute(template: str, value: int, where: str, lineno: int) -> str:
    """One `$GENERATE` field with `$`, `${offset[,width[,base]]}` replaced and `\\$` kept as `$`."""

    def field(found: re.Match[str]) -> str:
        if found[0] == "\\$":
            return "\\$"
        if found[1] is None:
            return str(value)
        parts = found[1].split(",")
        try:
            offset = int(parts[0] or 0)
            width = int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            raise ZoneSyntaxError(where, lineno, f"$GENERATE: bad modifier {found[0]!r}") from None
        base = parts[2] if len(parts) > 2 else "d"
        if len(parts) > 3 or base not in ("d", "o", "x", "X", "n", "N"):
            raise ZoneSyntaxError(where, lineno, f"$GENERATE: bad modifier {found[0]!r}")
        number = value + offset
        if base in ("n", "N"):  # nibbles, lowest first, each but the last followed by a dot
            digits = format(number, "x" if base == "n" else "X")[::-1]
            digits += "0" * ((width + 1) // 2 - len(digits))
            nibbles = ".".join(digits)
            return nibbles + "." if width > len(nibbles) else nibbles  # an even width ends in a dot
        return format(number, f"0{width}{base}")

    return _GENERATE_FIELD.sub(field, template)


def parse_zone(text: str, where: str, origin: str | None = None, default_ttl: int | None = 3600,
               view: str | None = None, read_include: IncludeReader | None = None,
               warnings: list[str] | None = None) -> list[ZoneRecord]:
    """Parse an RFC 1035 master file. `where` names the file in errors and provenance; with
    `default_ttl` None, a file must give TTLs as BIND requires. Warnings (`file:line: why`: TTLs
    made one per RRset, records outside the zone ignored) are added to `warnings`."""
    try:
        state = _MasterFile(origin, default_ttl, view, read_include)
    except dns.exception.DNSException as exc:
        raise ZoneSyntaxError(where, 1, f"bad origin {origin!r}: {exc}") from None
    state.read(text, where)
    if warnings is not None:
        warnings.extend(state.warnings)
    return state.result()


def parse_record_line(line: str, where: str = "--record") -> list[ZoneRecord]:
    """One `--record` value: a single zonefile line with absolute names."""
    records = parse_zone(line, where, origin=None, default_ttl=60)
    if len(records) != 1:
        raise ZoneSyntaxError(where, 1, "expected exactly one record")
    return records


def parse_hosts(text: str, where: str, ttl: int = 60) -> list[ZoneRecord]:
    """`/etc/hosts` format: an address then names. Each name also gets a PTR for the address."""
    records: list[ZoneRecord] = []
    no_origin = _Origin(None)
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
        rtype = dns.rdatatype.A if address.version == 4 else dns.rdatatype.AAAA
        for idx, token in enumerate(fields[1:]):
            name = _absolute(token if token.endswith(".") else token + ".", no_origin, where, lineno)
            records.append(ZoneRecord(name, rtype, ttl, address.packed, f"{where}:{lineno}"))
            if idx == 0:
                target = dns.name.from_text(name).to_wire()
                records.append(ZoneRecord(ptr_name(address), dns.rdatatype.PTR, ttl, target, f"{where}:{lineno}"))
    return records
