"""The values that flow through the resolver chain: a `Query` in, an `Answer` or a `Forward`
out, or `None` to fall through to the next resolver. These are the public plug-in API."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from dnslib import RCODE, RR

from .dns.names import type_name
from .zone.parse import parse_zone
from .zone.records import normalize_name


@dataclass(frozen=True, slots=True)
class Query:
    """One question as a resolver sees it. `name` keeps the client's case; `key` is normalized.
    `views` are the client networks the split horizon placed the client in (may be empty)."""

    name: str
    qtype: int
    client: str = "127.0.0.1"
    transport: str = "udp"
    views: tuple[str, ...] = ()
    dnssec_ok: bool = False
    qclass: int = 1
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", normalize_name(self.name))

    @property
    def type_name(self) -> str:
        return type_name(self.qtype)


@dataclass(frozen=True, slots=True)
class Answer:
    """A final reply. `cache_for` tells the packet cache how long the packed reply may be reused
    for the same question from the same view: None until the zone changes, 0 never.

    `wire`, when set, is an upstream's reply as it arrived but for its OPT record (the record
    fields are then empty): the server relays those bytes with only the ID, flags, question case
    and OPT record made the client's, so an uncacheable forwarded answer is never parsed or
    re-packed."""

    rcode: int = RCODE.NOERROR
    answer: tuple[RR, ...] = ()
    authority: tuple[RR, ...] = ()
    additional: tuple[RR, ...] = ()
    authoritative: bool = False
    cache_for: float | None = 0
    source: str = "plugin"
    wire: bytes | None = None


@dataclass(frozen=True, slots=True)
class Forward:
    """Ask upstream instead: `upstreams` as `addr[:port]` (empty = the default upstreams), `name`
    to ask for another name (a CNAME target), `prefix` records to put before the upstream's."""

    upstreams: tuple[str, ...] = ()
    name: str | None = None
    prefix: tuple[RR, ...] = ()


Outcome = Answer | Forward | None
Resolver = Callable[[Query], "Outcome | Awaitable[Outcome]"]


def Found(*records: RR | str, ttl: int = 60) -> Answer:
    """Convenience for plug-ins: `Found("x.test. 60 IN A 192.0.2.1")` or `Found(rr, ...)`.
    Strings are zonefile lines with absolute names; `ttl` applies when a line has none."""
    rrs: list[RR] = []
    for item in records:
        if isinstance(item, RR):
            rrs.append(item)
        else:
            rrs.extend(r.to_rr() for r in parse_zone(item, "Found()", default_ttl=ttl))
    return Answer(answer=tuple(rrs), source="plugin")


NXDOMAIN = Answer(rcode=RCODE.NXDOMAIN, source="plugin")
REFUSED = Answer(rcode=RCODE.REFUSED, source="plugin")
