"""The immutable in-memory zone: built once from every source's records, then only read.

All the indexing work (owned origins, empty non-terminals, wildcard owners, view networks) is
done in `Zone.build`, so a lookup is a handful of dict hits. A lookup returns the same values a
plug-in resolver does: an `Answer`, a `Forward` (a CNAME left our data), or `None` (not ours)."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dnslib import QTYPE, RCODE, RR

from .outcome import Answer, Forward, Outcome, Query
from .records import ZoneRecord, is_subdomain, label_key, parent_name

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RRsets = dict[int, tuple[ZoneRecord, ...]]
Nodes = dict[str, dict[str | None, RRsets]]
MAX_CNAME_CHAIN = 16
_GLUE_TYPES = {QTYPE.MX: "label", QTYPE.SRV: "target", QTYPE.NS: "label"}
_SOA, _CNAME = QTYPE.SOA, QTYPE.CNAME  # dnslib's QTYPE attributes are looked up in Python code


@dataclass(frozen=True, slots=True)
class Fragment:
    """What one source contributes: its records, and the view networks it knows about."""

    records: tuple[ZoneRecord, ...] = ()
    views: Mapping[str, tuple[Network, ...]] = field(default_factory=dict)


def _unique(records: list[ZoneRecord]) -> tuple[ZoneRecord, ...]:
    """One RRset without repeats (two sources giving the same address), compared on the wire."""
    seen: set[bytes] = set()
    unique = []
    for rec in records:
        wire = rec.wire
        if wire not in seen:
            seen.add(wire)
            unique.append(rec)
    return tuple(unique)


def _soas(fragments: Mapping[str, Fragment], warnings: list[str]) -> tuple[dict[str, ZoneRecord], dict[str, str]]:
    """Each zone origin's SOA and the source owning it: the first source to give one."""
    soa_by_origin: dict[str, ZoneRecord] = {}
    soa_owner: dict[str, str] = {}
    for key, fragment in fragments.items():
        for rec in fragment.records:
            if rec.rtype == _SOA:
                if rec.name in soa_owner and soa_owner[rec.name] != key:
                    warnings.append(f"{rec.origin}: zone {rec.name} already owned by "
                                    f"{soa_by_origin[rec.name].origin}; SOA ignored")
                    continue
                soa_owner[rec.name] = key
                soa_by_origin[rec.name] = rec
    return soa_by_origin, soa_owner


def _group(fragments: Mapping[str, Fragment], soa_by_origin: Mapping[str, ZoneRecord],
           soa_owner: Mapping[str, str], warnings: list[str]) -> Nodes:
    """Records by name, view and type; those a source puts inside a zone another owns dropped."""
    owned = sorted(soa_owner, key=len, reverse=True)
    nodes: Nodes = {}
    shared: dict[tuple[str, str | None, int], list[ZoneRecord]] = {}  # RRsets of several records
    for key, fragment in fragments.items():
        # Any name inside another source's zone ends with that zone's origin; the converse does
        # not hold (x.a.test ends with a.test too), so a match only calls for the exact check.
        foreign = tuple(origin for origin, owner in soa_owner.items() if owner != key)
        for rec in fragment.records:
            name = rec.name
            if foreign and name.endswith(foreign) and (zone := _closest(name, owned)) and soa_owner[zone] != key:
                warnings.append(f"{rec.origin}: {name} is inside zone {zone} owned by "
                                f"{soa_by_origin[zone].origin}; the zonefile wins")
                continue
            if rec.rtype == _SOA and soa_by_origin.get(name) is not rec:
                continue
            by_view = nodes.get(name)
            if by_view is None:
                nodes[name] = {rec.view: {rec.rtype: (rec,)}}  # most names: one record, one view
                continue
            single = (rec,)
            first = by_view.setdefault(rec.view, {}).setdefault(rec.rtype, single)
            if first is not single:
                shared.setdefault((name, rec.view, rec.rtype), list(first)).append(rec)
    for (name, view, rtype), records in shared.items():
        nodes[name][view][rtype] = _unique(records)
    return nodes


def _closest(name: str, origins: Sequence[str]) -> str | None:
    """The first of `origins` (longest first) that `name` lies in."""
    return next((origin for origin in origins if is_subdomain(name, origin)), None)


def _kept(nodes: Nodes, warnings: list[str]) -> list[ZoneRecord]:
    """Every record kept, in node order; a CNAME beside other data is reported."""
    kept: list[ZoneRecord] = []
    for name, by_view in nodes.items():
        for types in by_view.values():
            for rrset in types.values():
                kept.extend(rrset)
            if _CNAME in types and len(types) > 1:
                warnings.append(f"{types[_CNAME][0].origin}: {name} has a CNAME and other "
                                "data; the CNAME is answered")
    return kept


def _empty_nonterminals(nodes: Mapping[str, object]) -> frozenset[str]:
    """Names with no records of their own but some below them (NODATA, not NXDOMAIN)."""
    ents: set[str] = set()
    for name in nodes:
        parent = parent_name(name)
        while parent is not None and parent not in nodes and parent not in ents:
            ents.add(parent)
            parent = parent_name(parent)
    return frozenset(ents)


@dataclass(frozen=True, slots=True)
class Zone:
    """A snapshot. `nodes` maps a name to its records per view (None = everyone else)."""

    nodes: Mapping[str, Mapping[str | None, RRsets]]
    empty_nonterminals: frozenset[str]
    soa_by_origin: Mapping[str, ZoneRecord]
    view_networks: tuple[tuple[Network, str], ...]
    records: tuple[ZoneRecord, ...]
    generation: int = 0

    @classmethod
    def empty(cls) -> Zone:
        return cls({}, frozenset(), {}, (), (), 0)

    @classmethod
    def build(cls, fragments: Mapping[str, Fragment], generation: int = 0) -> tuple[Zone, list[str]]:
        """Merge fragments (keyed by source) into a zone; return it with the conflicts found.

        A zonefile with an SOA owns its origin: records other sources put under it are dropped
        (the zonefile wins). Identical records from two sources are kept once; different
        addresses for one name from several sources are all kept (round-robin)."""
        warnings: list[str] = []
        soa_by_origin, soa_owner = _soas(fragments, warnings)
        nodes = _group(fragments, soa_by_origin, soa_owner, warnings)
        kept = _kept(nodes, warnings)
        networks = list({(net, view) for frag in fragments.values() for view, nets in frag.views.items()
                         for net in nets})
        networks.sort(key=lambda item: (-item[0].prefixlen, item[1]))  # most specific first, then by name
        return cls(nodes, _empty_nonterminals(nodes), soa_by_origin, tuple(networks), tuple(kept),
                   generation), warnings

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
        if node is not None or name in self.empty_nonterminals:
            return node if node is not None else {}
        # RFC 4592: the closest encloser's wildcard stands in for a name that does not exist.
        encloser = parent_name(name)
        while encloser is not None and encloser not in self.nodes and encloser not in self.empty_nonterminals:
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

