"""Container inspect data -> names, addresses, views and PTRs (pure, no engine): the naming rules
and the split horizon, checked through the zone a client would be answered from."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from dnslib import QTYPE, RCODE

from sidecar.api import Query
from sidecar.sources.labels import DEFAULT_TTL, NameRules, container_records, parse_dns_name
from sidecar.zone.build import build_zone
from sidecar.zone.parse import parse_zone
from sidecar.zone.records import ZoneRecord
from sidecar.zone.zone import Fragment, Zone

FRONT = {"IPAddress": "172.20.0.5", "IPPrefixLen": 16, "GlobalIPv6Address": "2001:db8:5::5",
         "GlobalIPv6PrefixLen": 64}
RULES = NameRules()
BACK = {"IPAddress": "172.21.0.7", "IPPrefixLen": 16, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0}


def inspect(name: str = "web", labels: dict[str, str] | None = None, networks: dict | None = None,
            env: list[str] | None = None, running: bool = True, hostname: str = "abc123",
            domainname: str = "") -> dict[str, Any]:
    """The fields of `docker inspect` the naming rules read."""
    return {"Id": "f" * 64, "Name": "/" + name, "State": {"Running": running},
            "Config": {"Hostname": hostname, "Domainname": domainname, "Labels": labels or {},
                       "Env": env or ["PATH=/bin"]},
            "NetworkSettings": {"Networks": {"front": FRONT} if networks is None else networks}}


def zone_of(*infos: dict[str, Any], rules: NameRules = RULES, extra: dict[str, Fragment] | None = None) -> Zone:
    fragments = {f"docker:{i}": container_records(info, rules).fragment for i, info in enumerate(infos)}
    zone, _ = build_zone({**fragments, **(extra or {})})
    return zone


def ask(zone: Zone, name: str, qtype: str = "A", client: str = "127.0.0.1") -> list[str]:
    """The rdata a client at `client` gets, as text; [] for no data; 'NXDOMAIN' or None (not ours)."""
    outcome = zone.lookup(Query(name, getattr(QTYPE, qtype), client, views=zone.views_of(client)))
    if outcome is None:
        return None
    if outcome.rcode == RCODE.NXDOMAIN:
        return "NXDOMAIN"
    return [str(rr.rdata) for rr in outcome.answer]


def names_of(info: dict[str, Any], rules: NameRules = RULES) -> set[str]:
    return {r.name for r in container_records(info, rules).fragment.records if r.rtype != QTYPE.PTR}


def test_container_name_under_every_domain_with_default_ttl():
    rules = NameRules(domains=("docker.", "local."))
    zone = zone_of(inspect("Web"), rules=rules)
    assert ask(zone, "web.docker") == ["172.20.0.5"]
    assert ask(zone, "WEB.local") == ["172.20.0.5"]
    assert ask(zone, "web.docker", "AAAA") == ["2001:db8:5::5"]
    assert {r.ttl for r in zone.records} == {DEFAULT_TTL}


def test_compose_service_gets_one_address_per_replica():
    compose = {"com.docker.compose.service": "app", "com.docker.compose.project": "myproj"}
    one = inspect("myproj-app-1", compose, {"front": {**FRONT, "IPAddress": "172.20.0.2"}})
    two = inspect("myproj-app-2", compose, {"front": {**FRONT, "IPAddress": "172.20.0.3"}})
    zone = zone_of(one, two)
    assert sorted(ask(zone, "app.myproj.docker")) == ["172.20.0.2", "172.20.0.3"]
    assert ask(zone, "myproj-app-2.docker") == ["172.20.0.3"]


def test_hostname_and_domainname_only_when_a_domain_is_set():
    assert "db.corp.test." in names_of(inspect("x", hostname="db", domainname="corp.test"))
    assert names_of(inspect("x", hostname="db")) == {"x.docker."}


def test_label_names_with_wildcards():
    zone = zone_of(inspect(labels={"dns-sidecar.names": "web.dev.test, *.web.dev.test"}))
    assert ask(zone, "web.dev.test") == ["172.20.0.5"]
    assert ask(zone, "api.web.dev.test") == ["172.20.0.5"]
    assert ask(zone, "other.dev.test") is None  # not ours: falls through to upstream


def test_peer_labels_and_env():
    info = inspect(labels={"com.dnsdock.alias": "a.peer.test,b.peer.test",
                           "coredns.dockerdiscovery.host": "c.peer.test"},
                   env=["PATH=/bin", "HOSTNAMES=d.peer.test,e.peer.test"])
    assert names_of(info) == {"web.docker.", *(f"{x}.peer.test." for x in "abcde")}


def test_ptr_for_every_address_names_the_container_but_not_wildcards():
    zone = zone_of(inspect(labels={"dns-sidecar.names": "web.dev.test,*.web.dev.test"}))
    assert ask(zone, "5.0.20.172.in-addr.arpa", "PTR") == ["web.docker.", "web.dev.test."]
    v6 = "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.5.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    assert ask(zone, v6, "PTR") == ["web.docker.", "web.dev.test."]


def test_ttl_label():
    records = container_records(inspect(labels={"dns-sidecar.ttl": "300"}), NameRules()).fragment.records
    assert {r.ttl for r in records} == {300}


@pytest.mark.parametrize(("labels", "opt_in", "named"), [
    ({}, False, True),
    ({"dns-sidecar.enable": "false"}, False, False),
    ({}, True, False),
    ({"dns-sidecar.enable": "true"}, True, True),
    ({"dns-sidecar.enable": "TRUE"}, True, True),
])
def test_enable_label_and_opt_in(labels, opt_in, named):
    assert bool(names_of(inspect(labels=labels), NameRules(opt_in=opt_in))) is named


def test_stopped_container_has_no_records():
    assert container_records(inspect(running=False), NameRules()).fragment == Fragment()


@pytest.mark.parametrize(("labels", "env", "problem", "still"), [
    ({"dns-sidecar.names": "good.dev.test,bad..name,also.good.test"}, [],
     "label dns-sidecar.names='bad..name': empty label", {"good.dev.test.", "also.good.test."}),
    ({"dns-sidecar.ttl": "soon"}, [], "label dns-sidecar.ttl='soon'", set()),
    ({"dns-sidecar.ttl": "-5"}, [], "label dns-sidecar.ttl='-5'", set()),
    ({"dns-sidecar.enable": "maybe"}, [], "label dns-sidecar.enable='maybe': expected true or false", set()),
    ({"dns-sidecar.host-address": "localhost"}, [], "label dns-sidecar.host-address='localhost'", set()),
    ({"com.dnsdock.alias": "x" * 64 + ".test"}, [], "label com.dnsdock.alias=", set()),
    ({}, ["HOSTNAMES=ok.peer.test,*"], "env HOSTNAMES='*': bad label", {"ok.peer.test."}),
])
def test_malformed_value_is_reported_with_the_container_and_skipped(labels, env, problem, still):
    result = container_records(inspect("web", labels, env=env), NameRules())
    assert len(result.problems) == 1
    assert result.problems[0].startswith("container web: " + problem)
    assert result.problems[0].endswith("; skipped")
    names = {r.name for r in result.fragment.records if r.rtype != QTYPE.PTR}
    assert names == {"web.docker.", *still}
    assert {r.ttl for r in result.fragment.records} == {DEFAULT_TTL}


@pytest.mark.parametrize("bad", ["", "a..b", "-a.test", "a_b c.test", "*", "a.*.test", "x" * 64 + ".test"])
def test_parse_dns_name_rejects(bad):
    with pytest.raises(ValueError):
        parse_dns_name(bad)


def test_parse_dns_name_normalizes():
    assert parse_dns_name(" *.Web.Dev.Test ") == "*.web.dev.test."


# -- the split horizon ---------------------------------------------------------------------------

def multi(labels: dict[str, str] | None = None, name: str = "web") -> dict[str, Any]:
    return inspect(name, labels, {"front": FRONT, "back": BACK})


def test_client_in_a_shared_network_gets_the_address_there():
    zone = zone_of(multi())
    assert ask(zone, "web.docker", client="172.20.0.99") == ["172.20.0.5"]
    assert ask(zone, "web.docker", client="172.21.3.4") == ["172.21.0.7"]
    assert ask(zone, "web.docker", "AAAA", client="2001:db8:5::99") == ["2001:db8:5::5"]
    assert ask(zone, "web.docker", "AAAA", client="172.21.3.4") == []


def test_everyone_else_gets_the_first_network_by_name():
    zone = zone_of(multi())
    assert ask(zone, "web.docker", client="127.0.0.1") == ["172.21.0.7"]  # "back" < "front"
    assert ask(zone, "web.docker", client="192.0.2.1") == ["172.21.0.7"]


def test_network_label_chooses_the_host_view():
    zone = zone_of(multi({"dns-sidecar.network": "front"}))
    assert ask(zone, "web.docker") == ["172.20.0.5"]
    assert ask(zone, "web.docker", client="172.21.0.1") == ["172.21.0.7"]


def test_network_label_naming_a_foreign_network_falls_back_in_name_order():
    result = container_records(multi({"dns-sidecar.network": "elsewhere"}), NameRules())
    assert result.problems == ("container web: label dns-sidecar.network='elsewhere': the container has "
                               "no address on that network; skipped",)
    zone, _ = build_zone({"docker:x": result.fragment})
    assert ask(zone, "web.docker") == ["172.21.0.7"]


def test_host_address_flag_then_label_win_for_outsiders_only():
    flag = NameRules(host_address=("192.0.2.80",))
    zone = zone_of(multi(), multi({"dns-sidecar.host-address": "127.0.0.1,::1"}, "api"), rules=flag)
    assert ask(zone, "web.docker") == ["192.0.2.80"]
    assert ask(zone, "api.docker") == ["127.0.0.1"]
    assert ask(zone, "api.docker", "AAAA") == ["::1"]
    assert ask(zone, "api.docker", client="172.20.1.1") == ["172.20.0.5"]
    assert "1.0.0.127.in-addr.arpa." not in {r.name for r in zone.records}


def test_host_network_container_is_named_only_through_a_host_address():
    host_net = {"host": {"IPAddress": "", "IPPrefixLen": 0}}
    assert container_records(inspect(networks=host_net), RULES).fragment.records == ()
    zone = zone_of(inspect(labels={"dns-sidecar.host-address": "127.0.0.1"}, networks=host_net))
    assert ask(zone, "web.docker") == ["127.0.0.1"]


def test_view_mapped_by_flag_range_places_loopback_clients():
    flags = Fragment(views={"front": (ipaddress.ip_network("127.0.0.5/32"),)})
    zone = zone_of(multi(), extra={"flags": flags})
    assert ask(zone, "web.docker", client="127.0.0.5") == ["172.20.0.5"]
    assert ask(zone, "web.docker", client="127.0.0.6") == ["172.21.0.7"]


def test_two_containers_claiming_one_name_give_all_addresses():
    one = inspect("one", {"dns-sidecar.names": "shared.dev.test"})
    two = inspect("two", {"dns-sidecar.names": "shared.dev.test"}, {"front": {**FRONT, "IPAddress": "172.20.0.6"}})
    assert sorted(ask(zone_of(one, two), "shared.dev.test")) == ["172.20.0.5", "172.20.0.6"]


def test_zonefile_owning_the_name_wins():
    owned = parse_zone("$ORIGIN dev.test.\n@ 60 IN SOA ns hm 1 60 60 60 60\nweb 60 IN A 192.0.2.10\n",
                       "dev.zone")
    zone, warnings = build_zone({"file:dev.zone": Fragment(tuple(owned)),
                                 "docker:x": container_records(inspect(labels={
                                     "dns-sidecar.names": "web.dev.test,new.dev.test"}), NameRules()).fragment})
    assert ask(zone, "web.dev.test") == ["192.0.2.10"]
    assert ask(zone, "new.dev.test") == "NXDOMAIN"
    assert any("container web: web.dev.test. is inside zone dev.test." in w for w in warnings)


def test_records_say_where_they_came_from():
    records = container_records(inspect("web"), NameRules()).fragment.records
    assert {r.origin for r in records} == {"container web"}
    assert all(isinstance(r, ZoneRecord) for r in records)
