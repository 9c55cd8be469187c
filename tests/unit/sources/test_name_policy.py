"""The name policy for containers, as a plain value: which names a container may claim, and
that the operator's data (flags, files) beats what a container claims at the same name."""

from __future__ import annotations

import pytest

from sidecar.sources.labels import NameRules, container_records
from sidecar.sources.name_policy import NamePolicy
from sidecar.zone.build import build_zone
from sidecar.zone.parse import parse_hosts, parse_record_line
from sidecar.zone.zone import Fragment
from tests.unit.sources.test_labels import ask, inspect, names_of, zone_of

POLICY = NamePolicy(("docker.",), ("dev.example.com.", "com."))


@pytest.mark.parametrize("name", [
    "web.docker.", "app.myproj.docker.", "*.web.docker.",  # under --domain
    "web.dev.test.", "*.web.dev.test.", "db.example.", "x.invalid.", "api.internal.", "nas.home.arpa.",
    "web.dev.example.com.", "*.web.dev.example.com.", "dev.example.com.",  # under --label-domain
    "google.com.",  # --label-domain com: its names, not the suffix or a wildcard over it
])
def test_claimable(name):
    assert POLICY.refusal(name) is None


@pytest.mark.parametrize(("name", "why"), [
    ("localhost.", "localhost is loopback's alone"),
    ("web.localhost.", "localhost is loopback's alone"),
    ("test.", "a bare top-level domain"),
    ("docker.", "a bare top-level domain"),
    ("www.google.org.", "not under a domain containers may claim (docker., test., example., invalid., "
                        "internal., home.arpa., dev.example.com., com.)"),
    ("1.0.0.127.in-addr.arpa.", "not under a domain"),
    ("*.com.", "a wildcard over the public suffix com."),
    ("*.test.", "a wildcard over the public suffix test."),
    ("*.docker.", "a wildcard over the public suffix docker."),
    ("*.home.arpa.", "a wildcard over the public suffix home.arpa."),
    ("home.arpa.", "a public suffix"),
    ("*.kawasaki.jp.", "not under a domain"),
])
def test_refused(name, why):
    assert POLICY.refusal(name).startswith(why)


def test_public_suffixes_come_from_the_list_not_only_top_level_domains():
    policy = NamePolicy((), ("uk.", "io."))
    assert policy.refusal("*.co.uk.") == "a wildcard over the public suffix co.uk."
    assert policy.refusal("co.uk.") == "a public suffix"
    assert policy.refusal("*.github.io.") == "a wildcard over the public suffix github.io."  # its private section
    assert policy.refusal("*.mine.co.uk.") is None
    assert policy.refusal("me.github.io.") is None


@pytest.mark.parametrize(("labels", "env", "hostname", "domainname", "problem"), [
    ({"dns-sidecar.names": "*.com,web.dev.test"}, [], "h", "",
     "label dns-sidecar.names='*.com': refused: not under a domain containers may claim"),
    ({"dns-sidecar.names": "localhost"}, [], "h", "", "label dns-sidecar.names='localhost': refused: localhost"),
    ({"com.dnsdock.alias": "www.google.com"}, [], "h", "", "label com.dnsdock.alias='www.google.com': refused"),
    ({"coredns.dockerdiscovery.host": "*.test"}, [], "h", "",
     "label coredns.dockerdiscovery.host='*.test': refused: a wildcard over the public suffix test."),
    ({}, ["HOSTNAMES=www.google.com"], "h", "", "env HOSTNAMES='www.google.com': refused"),
    ({}, [], "www", "google.com", "hostname.domainname='www.google.com': refused"),
])
def test_claims_outside_the_policy_are_reported_and_dropped(labels, env, hostname, domainname, problem):
    info = inspect("web", labels, env=env or None, hostname=hostname, domainname=domainname)
    result = container_records(info, NameRules())
    assert len(result.problems) == 1
    assert result.problems[0].startswith("container web: " + problem) and result.problems[0].endswith("; skipped")
    assert names_of(info) <= {"web.docker.", "web.dev.test."}  # the container's other names stand
    assert "web.docker." in names_of(info)


def test_label_domain_widens_what_containers_may_claim():
    info = inspect("web", {"dns-sidecar.names": "api.corp.example.com"})
    assert names_of(info) == {"web.docker."}
    assert names_of(info, NameRules(label_domains=("corp.example.com.",))) == {"web.docker.", "api.corp.example.com."}


def test_domain_localhost_gives_containers_no_names():
    result = container_records(inspect("web"), NameRules(domains=("localhost.",)))
    assert result.fragment.records == ()
    assert result.problems == ("container web: container name='web.localhost.': refused: localhost is "
                               "loopback's alone; skipped",)


@pytest.mark.parametrize("operator", [
    Fragment(tuple(parse_record_line("web.dev.test. 60 IN A 192.0.2.10"))),
    Fragment(tuple(parse_hosts("192.0.2.10 web.dev.test\n", "/etc/hosts.d/dev"))),
])
def test_operator_records_beat_a_label_at_the_same_name(operator):
    container = container_records(inspect("web", {"dns-sidecar.names": "web.dev.test,api.dev.test"}), NameRules())
    zone = zone_of(inspect("other", {"dns-sidecar.names": "web.dev.test"}), extra={"operator": operator})
    assert ask(zone, "web.dev.test") == ["192.0.2.10"]
    zone = zone_of(extra={"operator": operator, "docker:web": container.fragment})
    assert ask(zone, "web.dev.test") == ["192.0.2.10"]  # never merged into the operator's RRset
    assert ask(zone, "web.dev.test", "AAAA") == []  # nor beside it
    assert ask(zone, "web.dev.test", client="172.20.0.9") == ["192.0.2.10"]  # in the container's network too
    assert ask(zone, "api.dev.test") == ["172.20.0.5"]  # the container's other names stand


def test_operator_beating_a_label_is_said():
    operator = Fragment(tuple(parse_record_line("web.dev.test. 60 IN A 192.0.2.10")))
    container = container_records(inspect("web", {"dns-sidecar.names": "web.dev.test"}), NameRules()).fragment
    _, warnings = build_zone({"docker:web": container, "flags": operator})
    assert "container web: web.dev.test. is held by --record:1; the operator's records win" in warnings
