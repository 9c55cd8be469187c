"""The zone model in isolation: plain values in, typed outcomes out."""

import ipaddress

import pytest
from dnslib import AAAA, QTYPE, RCODE

from sidecar.api import Answer, Forward, Query
from sidecar.zone.build import build_zone
from sidecar.zone.parse import parse_record_line, parse_zone
from sidecar.zone.records import ZoneRecord
from sidecar.zone.zone import Fragment, Zone

OWNED = """\
$ORIGIN dev.test.
$TTL 300
@ SOA ns admin 1 3600 600 86400 60
web A 192.0.2.1
www CNAME web
hop1 CNAME www
out CNAME example.org.
loop1 CNAME loop2
loop2 CNAME loop1
*.wild A 192.0.2.9
exists.wild TXT "here"
a.b.c TXT "deep"
@ MX 10 web
_svc._tcp SRV 0 0 80 web
"""


def build(*fragments: tuple[str, list[ZoneRecord]] | tuple[str, list[ZoneRecord], dict]) -> Zone:
    frags = {item[0]: Fragment(tuple(item[1]), item[2] if len(item) > 2 else {}) for item in fragments}
    zone, _ = build_zone(frags)
    return zone


@pytest.fixture
def zone() -> Zone:
    flags = [*parse_record_line("*.romcyber.com. 60 IN A 127.0.0.1"),
             *parse_record_line("api.corp.test. 60 IN A 192.0.2.50")]
    return build(("file:dev", parse_zone(OWNED, "dev.zone")), ("flags", flags))


def answers(outcome) -> list[tuple[str, str, str]]:
    return [(str(rr.rname), QTYPE[rr.rtype], str(rr.rdata)) for rr in outcome.answer]


def test_exact_answer_is_authoritative_and_echoes_case(zone):
    outcome = zone.lookup(Query("WeB.Dev.Test.", QTYPE.A))
    assert isinstance(outcome, Answer)
    assert outcome.rcode == RCODE.NOERROR and outcome.authoritative
    assert answers(outcome) == [("WeB.Dev.Test.", "A", "192.0.2.1")]
    assert outcome.cache_for is None  # reusable until the zone changes


def test_cname_chain_followed_inside_zone(zone):
    outcome = zone.lookup(Query("hop1.dev.test", QTYPE.A))
    assert answers(outcome) == [("hop1.dev.test.", "CNAME", "www.dev.test."),
                                ("www.dev.test.", "CNAME", "web.dev.test."),
                                ("web.dev.test.", "A", "192.0.2.1")]


def test_cname_query_returns_the_cname_itself(zone):
    assert answers(zone.lookup(Query("www.dev.test", QTYPE.CNAME))) == [("www.dev.test.", "CNAME", "web.dev.test.")]


def test_cname_leaving_our_data_is_forwarded_with_prefix(zone):
    outcome = zone.lookup(Query("out.dev.test", QTYPE.A))
    assert isinstance(outcome, Forward)
    assert outcome.name == "example.org."
    assert [str(rr.rdata) for rr in outcome.prefix] == ["example.org."]


def test_cname_loop_is_servfail_not_a_hang(zone):
    outcome = zone.lookup(Query("loop1.dev.test", QTYPE.A))
    assert outcome.rcode == RCODE.SERVFAIL


def test_missing_name_in_owned_zone_is_nxdomain_with_soa(zone):
    outcome = zone.lookup(Query("nope.dev.test", QTYPE.A))
    assert outcome.rcode == RCODE.NXDOMAIN and outcome.authoritative and not outcome.answer
    (soa,) = outcome.authority
    assert QTYPE[soa.rtype] == "SOA" and str(soa.rname) == "dev.test."
    assert soa.ttl == 60  # RFC 2308: min(SOA TTL 300, minimum 60)


def test_missing_type_is_nodata_with_soa(zone):
    outcome = zone.lookup(Query("web.dev.test", QTYPE.AAAA))
    assert outcome.rcode == RCODE.NOERROR and not outcome.answer
    assert [QTYPE[rr.rtype] for rr in outcome.authority] == ["SOA"]


def test_empty_non_terminal_is_nodata_not_nxdomain(zone):
    outcome = zone.lookup(Query("b.c.dev.test", QTYPE.TXT))
    assert outcome.rcode == RCODE.NOERROR and not outcome.answer


