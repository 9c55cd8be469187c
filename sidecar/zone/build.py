"""Makes `Zone`s from the sources' fragments: in full, or by delta when a few sources change.

A delta (one container's start or stop) recomputes only the names whose sources changed, so an
event costs its own names, not the whole zone; both ways give the same zone. A change to an
operator's source (a zonefile, hosts file or --record) moves the zone cuts for everyone, so it
takes the full build, as does a large change (docs/zone-updates.md)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

from dnslib import QTYPE

from .records import ZoneRecord, is_subdomain, parent_name
from .shardmap import ShardMap
from .zone import EMPTY_NODE, Fragment, Network, Node, Nodes, RRsets, Zone

_SOA, _CNAME = QTYPE.SOA, QTYPE.CNAME
Sources = str | tuple[str, ...]  # the keys of the fragments with records at one name, in store order
FULL_BUILD_SHARE = 4  # a change of more than 1/4 of the records (and over SMALL_CHANGE) is built in full
SMALL_CHANGE = 1000
WITHHELD_HEALTH = frozenset({"unhealthy", "starting"})
Withheld = dict[str, tuple[ZoneRecord, ...]]


def _unique(records: Sequence[ZoneRecord]) -> tuple[ZoneRecord, ...]:
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


def _operators(fragment: Fragment | None) -> bool:
    """True for a fragment of the operator's (not a yielding source's) with anything in it."""
    return fragment is not None and not fragment.yields and bool(fragment.records or fragment.views)


def _by_health(name: str, rrset: tuple[ZoneRecord, ...], warnings: list[str]
               ) -> tuple[tuple[ZoneRecord, ...], tuple[ZoneRecord, ...]]:
    """An RRset split into what is answered and what is withheld: replicas unhealthy or still
    starting are left out while another is healthy or unchecked; when none is, all are answered
    (a name that vanishes breaks more than a slow one), and that is said where there was a choice."""
    withheld = tuple(rec for rec in rrset if rec.health in WITHHELD_HEALTH)
    if not withheld:
        return rrset, ()
    if len(withheld) == len(rrset):
        if len(rrset) > 1 and (warning := f"{name}: no replica is healthy; all are answered") not in warnings:
            warnings.append(warning)
        return rrset, ()
    return tuple(rec for rec in rrset if rec.health not in WITHHELD_HEALTH), withheld


def _closest(name: str, origins: Sequence[str]) -> str | None:
    """The first of `origins` (longest first) that `name` lies in."""
    return next((origin for origin in origins if is_subdomain(name, origin)), None)


class _Cuts:
    """The zone cuts: which source owns which origin, and what a source may not put where."""

    def __init__(self, soa_by_origin: dict[str, ZoneRecord], soa_owner: dict[str, str]) -> None:
        self.soa_by_origin = soa_by_origin
        self.owner = soa_owner
        self.longest_first = sorted(soa_owner, key=len, reverse=True)

    def foreign(self, key: str) -> tuple[str, ...]:
        """Origins of zones other sources own: a name of `key`'s inside one ends with it (the
        converse does not hold: x.a.test ends with a.test too, so a match calls for `admits`)."""
        return tuple(origin for origin, owner in self.owner.items() if owner != key)

    def admits(self, key: str, rec: ZoneRecord, warnings: list[str]) -> bool:
        """False, with a warning, for a record inside a zone another source owns; False for an SOA
        that lost its origin to another."""
        zone = _closest(rec.name, self.longest_first)
        if zone is not None and self.owner[zone] != key:
            warnings.append(f"{rec.origin}: {rec.name} is inside zone {zone} owned by "
                            f"{self.soa_by_origin[zone].origin}; the zonefile wins")
            return False
        return rec.rtype != _SOA or self.soa_by_origin.get(rec.name) is rec


def _node(name: str, records: Iterable[ZoneRecord], warnings: list[str]) -> tuple[Node, tuple[ZoneRecord, ...]]:
    """One name's records by view and type, each RRset without repeats and without the replicas
    withheld for their health, which come back apart."""
    grouped: dict[str | None, dict[int, list[ZoneRecord]]] = {}
    for rec in records:
        grouped.setdefault(rec.view, {}).setdefault(rec.rtype, []).append(rec)
    node: dict[str | None, RRsets] = {}
    withheld: list[ZoneRecord] = []
    for view, types in grouped.items():
        node[view] = {}
        for rtype, rrset in types.items():
            node[view][rtype], left_out = _by_health(name, _unique(rrset), warnings)
            withheld += left_out
    return node, tuple(withheld)


def _count(nodes: Iterable[tuple[str, Node]], warnings: list[str]) -> int:
    """How many records `nodes` hold; a CNAME beside other data is reported."""
    count = 0
    for name, node in nodes:
        for types in node.values():
            for rrset in types.values():
                count += len(rrset)
            if _CNAME in types and len(types) > 1:
                warnings.append(f"{types[_CNAME][0].origin}: {name} has a CNAME and other data; the CNAME is answered")
    return count


def _networks(counts: Mapping[tuple[Network, str], int]) -> tuple[tuple[Network, str], ...]:
    """Every (network, view) any source names, most specific first, then by view name."""
    return tuple(sorted(counts, key=lambda item: (-item[0].prefixlen, item[1])))


def _add_sources(sources: Sources | None, key: str, rank: Mapping[str, int]) -> Sources:
    if sources is None:
        return key
    keys = (sources,) if isinstance(sources, str) else sources
    return tuple(sorted((*keys, key), key=rank.__getitem__))


def _drop_sources(sources: Sources, key: str) -> Sources | None:
    if isinstance(sources, str):
        return None if sources == key else sources
    rest = tuple(k for k in sources if k != key)
    return rest[0] if len(rest) == 1 else rest or None


def _withheld_after(before: Mapping[str, tuple[ZoneRecord, ...]], touched: Iterable[str],
                    now: Mapping[str, tuple[ZoneRecord, ...]]) -> Mapping[str, tuple[ZoneRecord, ...]]:
    """The withheld replicas once the `touched` names hold what `now` says (the mapping is new
    only when something in it changed: few names are ever withheld)."""
    if not before and not any(now.values()):
        return before
    after = {name: records for name, records in before.items() if name not in touched}
    after.update((name, records) for name, records in now.items() if records)
    return after


def build_zone(fragments: Mapping[str, Fragment], generation: int = 0) -> tuple[Zone, list[str]]:
    """Merge fragments (keyed by source) into a zone, in full; return it with the conflicts found.

    A zonefile with an SOA owns its origin: records other sources put under it are dropped (the
    zonefile wins). Identical records from two sources are kept once; different addresses for one
    name from several sources are all kept (round-robin)."""
    return ZoneBuilder().change(fragments, generation, full=True)


class ZoneBuilder:
    """The writer's side of the zone: every fragment and the indexes a delta needs. Used under
    the store's lock; the zones it returns are never changed afterwards."""

    def __init__(self) -> None:
        self.fragments: dict[str, Fragment] = {}
        self._rank: dict[str, int] = {}  # store order: a key keeps its place when replaced
        self._next_rank = 0
        # The delta index, made when a delta first needs it after a full build (None until then):
        self._sources: dict[str, Sources] | None = {}
        self._children: Counter[str] = Counter()  # names in the index (nodes and non-terminals) just below
        self._network_counts: Counter[tuple[Network, str]] = Counter()
        self._by_name: dict[str, dict[str, list[ZoneRecord]]] = {}  # a fragment's admitted records by name
        self._cuts = _Cuts({}, {})
        self._held: dict[str, str] = {}  # names an operator's source gives, and where from
        self.zone = Zone.empty()
        self._nodes = self.zone.nodes  # the zone's name index as deltas evolve it

    def _store(self, changes: Mapping[str, Fragment | None]) -> None:
        for key, fragment in changes.items():
            self._by_name.pop(key, None)
            if fragment is None:
                self.fragments.pop(key, None)
                self._rank.pop(key, None)
            else:
                self.fragments[key] = fragment
                if key not in self._rank:
                    self._rank[key] = self._next_rank
                    self._next_rank += 1

    def change(self, changes: Mapping[str, Fragment | None], generation: int,
               full: bool = False) -> tuple[Zone, list[str]]:
        """Replace (or, for None, remove) the given fragments; return the new zone and the
        conflicts found. By delta unless `full`, an SOA is involved, or the change is large."""
        old = {key: self.fragments.get(key) for key in changes}
        involved = [*old.values(), *changes.values()]
        size = sum(len(fragment.records) for fragment in involved if fragment is not None)
        if (full or any(_operators(fragment) for fragment in involved)
                or size > max(SMALL_CHANGE, self.zone.record_count // FULL_BUILD_SHARE)):
            self._store(changes)
            return self.build(generation)
        self.ready_for_deltas()
        return self._delta(changes, old, generation)

    # -- in full --------------------------------------------------------------------------

    def build(self, generation: int) -> tuple[Zone, list[str]]:
        """Merge every fragment into a new zone. The delta index is left to `ready_for_deltas`,
        made when a delta first needs it: a zonefile reload followed by another pays for none."""
        warnings: list[str] = []
        self._cuts = _Cuts(*_soas(self.fragments, warnings))
        nodes, count, withheld = self._group(warnings)
        self._sources, self._by_name = None, {}
        self._network_counts = Counter(item for fragment in self.fragments.values()
                                       for view, nets in fragment.views.items() for item in ((n, view) for n in nets))
        self.zone = Zone(ShardMap.of_shards([nodes]), self._cuts.soa_by_origin, _networks(self._network_counts),
                         count, generation, withheld)
        return self.zone, warnings

    def _kept(self, warnings: list[str]) -> Iterator[tuple[str, list[ZoneRecord]]]:
        """Each source's key and its records the zone cuts let in, the operator's sources first
        (their names are then held), then the yielding ones less what is held; each in store order."""
        cuts = self._cuts
        self._held = {}
        ordered = sorted(self.fragments.items(), key=lambda item: item[1].yields)
        for key, fragment in ordered:
            foreign = cuts.foreign(key)
            records = [rec for rec in fragment.records
                       if not ((foreign and rec.name.endswith(foreign)) or rec.rtype == _SOA)
                       or cuts.admits(key, rec, warnings)]
            if fragment.yields:
                records = [rec for rec in records if self._yields_to_none(rec, warnings)]
            else:
                for rec in records:
                    self._held.setdefault(rec.name, rec.origin)
            yield key, records

    def _yields_to_none(self, rec: ZoneRecord, warnings: list[str]) -> bool:
        """False, with a warning, for a yielding source's record at a name the operator holds."""
        holder = self._held.get(rec.name)
        if holder is None:
            return True
        warnings.append(f"{rec.origin}: {rec.name} is held by {holder}; the operator's records win")
        return False

    def _group(self, warnings: list[str]) -> tuple[Nodes, int, Withheld]:
        """Records by name, view and type, with every empty non-terminal (a name with no records
        but some below it: NODATA, not NXDOMAIN) as an empty node; how many records are answered;
        and the replicas withheld for their health. A CNAME beside other data is reported."""
        nodes: Nodes = {}
        count = 0
        shared: dict[tuple[str, str | None, int], list[ZoneRecord]] = {}  # RRsets of several records
        doubtful: set[tuple[str, str | None, int]] = set()  # RRsets with a replica in doubtful health
        mixed: set[str] = set()  # names with several types in one view
        last_parent = None  # the parent of the last new name, known to be in the index
        for _, records in self._kept(warnings):
            count += len(records)
            for rec in records:
                name = rec.name
                if rec.health in WITHHELD_HEALTH:
                    doubtful.add((name, rec.view, rec.rtype))
                by_view = nodes.get(name)
                if by_view is None or by_view is EMPTY_NODE:
                    nodes[name] = {rec.view: {rec.rtype: (rec,)}}  # most names: one record, one view
                    parent = name
                    while by_view is None and parent != ".":  # a new name: its parents exist from now on
                        parent = parent.partition(".")[2] or "."
                        if parent == last_parent:  # names come in runs under one parent
                            break
                        by_view = nodes.get(parent)
                        if by_view is None:
                            nodes[parent] = EMPTY_NODE
                    last_parent = name.partition(".")[2]
                    continue
                single = (rec,)
                types = by_view.setdefault(rec.view, {})
                first = types.setdefault(rec.rtype, single)
                if first is not single:
                    shared.setdefault((name, rec.view, rec.rtype), list(first)).append(rec)
                elif len(types) > 1:
                    mixed.add(name)
        for (name, view, rtype), records in shared.items():
            rrset = nodes[name][view][rtype] = _unique(records)
            count -= len(records) - len(rrset)
        withheld: Withheld = {}
        for name, view, rtype in doubtful:
            nodes[name][view][rtype], left_out = _by_health(name, nodes[name][view][rtype], warnings)
            if left_out:
                withheld[name] = withheld.get(name, ()) + left_out
                count -= len(left_out)
        _count(((name, nodes[name]) for name in mixed), warnings)
        return nodes, count, withheld

    def ready_for_deltas(self) -> None:
        """Make the delta index, if the last full build left it to be made: the sources giving
        each name, how many names lie just below each name, and the name index laid out in
        shards (a full build makes it in one piece; the node objects stay the zone's)."""
        if self._sources is not None:
            return
        sources: dict[str, Sources] = {}
        for key, records in self._kept([]):
            for rec in records:
                given = sources.get(rec.name)
                if given is None:
                    sources[rec.name] = key
                elif given != key and (isinstance(given, str) or key not in given):
                    sources[rec.name] = _add_sources(given, key, self._rank)
        self._children = Counter(name.partition(".")[2] or "." for name in self.zone.nodes if name != ".")
        self._nodes = self.zone.nodes.fitted()
        self._sources = sources

    # -- by delta -------------------------------------------------------------------------

    def _delta(self, changes: Mapping[str, Fragment | None], old: Mapping[str, Fragment | None],
               generation: int) -> tuple[Zone, list[str]]:
        """The new zone after a few fragments change: only the names they give are recomputed;
        every other name keeps the last zone's node objects, name-index shards and SOA table."""
        warnings: list[str] = []
        touched: set[str] = set()
        for key, fragment in old.items():
            if fragment is not None:
                for name in self._admitted(key):
                    self._set_sources(name, _drop_sources(self._sources[name], key))
                    touched.add(name)
        self._store(changes)
        for key, fragment in changes.items():
            if fragment is not None:
                for name in self._admitted(key, warnings):
                    self._set_sources(name, _add_sources(self._sources.get(name), key, self._rank))
                    touched.add(name)
        nodes = self._nodes
        pending: dict[str, Node | None] = {}
        withheld: Withheld = {}
        count = self.zone.record_count
        for name in touched:
            before = nodes.get(name)
            if before:
                count -= sum(len(rrset) for types in before.values() for rrset in types.values())
            sources = self._sources.get(name)
            if sources is None:
                if before:
                    self._lose(name, nodes, pending)
                continue
            keys = (sources,) if isinstance(sources, str) else sources
            node, withheld[name] = _node(name, (rec for key in keys for rec in self._admitted(key).get(name, ())),
                                         warnings)
            count += _count(((name, node),), warnings)
            if not before:
                self._gain(name, nodes, pending)
            pending[name] = node
        networks = self.zone.view_networks
        if self._count_networks(old, changes):
            networks = _networks(self._network_counts)
        drop = [name for name, node in pending.items() if node is None]
        put = {name: node for name, node in pending.items() if node is not None}
        self._nodes = nodes.evolve(put, drop)
        self.zone = Zone(self._nodes, self._cuts.soa_by_origin, networks, count, generation,
                         _withheld_after(self.zone.withheld, touched, withheld))
        return self.zone, warnings

    def _set_sources(self, name: str, sources: Sources | None) -> None:
        if sources is None:
            del self._sources[name]
        else:
            self._sources[name] = sources

    def _admitted(self, key: str, warnings: list[str] | None = None) -> dict[str, list[ZoneRecord]]:
        """The records of fragment `key` that the zone cuts and the operator's held names let in,
        by name (kept until it changes)."""
        by_name = self._by_name.get(key)
        if by_name is None:
            by_name = {}
            said = [] if warnings is None else warnings
            yields = self.fragments[key].yields
            for rec in self.fragments[key].records:
                if self._cuts.admits(key, rec, said) and (not yields or self._yields_to_none(rec, said)):
                    by_name.setdefault(rec.name, []).append(rec)
            self._by_name[key] = by_name
        return by_name

    def _gain(self, name: str, nodes: ShardMap[Node], pending: dict[str, Node | None]) -> None:
        """`name` gets records: where it was not in the index, its parents count it, and those
        not in the index become empty non-terminals."""
        current = pending[name] if name in pending else nodes.get(name)
        while current is None:
            parent = parent_name(name)
            if parent is None:
                return
            self._children[parent] += 1
            name = parent
            current = pending[name] if name in pending else nodes.get(name)
            if current is None:
                pending[name] = EMPTY_NODE

    def _lose(self, name: str, nodes: ShardMap[Node], pending: dict[str, Node | None]) -> None:
        """`name` has no records left: an empty non-terminal if names lie below it, else it
        leaves the index, and so do parents left with nothing below them."""
        children = self._children
        while True:
            if children[name]:
                pending[name] = EMPTY_NODE
                return
            pending[name] = None
            parent = parent_name(name)
            if parent is None:
                return
            children[parent] -= 1
            if not children[parent]:
                del children[parent]
            current = pending[parent] if parent in pending else nodes.get(parent)
            if current or children[parent]:
                return
            name = parent

    def _count_networks(self, old: Mapping[str, Fragment | None], changes: Mapping[str, Fragment | None]) -> bool:
        """Update the view networks' use counts; True when the set of them changed."""
        before = len(self._network_counts)
        changed = False
        for fragments, step in ((old, -1), (changes, 1)):
            for fragment in fragments.values():
                for view, nets in (fragment.views if fragment is not None else {}).items():
                    for net in nets:
                        item = (net, view)
                        self._network_counts[item] += step
                        if not self._network_counts[item]:
                            del self._network_counts[item]
                            changed = True
        return changed or len(self._network_counts) != before
