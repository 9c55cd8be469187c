"""A container event changes the zone by delta: only its own names are made anew, every other
node is the very object the last zone held, and the result answers exactly as a full build of the
same fragments does, for any sequence of sources coming and going."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from dnslib import AAAA, CNAME, PTR, QTYPE, TXT, A
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sidecar.api import Query
from sidecar.sources.labels import NameRules, container_records
from sidecar.zone.build import build_zone
from sidecar.zone.parse import parse_zone
from sidecar.zone.records import ZoneRecord
from sidecar.zone.store import Store
from sidecar.zone.zone import Fragment, Zone

# -- an event leaves the rest alone --------------------------------------------------------


def container(name: str, address: str, network: str = "front") -> Fragment:
    """What the Docker source stores for one running container (real naming rules)."""
    info = {"Id": name * 8, "Name": "/" + name, "State": {"Running": True},
            "Config": {"Hostname": name, "Labels": {"com.docker.compose.service": name,
                                                    "com.docker.compose.project": "proj"}},
            "NetworkSettings": {"Networks": {network: {"IPAddress": address, "IPPrefixLen": 16}}}}
    return replace(container_records(info, NameRules()).fragment, views={})


def names(fragment: Fragment) -> set[str]:
    return {rec.name for rec in fragment.records}


def test_a_start_event_leaves_every_other_node_as_it_was() -> None:
    store = Store()
    store.put("file:dev", Fragment(tuple(parse_zone("$ORIGIN dev.test.\n@ SOA ns a 1 2 3 4 5\nweb A 192.0.2.1\n",
                                                    "dev.zone"))))
    store.put_many({f"docker:c{i}": container(f"c{i}", f"172.20.0.{i + 2}") for i in range(50)},
                   replace_prefix="docker:")
    before = store.zone
    new = container("late", "172.20.1.9")
    after = store.put_many({"docker:late": new})
    assert [str(rr.rdata) for rr in after.lookup(Query("late.docker.", QTYPE.A)).answer] == ["172.20.1.9"]
    changed = names(new) | {"1.20.172.in-addr.arpa."}  # its names, and the reverse zone's new non-terminal
    untouched = [name for name in before.nodes if name not in changed]
    assert len(untouched) > 150
    assert all(after.nodes[name] is before.nodes[name] for name in untouched)
    assert after.soa_by_origin is before.soa_by_origin
    assert len(after.records) == len(before.records) + len(new.records)


def test_a_stop_event_removes_only_that_containers_names() -> None:
    store = Store()
    store.put_many({f"docker:c{i}": container(f"c{i}", f"172.20.0.{i + 2}") for i in range(20)},
                   replace_prefix="docker:")
    before = store.zone
    gone = store.fragment("docker:c7")
    after = store.remove("docker:c7")
    assert after.lookup(Query("c7.docker.", QTYPE.A)) is None
    assert after.lookup(Query("c8.docker.", QTYPE.A)).answer
    assert all(after.nodes[name] is before.nodes[name] for name in before.nodes if name not in names(gone))
    assert len(after.records) == len(before.records) - len(gone.records)


def test_a_zonefile_change_is_built_in_full_and_its_cuts_apply_to_later_events() -> None:
    store = Store()
    store.put("docker:c1", container("c1", "172.20.0.2"))
    store.put("file:docker", Fragment(tuple(parse_zone("$ORIGIN docker.\n@ SOA ns a 1 2 3 4 5\nc1 A 192.0.2.7\n",
                                                       "docker.zone"))))
    zone = store.put("docker:c2", container("c2", "172.20.0.3"))
    assert [str(rr.rdata) for rr in zone.lookup(Query("c1.docker.", QTYPE.A)).answer] == ["192.0.2.7"]
    assert zone.lookup(Query("c2.docker.", QTYPE.A)).rcode == 3  # inside the zonefile's zone: NXDOMAIN


# -- the delta answers as a full build ------------------------------------------------------

NAMES = ("web.docker.", "db.docker.", "a.b.docker.", "deep.a.b.docker.", "b.docker.", "*.wild.docker.",
         "x.wild.docker.", "x.owned.test.", "owned.test.", "docker.", "2.0.20.172.in-addr.arpa.")
VIEWS = (None, "front", "back")
NETWORKS = {"front": ipaddress.ip_network("172.20.0.0/16"), "back": ipaddress.ip_network("172.21.0.0/16"),
            "wide": ipaddress.ip_network("172.16.0.0/12")}
RDATA = {QTYPE.A: [A("192.0.2.1"), A("192.0.2.2"), A("172.20.0.2")],
         QTYPE.AAAA: [AAAA("2001:db8::1")], QTYPE.TXT: [TXT("t1"), TXT("t2")],
         QTYPE.CNAME: [CNAME("web.docker."), CNAME("elsewhere.example.")], QTYPE.PTR: [PTR("web.docker.")]}
OWNED = "$ORIGIN owned.test.\n@ SOA ns a 1 2 3 4 5\nx A 192.0.2.50\ny TXT \"file\"\n"


@st.composite
def records(draw, key: str) -> ZoneRecord:
    rtype = draw(st.sampled_from(sorted(RDATA)))
    data = draw(st.sampled_from(RDATA[rtype]))
    if rtype in (QTYPE.A, QTYPE.AAAA):
        data = bytes(data.data)  # addresses in wire form, as the Docker source stores them
    health = draw(st.sampled_from((None, "healthy", "unhealthy", "starting"))) if key.startswith("docker:") else None
    return ZoneRecord(draw(st.sampled_from(NAMES)), rtype, draw(st.sampled_from((10, 60))), data, key,
                      draw(st.sampled_from(VIEWS)), health)


@st.composite
def fragments(draw, key: str) -> Fragment:
    views = draw(st.dictionaries(st.sampled_from(sorted(NETWORKS)), st.just(()), max_size=2))
    return Fragment(tuple(draw(st.lists(records(key), max_size=6))),
                    {view: (NETWORKS[view],) for view in views}, yields=key.startswith("docker:"))


KEYS = ("docker:c0", "docker:c1", "docker:c2", "docker:c3", "hosts")
owned_zone = Fragment(tuple(parse_zone(OWNED, "owned.zone")))
events = st.one_of(
    st.sampled_from(KEYS).flatmap(lambda key: st.tuples(st.just("put"), st.just(key), fragments(key))),
    st.tuples(st.just("remove"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("put"), st.just("file:owned"), st.just(owned_zone)),
    st.tuples(st.just("remove"), st.just("file:owned"), st.none()),
    st.tuples(st.just("pair"), st.sampled_from(KEYS[:2]), st.tuples(fragments("docker:c2"), fragments("docker:c3"))),
)
QUESTIONS = [(name, qtype) for name in (*NAMES, "nothere.docker.", "y.wild.docker.", "y.owned.test.", "c.b.docker.",
                                        "a.docker.", ".")
             for qtype in (QTYPE.A, QTYPE.AAAA, QTYPE.TXT, QTYPE.CNAME, QTYPE.PTR, QTYPE.ANY)]
CLIENTS = ("127.0.0.1", "172.20.0.9", "172.21.3.3", "172.30.0.1")


def layout(zone: Zone) -> dict:
    """Every node with its views, types and records in answer order."""
    return {name: [(view, [(rtype, rrset) for rtype, rrset in types.items()]) for view, types in node.items()]
            for name, node in zone.nodes.items()}


def described(outcome) -> object:
    if outcome is None:
        return None
    return (type(outcome).__name__, getattr(outcome, "rcode", None), getattr(outcome, "authoritative", None),
            [str(rr) for rr in getattr(outcome, "answer", getattr(outcome, "prefix", ()))],
            [str(rr) for rr in getattr(outcome, "authority", ())],
            [str(rr) for rr in getattr(outcome, "additional", ())], getattr(outcome, "name", None))


def assert_same(delta: Zone, full: Zone) -> None:
    assert layout(delta) == layout(full)
    assert len(delta.records) == len(full.records) == sum(1 for _ in full.records)
    assert sorted(map(repr, delta.records)) == sorted(map(repr, full.records))  # withheld replicas too
    assert sorted(map(str, delta.view_networks)) == sorted(map(str, full.view_networks))
    for client in CLIENTS:
        views = delta.views_of(client)
        assert views == full.views_of(client)
        for name, qtype in QUESTIONS:
            query = Query(name, qtype, views=views)
            assert described(delta.lookup(query)) == described(full.lookup(query)), (name, qtype, views)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events, min_size=1, max_size=20))
def test_events_by_delta_answer_as_a_full_build(sequence) -> None:
    store = Store()
    for action, key, value in sequence:
        if action == "put":
            store.put(key, value)
        elif action == "remove":
            store.remove(key)
        else:
            store.put_many({key: Fragment(), "docker:c2": value[0], "docker:c3": value[1]})
        full, _ = build_zone(dict(store._builder.fragments))
        assert_same(store.zone, full)
