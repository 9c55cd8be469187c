"""One record as the sidecar keeps it: the owner name normalized once, the rdata already parsed
and validated, and where it came from (so logs and /records can say `file:line` or `container`)."""

from __future__ import annotations

from dataclasses import dataclass

from dnslib import AAAA, QTYPE, RD, RR, A, DNSBuffer, DNSLabel

_ADDRESS_RDATA: dict[int, type[RD]] = {QTYPE.A: A, QTYPE.AAAA: AAAA}


def normalize_name(name: str) -> str:
    """Lower-case, absolute (trailing dot): the one key form used by every index."""
    name = name.strip().lower()
    if not name.endswith("."):
        name += "."
    if name.startswith(".") and name != ".":
        raise ValueError(f"empty label in {name!r}")
    return name


def parent_name(name: str) -> str | None:
    """`a.b.c.` -> `b.c.`; the root has no parent."""
    if name == ".":
        return None
    _, _, rest = name.partition(".")
    return rest or "."


def is_subdomain(name: str, origin: str) -> bool:
    """True when `name` equals `origin` or lies below it (both normalized)."""
    return origin == "." or name == origin or name.endswith("." + origin)


def type_name(rtype: int) -> str:
    return QTYPE.get(rtype, f"TYPE{rtype}")


@dataclass(frozen=True, slots=True)
class ZoneRecord:
    """A record ready for the zone. `view` is None for the answer everyone gets, or the name of
    the client network it is meant for (the split horizon). `health` is a container's
    healthcheck status (`healthy`, `unhealthy`, `starting`), None when nothing checks it.

    `data` is the dnslib rdata, or for A and AAAA the address in wire form (4 or 16 bytes, as
    `inet_pton` or `ipaddress` give it): building dnslib's validated address object costs more
    than the rest of a record, a big zone holds mostly addresses, and few of them are ever asked
    for, so `rdata` builds it only when read."""

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
        if isinstance(data, bytes):
            return _ADDRESS_RDATA[self.rtype](tuple(data))
        return data

    @property
    def wire(self) -> bytes:
        """The rdata as it goes on the wire: the one reliable equality for rdata."""
        if isinstance(self.data, bytes):
            return self.data
        buf = DNSBuffer()
        self.data.pack(buf)
        return bytes(buf.data)

    def to_rr(self, owner: DNSLabel | str | None = None) -> RR:
        return RR(owner or self.name, self.rtype, ttl=self.ttl, rdata=self.rdata)

    @property
    def text(self) -> str:
        return self.rdata.toZone()