def test_wildcard_synthesizes_any_depth_with_the_query_name(zone):
    outcome = zone.lookup(Query("x.y.wild.dev.test", QTYPE.A))
    assert answers(outcome) == [("x.y.wild.dev.test.", "A", "192.0.2.9")]


def test_wildcard_does_not_cover_existing_names(zone):
    # RFC 4592: exists.wild has data, so its A is NODATA, not the wildcard's address.
    outcome = zone.lookup(Query("exists.wild.dev.test", QTYPE.A))
    assert outcome.rcode == RCODE.NOERROR and not outcome.answer


def test_wildcard_blocked_below_an_existing_name(zone):
    # The closest encloser of x.exists.wild is exists.wild, which has no wildcard child.
    assert zone.lookup(Query("x.exists.wild.dev.test", QTYPE.A)).rcode == RCODE.NXDOMAIN


def test_override_wildcard_answers_without_authority(zone):
    outcome = zone.lookup(Query("www.romcyber.com", QTYPE.A))
    assert answers(outcome) == [("www.romcyber.com.", "A", "127.0.0.1")]
    assert not outcome.authoritative


@pytest.mark.parametrize("name", ["romcyber.com", "other.corp.test", "corp.test", "example.org"])
def test_override_domain_siblings_fall_through(zone, name):
    assert zone.lookup(Query(name, QTYPE.A)) is None


def test_override_name_missing_type_is_nodata_without_soa(zone):
    outcome = zone.lookup(Query("api.corp.test", QTYPE.AAAA))
    assert outcome.rcode == RCODE.NOERROR and not outcome.answer and not outcome.authority


def test_mx_and_srv_carry_glue(zone):
    outcome = zone.lookup(Query("dev.test", QTYPE.MX))
    assert [(str(rr.rname), str(rr.rdata)) for rr in outcome.additional] == [("web.dev.test.", "192.0.2.1")]
    outcome = zone.lookup(Query("_svc._tcp.dev.test", QTYPE.SRV))
    assert [str(rr.rdata) for rr in outcome.additional] == ["192.0.2.1"]


def test_any_gets_one_rrset(zone):
    outcome = zone.lookup(Query("web.dev.test", QTYPE.ANY))
    assert answers(outcome) == [("web.dev.test.", "A", "192.0.2.1")]


def test_zonefile_wins_over_other_sources_inside_its_zone():
    frags = {"file:dev": Fragment(tuple(parse_zone(OWNED, "dev.zone"))),
             "docker:1": Fragment(tuple(parse_record_line("web.dev.test. 10 IN A 198.51.100.1", "container web")))}
    zone, warnings = build_zone(frags)
    assert answers(zone.lookup(Query("web.dev.test", QTYPE.A))) == [("web.dev.test.", "A", "192.0.2.1")]
    assert warnings == ["container web:1: web.dev.test. is inside zone dev.test. owned by dev.zone:3; "
                        "the zonefile wins"]


def test_a_name_that_only_ends_like_an_owned_zone_is_not_inside_it():
    frags = {"file:dev": Fragment(tuple(parse_zone(OWNED, "dev.zone"))),
             "docker:1": Fragment(tuple(parse_record_line("webdev.test. 10 IN A 198.51.100.1", "container web")))}
    zone, warnings = build_zone(frags)
    assert answers(zone.lookup(Query("webdev.test", QTYPE.A))) == [("webdev.test.", "A", "198.51.100.1")]
    assert warnings == []


def test_same_name_from_two_sources_gives_all_addresses_once():
    one = parse_record_line("app.docker. 10 IN A 198.51.100.1", "container a")
    two = parse_record_line("app.docker. 10 IN A 198.51.100.2", "container b")
    again = parse_record_line("app.docker. 10 IN A 198.51.100.1", "container c")
    zone = build(("docker:a", one), ("docker:b", two), ("docker:c", again))
    assert sorted(str(rr.rdata) for rr in zone.lookup(Query("app.docker", QTYPE.A)).answer) == [
        "198.51.100.1", "198.51.100.2"]


def test_an_address_given_as_dnslib_rdata_and_as_parsed_text_is_one_record():
    parsed = parse_record_line("app.docker. 10 IN AAAA 2001:db8::1", "--record")
    built = [ZoneRecord("app.docker.", QTYPE.AAAA, 10, AAAA("2001:db8::1"), "container a")]
    zone = build(("flags", parsed), ("docker:a", built))
    assert answers(zone.lookup(Query("app.docker", QTYPE.AAAA))) == [("app.docker.", "AAAA", "2001:db8::1")]
    assert len(zone.records) == 1


