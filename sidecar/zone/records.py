"""One record as the sidecar keeps it: the owner name normalized once, the rdata already parsed
and validated, and where it came from (so logs and /records can say `file:line` or `container`)."""

from __future__ import annotations

from dataclasses import dataclass

import dns.name
import dns.rdata
from dnslib import AAAA, CNAME, MX, NS, PTR, QTYPE, RD, RR, SOA, SRV, A, DNSBuffer, DNSLabel

from . import rdtypes

rdtypes.register()

_ADDRESS_RDATA: dict[int, type[RD]] = {QTYPE.A: A, QTYPE.AAAA: AAAA}
# The types whose fields the zone reads (CNAME targets, glue, the SOA's minimum): dnslib's own
# classes, read from the wire form. Every other type is served as its wire bytes.
_FIELDED_RDATA: dict[int, type[RD]] = {QTYPE.CNAME: CNAME, QTYPE.NS: NS, QTYPE.PTR: PTR, QTYPE.MX: MX,
                                       QTYPE.SRV: SRV, QTYPE.SOA: SOA}


class WireRdata(RD):
    """rdata served as its wire bytes (any type: dnslib packs them as they are), printed as
    dnspython prints that type."""

    def __init__(self, data: bytes, rtype: int) -> None:
        super().__init__(data)
        self.rtype = rtype

    def toZone(self) -> str:
        return presentation(self.rtype, self.data)

    __repr__ = toZone


def presentation(rtype: int, wire: bytes) -> str:
    """rdata in wire form, in presentation form (as dnspython writes it)."""
    return dns.rdata.from_wire(1, rtype, wire, 0, len(wire)).to_text()


def normalize_name(name: str) -> str:
    """Lower-case, absolute (trailing dot): the one key form used by every index."""
    name = name.strip().lower()
    if not name.endswith("."):
        name += "."
    if name.startswith(".") and name != ".":
        raise ValueError(f"empty label in {name!r}")
    return name


def name_key(name: dns.name.Name) -> str:
    """The key form of a name read from a master file or off the wire: dnspython's presentation
    form (RFC 1035 5.1 escapes) lower-cased, so `A\\.b` and `a\\.B` are one name."""
    return name.to_text().lower()


def label_key(label: DNSLabel) -> str:
    """The key form of a name dnslib holds (a CNAME's or an MX's target): its own text does not
    escape a dot inside a label."""
    return name_key(dns.name.Name([*label.label, b""]))


def wire_label(name: DNSLabel | str) -> DNSLabel | str:
    """A name in key or presentation form as dnslib should pack it: escapes (`a\\.b`,
    `\\195\\169`) read into the label bytes they stand for."""
    if not isinstance(name, str) or "\\" not in name:
        return name
    return DNSLabel(list(dns.name.from_text(name.encode("ascii")).labels[:-1]))  # the root is implied


def parent_name(name: str) -> str | None:
    """`a.b.c.` -> `b.c.`; the root has no parent."""
    if name == ".":
        return None
    _, _, rest = name.partition(".")
    return rest or "."


def is_subdomain(name: str, origin: str) -> bool:
    """True when `name` equals `origin` or lies below it (both normalized)."""
    return origin == "." or name == origin or name.endswith("." + origin)


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """A record ready for the zone. `view` is None for the answer everyone gets, or the name of
    the client network it is meant for (the split horizon). `health` is a container's
    healthcheck status (`healthy`, `unhealthy`, `starting`), None when nothing checks it.

    `data` is the rdata in uncompressed wire form (what zonefiles and addresses give), or a
    dnslib rdata object: building dnslib's objects costs more than the rest of a record, a big
    zone holds mostly addresses, and few of them are ever asked for, so `rdata` builds one only
    when read."""

    name: str
    rtype: int
    ttl: int
    data: RD | bytes
    origin: str
    view: str | None = None
    health: str | None = None

    @property
    def rdata(self) -> RD:
        data = self.data
        if not isinstance(data, bytes):
            return data
        address = _ADDRESS_RDATA.get(self.rtype)
        if address is not None:
            return address(tuple(data))
        fielded = _FIELDED_RDATA.get(self.rtype)
        if fielded is not None:
            return fielded.parse(DNSBuffer(data), len(data))
        return WireRdata(data, self.rtype)

    @property
    def wire(self) -> bytes:
        """The rdata as it goes on the wire: the one reliable equality for rdata."""
        if isinstance(self.data, bytes):
            return self.data
        buf = DNSBuffer()
        self.data.pack(buf)
        return bytes(buf.data)

    def to_rr(self, owner: DNSLabel | str | None = None) -> RR:
        return RR(wire_label(owner or self.name), self.rtype, ttl=self.ttl, rdata=self.rdata)

    @property
    def text(self) -> str:
        """The rdata in presentation form, as dnspython writes it."""
        return presentation(self.rtype, self.wire)
