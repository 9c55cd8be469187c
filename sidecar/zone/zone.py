"""The immutable in-memory zone: made by `zonebuild` from every source's records, then only read.

All the indexing work (owned origins, empty non-terminals, wildcard owners, view networks) is
done when the zone is made, so a lookup is a handful of dict hits. A lookup returns the same
values a plug-in resolver does: an `Answer`, a `Forward` (a CNAME left our data), or `None`
(not ours)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from dnslib import QTYPE, RCODE, RR

from ..api import Answer, Forward, Outcome, Query
from .records import ZoneRecord, label_key, parent_name
from .shardmap import ShardMap

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RRsets = dict[int, tuple[ZoneRecord, ...]]
Node = Mapping[str | None, RRsets]  # one name's records by view (None: everyone else)
Nodes = dict[str, Node]
EMPTY_NODE: Node = MappingProxyType({})  # an empty non-terminal: names below it, none of its own
MAX_CNAME_CHAIN = 16
_GLUE_TYPES = {QTYPE.MX: "label", QTYPE.SRV: "target", QTYPE.NS: "label"}
NO_RECORDS: Mapping[str, tuple[ZoneRecord, ...]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Fragment:
    """What one source contributes: its records, and the view networks it knows about. A
    yielding source (containers, Swarm) gives way at every name an operator's source (zonefile,
    hosts file, --record) has records at: the two never merge."""

    records: tuple[ZoneRecord, ...] = ()
    views: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)
    yields: bool = False


class ZoneRecords:
    """Every record of a zone, by name, read from its nodes on demand (nothing is copied), with
    the replicas withheld for their health (they are listed, not answered)."""

    __slots__ = ("_count", "_nodes", "_withheld")

    def __init__(self, nodes: Mapping[str, Node], count: int, withheld: Mapping[str, tuple[ZoneRecord, ...]]) -> None:
        self._nodes, self._count, self._withheld = nodes, count, withheld

    def __len__(self) -> int:
        return self._count + sum(map(len, self._withheld.values()))

    def __iter__(self) -> Iterator[ZoneRecord]:
        nodes = self._nodes
        for name in sorted(nodes):
            for types in nodes[name].values():
                for rrset in types.values():
                    yield from rrset
            yield from self._withheld.get(name, ())


@dataclass(frozen=True, slots=True)
class Zone:
    """A snapshot. `nodes` maps a name to its records per view (None = everyone else); an empty
    non-terminal maps to an empty node."""

    nodes: ShardMap[Node]
    soa_by_origin: Mapping[str, ZoneRecord]
    view_networks: tuple[tuple[Network, str], ...]
    record_count: int
    generation: int = 0
    withheld: Mapping[str, tuple[ZoneRecord, ...]] = field(default_factory=lambda: NO_RECORDS)  # left out for health

    @classmethod
    def empty(cls) -> Zone:
        return cls(ShardMap(), {}, (), 0, 0)

    @property
    def records(self) -> ZoneRecords:
        return ZoneRecords(self.nodes, self.record_count, self.withheld)

    # -- questions about the zone ---------------------------------------------------------

    def views_of(self, client: str) -> tuple[str, ...]:
        """The views a client address belongs to, most specific network first."""
        if not self.view_networks:
            return ()
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return ()
        found: list[str] = []
        for net, view in self.view_networks:
            if net.version == address.version and address in net and view not in found:
                found.append(view)
        return tuple(found)

    def owning_origin(self, name: str) -> str | None:
        """The closest zone origin (from an SOA) at or above `name`, if any."""
        while name is not None:
            if name in self.soa_by_origin:
                return name
            name = parent_name(name)
        return None

    # -- lookup -----------------------------------------------------------------------------

    def lookup(self, query: Query) -> Outcome:
        """Resolve from local data: Answer, Forward (CNAME target not ours), or None (not ours)."""
        origin = self.owning_origin(query.key)
        return self._resolve(query.key, query.name, query.qtype, query.views, origin is not None, [], set())

    def _rrsets(self, name: str) -> Mapping[str | None, RRsets] | None:
        node = self.nodes.get(name)
        if node is not None:
            return node
        # RFC 4592: the closest encloser's wildcard stands in for a name that does not exist.
        encloser = parent_name(name)
        while encloser is not None and encloser not in self.nodes:
            encloser = parent_name(encloser)
        if encloser is None:
            return None
        return self.nodes.get("*." + encloser if encloser != "." else "*.")

    @staticmethod
    def _for_views(node: Mapping[str | None, RRsets], views: tuple[str, ...]) -> RRsets:
        """The records a client in `views` sees at one name. Where the name has addresses for
        the client's network, those replace all of the host view's addresses (an IPv4-only
        network must not hand out the host view's AAAA); other types fall back to the host view."""
        if len(node) == 1 and None in node:
            return node[None]
        merged = dict(node.get(None, {}))
        for view in reversed(views):  # the most specific network is applied last, so it wins
            in_view = node.get(view)
            if in_view:
                if QTYPE.A in in_view or QTYPE.AAAA in in_view:
                    merged.pop(QTYPE.A, None)
                    merged.pop(QTYPE.AAAA, None)
                merged.update(in_view)
        return merged

    def _resolve(self, name: str, owner: str, qtype: int, views: tuple[str, ...], authoritative: bool,
                 chain: list[RR], seen: set[str]) -> Outcome:
        origin = self.owning_origin(name)
        node = self._rrsets(name)
        if node is None or not self._for_views(node, views):
            if origin is None:
                return Forward(name=name, prefix=tuple(chain)) if chain else None
            if node is None:
                return self._negative(RCODE.NXDOMAIN, origin, chain, authoritative)
            return self._negative(RCODE.NOERROR, origin, chain, authoritative)
        rrsets = self._for_views(node, views)
        if QTYPE.CNAME in rrsets and qtype != QTYPE.CNAME:
            cname = rrsets[QTYPE.CNAME][0]
            chain.append(cname.to_rr(owner))
            target = label_key(cname.rdata.label)
            if target in seen or len(chain) > MAX_CNAME_CHAIN:
                return Answer(RCODE.SERVFAIL, tuple(chain), source="local")
            seen.add(name)
            return self._resolve(target, target, qtype, views, authoritative, chain, seen)
        # RFC 8482: one RRset is a complete answer to ANY.
        records = next(iter(rrsets.values())) if qtype == QTYPE.ANY else rrsets.get(qtype)
        if not records:
            return self._negative(RCODE.NOERROR, origin, chain, authoritative)
        answer = chain + [rec.to_rr(owner) for rec in records]
        return Answer(answer=tuple(answer), additional=self._glue(records, views),
                      authoritative=authoritative, cache_for=None, source="local")

    def _glue(self, records: Sequence[ZoneRecord], views: tuple[str, ...]) -> tuple[RR, ...]:
        """Addresses of MX, SRV and NS targets we hold, so clients need not ask again."""
        attr = _GLUE_TYPES.get(records[0].rtype)
        if attr is None:
            return ()
        glue: list[RR] = []
        for rec in records:
            target = label_key(getattr(rec.rdata, attr))
            node = self.nodes.get(target)
            if node:
                rrsets = self._for_views(node, views)
                for rtype in (QTYPE.A, QTYPE.AAAA):
                    glue.extend(r.to_rr() for r in rrsets.get(rtype, ()))
        return tuple(glue)

    def _negative(self, rcode: int, origin: str | None, chain: list[RR], authoritative: bool) -> Answer:
        """NXDOMAIN or NODATA; with the SOA (TTL capped by its minimum, RFC 2308) when owned."""
        authority: tuple[RR, ...] = ()
        if origin is not None:
            soa = self.soa_by_origin[origin]
            authority = (RR(soa.name, QTYPE.SOA, ttl=min(soa.ttl, soa.rdata.times[-1]), rdata=soa.rdata),)
        return Answer(rcode, tuple(chain), authority, authoritative=authoritative, cache_for=None,
                      source="local")