def test_views_pick_the_clients_network_else_the_host_view():
    host = parse_record_line("web.docker. 10 IN A 127.0.0.1", "container web")
    on_front = [ZoneRecord("web.docker.", QTYPE.A, 10, r.rdata, "container web", "front")
                for r in parse_record_line("x. 1 IN A 172.20.0.5")]
    views = {"front": (ipaddress.ip_network("172.20.0.0/16"),), "lo": (ipaddress.ip_network("127.0.0.5/32"),)}
    zone = build(("docker:web", host + on_front, views))
    assert zone.views_of("172.20.9.9") == ("front",)
    assert zone.views_of("127.0.0.5") == ("lo",)
    assert zone.views_of("192.0.2.1") == ()
    inside = zone.lookup(Query("web.docker", QTYPE.A, client="172.20.9.9", views=("front",)))
    outside = zone.lookup(Query("web.docker", QTYPE.A, client="192.0.2.1"))
    assert [str(rr.rdata) for rr in inside.answer] == ["172.20.0.5"]
    assert [str(rr.rdata) for rr in outside.answer] == ["127.0.0.1"]


def test_two_soas_for_one_origin_keep_the_first():
    first = parse_zone("@ 60 SOA ns a 1 2 3 4 5\nx 60 A 192.0.2.1", "a.zone", origin="dup.test")
    second = parse_zone("@ 60 SOA ns a 9 2 3 4 5\ny 60 A 192.0.2.2", "b.zone", origin="dup.test")
    zone, warnings = build_zone({"file:a": Fragment(tuple(first)), "file:b": Fragment(tuple(second))})
    assert zone.soa_by_origin["dup.test."].origin == "a.zone:1"
    assert any("already owned by a.zone:1" in w for w in warnings)
    assert zone.lookup(Query("y.dup.test", QTYPE.A)).rcode == RCODE.NXDOMAIN


def test_a_network_view_replaces_the_host_views_addresses_whole():
    """A client sharing an IPv4-only network with the target gets its address there, and no AAAA
    at all: not the host view's ::1, which would send it somewhere else."""
    host = [*parse_record_line("web.docker. 10 IN A 127.0.0.1"), *parse_record_line("web.docker. 10 IN AAAA ::1"),
            *parse_record_line("web.docker. 10 IN TXT \"hello\"")]
    on_front = [ZoneRecord("web.docker.", QTYPE.A, 10, r.rdata, "container web", "front")
                for r in parse_record_line("x. 1 IN A 172.20.0.5")]
    views = {"front": (ipaddress.ip_network("172.20.0.0/16"),)}
    zone = build(("docker:web", host + on_front, views), ("docker:again", [], views))
    assert zone.view_networks == ((ipaddress.ip_network("172.20.0.0/16"), "front"),)  # listed once
    inside = Query("web.docker", QTYPE.AAAA, client="172.20.9.9", views=("front",))
    assert zone.lookup(inside).answer == () and zone.lookup(inside).rcode == RCODE.NOERROR
    txt = zone.lookup(Query("web.docker", QTYPE.TXT, client="172.20.9.9", views=("front",)))
    assert [str(rr.rdata) for rr in txt.answer] == ['"hello"']  # other types still come from the host view
    assert [str(rr.rdata) for rr in zone.lookup(Query("web.docker", QTYPE.AAAA)).answer] == ["::1"]


def test_a_cname_to_a_name_with_an_escaped_dot_is_followed():
    records = parse_zone("$TTL 60\n@ SOA ns admin 1 2 3 4 5\na\\.b A 192.0.2.7\nalias CNAME a\\.b\n"
                         "mx MX 10 a\\.b\n", "e.zone", origin="e.test")
    zone = build(("file:e", records))
    answer = zone.lookup(Query("alias.e.test", QTYPE.A))
    assert [(rr.rtype, rr.rdata.label.label if rr.rtype == QTYPE.CNAME else str(rr.rdata)) for rr in answer.answer] \
        == [(QTYPE.CNAME, (b"a.b", b"e", b"test")), (QTYPE.A, "192.0.2.7")]
    glue = zone.lookup(Query("mx.e.test", QTYPE.MX)).additional
    assert [(rr.rtype, str(rr.rdata)) for rr in glue] == [(QTYPE.A, "192.0.2.7")]
