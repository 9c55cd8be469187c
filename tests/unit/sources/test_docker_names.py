"""Aliases, health, SRV and the host's names from container inspect data (pure, no engine),
checked through the zone a client would be answered from. The same rules against real engines
are in test_docker_engines.py."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from dnslib import QTYPE

from sidecar.api import Query
from sidecar.sources.hostnames import host_name_records
from sidecar.sources.labels import NameRules, container_records
from sidecar.zone.build import build_zone
from sidecar.zone.records import ZoneRecord
from sidecar.zone.zone import Fragment, Zone
from tests.unit.sources.test_labels import BACK, FRONT, ask, inspect

RULES = NameRules()
FRONT_NET = ipaddress.ip_network("172.20.0.0/16")
BACK_NET = ipaddress.ip_network("172.21.0.0/16")


def zone_from(*infos: dict[str, Any], rules: NameRules = RULES, extra: dict[str, Fragment] | None = None
              ) -> tuple[Zone, list[str]]:
    fragments = {f"docker:{i}": container_records(info, rules).fragment for i, info in enumerate(infos)}
    return build_zone({**fragments, **(extra or {})})


def with_aliases(settings: dict, *aliases: str, dns_names: tuple[str, ...] = ()) -> dict:
    return {**settings, "Aliases": list(aliases), **({"DNSNames": list(dns_names)} if dns_names else {})}


def healthy(info: dict, status: str) -> dict:
    return {**info, "State": {**info["State"], "Health": {"Status": status}}}


# -- aliases ------------------------------------------------------------------------------------

def test_single_label_alias_is_answered_only_inside_its_network():
    info = inspect("proj-db-1", networks={"front": with_aliases(FRONT, "db", "f" * 12), "back": BACK})
    zone, _ = zone_from(info)
    for name in ("db", "db.docker"):
        assert ask(zone, name, client="172.20.0.9") == ["172.20.0.5"], name
        assert ask(zone, name, client="172.21.0.9") is None, name  # another network: not ours
        assert ask(zone, name, client="127.0.0.1") is None, name
    assert ask(zone, "ffffffffffff.docker", client="172.20.0.9") is None  # the engine's short ID alias
    assert "db.docker." not in ask(zone, "5.0.20.172.in-addr.arpa", "PTR")


def test_two_projects_web_never_mix_and_shared_alias_answers_all():
    one = inspect("a-web-1", networks={"front": with_aliases(FRONT, "web")})
    two = inspect("a-web-2", networks={"front": with_aliases({**FRONT, "IPAddress": "172.20.0.6"}, "web")})
    other = inspect("b-web-1", networks={"back": with_aliases(BACK, "web")})
    zone, _ = zone_from(one, two, other)
    assert sorted(ask(zone, "web.docker", client="172.20.9.9")) == ["172.20.0.5", "172.20.0.6"]
    assert ask(zone, "web.docker", client="172.21.9.9") == ["172.21.0.7"]


def test_dotted_alias_and_dns_names_are_names_in_every_view():
    info = inspect("web", networks={"front": with_aliases(FRONT, "db.dev.test", dns_names=("web", "cache")),
                                    "back": BACK})
    zone, _ = zone_from(info)
    assert ask(zone, "db.dev.test", client="172.20.0.9") == ["172.20.0.5"]
    assert ask(zone, "db.dev.test", client="172.21.0.9") == ["172.21.0.7"]
    assert ask(zone, "db.dev.test") == ["172.21.0.7"]  # host view: first network by name
    assert ask(zone, "cache", client="172.20.0.9") == ["172.20.0.5"]
    assert "db.dev.test." in ask(zone, "5.0.20.172.in-addr.arpa", "PTR")


def test_dotted_alias_outside_the_name_policy_is_refused_and_the_rest_stand():
    info = inspect("web", networks={"front": with_aliases(FRONT, "www.google.com", "db.dev.test")})
    result = container_records(info, NameRules())
    assert len(result.problems) == 1
    assert result.problems[0].startswith("container web: alias on network front='www.google.com': refused")
    zone, _ = build_zone({"d": result.fragment})
    assert ask(zone, "www.google.com", client="172.20.0.9") is None
    assert ask(zone, "db.dev.test", client="172.20.0.9") == ["172.20.0.5"]


def test_bad_alias_is_reported_and_the_rest_stand():
    info = inspect("web", networks={"front": with_aliases(FRONT, "bad alias", "good", "x..y")})
    result = container_records(info, NameRules())
    assert result.problems == (
        "container web: alias on network front='x..y': empty label; skipped",
        "container web: alias on network front='bad alias': not a valid DNS label; skipped")
    zone, _ = build_zone({"d": result.fragment})
    assert ask(zone, "good", client="172.20.0.9") == ["172.20.0.5"]
    assert ask(zone, "web.docker") == ["172.20.0.5"]


# -- health -------------------------------------------------------------------------------------

def replicas(*states: str, labels: dict[str, str] | None = None) -> list[dict]:
    compose = {"com.docker.compose.service": "app", "com.docker.compose.project": "p", **(labels or {})}
    return [healthy(inspect(f"p-app-{i}", compose, {"front": {**FRONT, "IPAddress": f"172.20.0.{10 + i}"}}), state)
            for i, state in enumerate(states)]


@pytest.mark.parametrize(("states", "answered"), [
    (("healthy", "unhealthy", "starting"), ["172.20.0.10"]),
    (("none", "unhealthy"), ["172.20.0.10"]),  # no healthcheck counts as good
    (("", "starting"), ["172.20.0.10"]),  # Podman's "no healthcheck"
    (("unhealthy", "starting"), ["172.20.0.10", "172.20.0.11"]),  # none good: all answered
])
def test_unhealthy_replicas_are_left_out_while_one_is_good(states, answered):
    zone, warnings = zone_from(*replicas(*states))
    assert sorted(ask(zone, "app.p.docker")) == answered
    assert sorted(ask(zone, "app.p.docker", client="172.20.1.1")) == answered
    assert ("app.p.docker.: no replica is healthy; all are answered" in warnings) is (len(answered) > 1)
    assert len(zone.records) == len(build_zone({"x": Fragment(zone.records)})[0].records)  # all listed


def test_health_ignore_label_and_invented_status():
    zone, _ = zone_from(*replicas("healthy", "unhealthy", labels={"dns-sidecar.health": "ignore"}))
    assert sorted(ask(zone, "app.p.docker")) == ["172.20.0.10", "172.20.0.11"]
    odd = container_records(healthy(inspect("odd"), "degraded"), NameRules())
    assert odd.problems == ("container odd: health status='degraded': expected one of healthy, unhealthy, "
                            "starting; answered as unchecked; skipped",)
    assert {r.health for r in odd.fragment.records} == {None}


# -- SRV ----------------------------------------------------------------------------------------

def ported(name: str, address: str, labels: dict[str, str] | None = None, published: bool = True,
           state: str = "") -> dict:
    info = inspect(name, {"com.docker.compose.service": "web", "com.docker.compose.project": "p", **(labels or {})},
                   {"front": {**FRONT, "IPAddress": address, "GlobalIPv6Address": ""}})
    info["Config"]["ExposedPorts"] = {"80/tcp": {}, "53/udp": {}}
    bindings = [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}]
    info["NetworkSettings"]["Ports"] = {"80/tcp": bindings if published else None, "53/udp": None}
    return healthy(info, state)


def srv(zone: Zone, name: str, client: str = "127.0.0.1") -> list[str]:
    answer = ask(zone, name, "SRV", client)
    return sorted(answer) if isinstance(answer, list) else answer


def test_srv_per_exposed_port_and_label_in_both_views():
    zone, _ = zone_from(ported("p-web-1", "172.20.0.10", {"dns-sidecar.srv": "http:80/tcp"}),
                        ported("p-web-2", "172.20.0.11", published=False))
    inside = "172.20.9.9"
    assert srv(zone, "_80._tcp.web.p.docker", inside) == ["0 1 80 p-web-1.docker.", "0 1 80 p-web-2.docker."]
    assert srv(zone, "_53._udp.p-web-2.docker", inside) == ["0 1 53 p-web-2.docker."]
    assert srv(zone, "_http._tcp.web.p.docker", inside) == ["0 1 80 p-web-1.docker."]
    assert srv(zone, "_80._tcp.web.p.docker") == ["0 1 8080 host.docker.internal."]  # published only
    assert srv(zone, "_53._udp.p-web-1.docker") is None  # not published: not ours in the host view
    reply = zone.lookup(Query("_80._tcp.web.p.docker", QTYPE.SRV, inside, views=zone.views_of(inside)))
    assert sorted(str(rr.rdata) for rr in reply.additional) == ["172.20.0.10", "172.20.0.11"]


def test_srv_leaves_out_unhealthy_replicas_and_bad_specs():
    rules = NameRules()
    zone, _ = zone_from(ported("p-web-1", "172.20.0.10", state="healthy"),
                        ported("p-web-2", "172.20.0.11", {"dns-sidecar.srv": "http:80,x:99999/tcp,ok:81/udp"},
                               state="unhealthy"), rules=rules)
    assert srv(zone, "_80._tcp.web.p.docker", "172.20.9.9") == ["0 1 80 p-web-1.docker."]
    problems = container_records(ported("p-web-2", "172.20.0.11", {"dns-sidecar.srv": "http:80,x:99999/tcp"}),
                                 rules).problems
    assert problems == ("container p-web-2: label dns-sidecar.srv='http:80': expected PORT/tcp|udp|sctp; skipped",
                        "container p-web-2: label dns-sidecar.srv='x:99999/tcp': port must be 1..65535; skipped")
    assert srv(zone, "_ok._udp.p-web-2.docker", "172.20.9.9") == ["0 1 81 p-web-2.docker."]


def test_srv_host_view_only_for_bindings_the_host_name_reaches():
    info = ported("p-web-1", "172.20.0.10")
    info["NetworkSettings"]["Ports"]["80/tcp"] = [{"HostIp": "127.0.0.1", "HostPort": "8081"},
                                                  {"HostIp": "192.0.2.9", "HostPort": "8082"}]
    zone, _ = zone_from(info)
    assert srv(zone, "_80._tcp.web.p.docker") == ["0 1 8081 host.docker.internal."]
    flagged, _ = zone_from(info, rules=NameRules(host_address=("192.0.2.9",), host_names=("gw.test.",)))
    assert srv(flagged, "_80._tcp.web.p.docker") == ["0 1 8082 gw.test."]


# -- the host's own names -----------------------------------------------------------------------

def test_host_name_is_the_gateway_inside_and_loopback_or_flag_outside():
    gateways = {"front": (ipaddress.ip_address("172.20.0.1"), ipaddress.ip_address("2001:db8:5::1")),
                "back": (ipaddress.ip_address("172.21.0.1"),)}
    views = {"front": (FRONT_NET,), "back": (BACK_NET,)}
    records = host_name_records(("host.docker.internal.",), (), gateways)
    assert all(isinstance(r, ZoneRecord) for r in records)
    zone, _ = build_zone({"n": Fragment(records, views)})
    assert ask(zone, "host.docker.internal") == ["127.0.0.1"]
    assert ask(zone, "host.docker.internal", client="172.20.3.3") == ["172.20.0.1"]
    assert ask(zone, "host.docker.internal", "AAAA", client="172.20.3.3") == ["2001:db8:5::1"]
    assert ask(zone, "host.docker.internal", client="172.21.3.3") == ["172.21.0.1"]
    flagged, _ = build_zone({"n": Fragment(host_name_records(("a.test.", "b.test."), ("192.0.2.80",), gateways),
                                           views)})
    assert ask(flagged, "b.test") == ["192.0.2.80"]
    assert ask(flagged, "a.test", client="172.21.3.3") == ["172.21.0.1"]


def test_gateways_are_read_from_each_network():
    result = container_records(inspect(networks={"front": {**FRONT, "Gateway": "172.20.0.1", "IPv6Gateway": ""}}),
                               NameRules())
    assert result.gateways == {"front": (ipaddress.ip_address("172.20.0.1"),)}
