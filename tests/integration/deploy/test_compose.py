"""compose.example.yml, validated by Debian's `docker-compose config` with no variable set, and
docs/compose.md's walkthrough checked against it (the live run of both is in test_image.py,
beside the image it needs)."""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from dnslib import QTYPE

from sidecar.sources.files import parse_file
from tests.helpers import ROOT
from tests.helpers.walkthrough import COMPOSE_FILE, EXAMPLE, V2_MARK, walkthrough


def compose_config(env: dict[str, str]) -> dict:
    result = subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "config"], cwd=ROOT, env=env,
                            capture_output=True, stdin=subprocess.DEVNULL, timeout=60, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr == b"", result.stderr.decode()  # no warning about an unset variable either
    return yaml.safe_load(result.stdout)


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="docker-compose is not installed (apt-get install docker-compose)")
def test_example_needs_no_variable_and_says_what_it_promises() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER", "COMPOSE"))}
    config = compose_config(env)
    dns, web, client = (config["services"][name] for name in ("dns", "web", "client"))
    address = dns["networks"]["stack"]["ipv4_address"]
    assert client["dns"] == [address]  # compose cannot name a service there: a fixed address
    subnet = ipaddress.ip_network(config["networks"]["stack"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    assert sorted(dns["ports"]) == ["127.0.0.1:53:53/tcp", "127.0.0.1:53:53/udp"]  # loopback only
    assert sorted(dns["volumes"]) == sorted(["/var/run/docker.sock:/var/run/docker.sock:ro",
                                             f"{EXAMPLE}/zones:/zones:ro"])  # a directory: atomic saves reload
    assert "group_add" not in dns and "user" not in dns  # the entrypoint joins the socket's group
    assert dns["cap_drop"] == ["ALL"]
    assert sorted(dns["cap_add"]) == ["NET_BIND_SERVICE", "SETGID", "SETPCAP", "SETUID"]
    assert dns["security_opt"] == ["no-new-privileges:true"]
    assert client["depends_on"] == {"dns": {"condition": "service_healthy"}}
    assert "dns-sidecar.names" in web["labels"]

    env["DOCKER_SOCKET"] = "/run/user/1000/docker.sock"  # the socket line's ADAPT, without an edit
    volumes = compose_config(env)["services"]["dns"]["volumes"]
    assert "/run/user/1000/docker.sock:/var/run/docker.sock:ro" in volumes


def test_socket_line_is_marked_adapt() -> None:
    lines = COMPOSE_FILE.read_text().splitlines()
    socket_line = next(i for i, line in enumerate(lines) if ":/var/run/docker.sock:ro" in line)
    comment = lines[socket_line - 5:socket_line]
    assert any("ADAPT" in line and "socket" in line for line in comment), comment


def test_shipped_zone_does_not_collide_with_the_examples_labels_and_overrides() -> None:
    config = yaml.safe_load(COMPOSE_FILE.read_text())
    theirs = [name.strip().removeprefix("*.") + "." for name in
              config["services"]["web"]["labels"]["dns-sidecar.names"].split(",")]
    theirs += [line.split()[0].removeprefix("*.") for line in
               config["services"]["dns"]["environment"]["DNS_SIDECAR_RECORD"].splitlines()]
    zones = sorted((EXAMPLE / "zones").glob("*.zone"))
    assert zones, "the example mounts ./zones: it ships one"
    for zone in zones:
        origins = {rec.name for rec in parse_file(zone, "zone").records if rec.rtype == QTYPE.SOA}
        assert origins, zone
        for origin in origins:
            clashes = [name for name in theirs if name == origin or name.endswith("." + origin)]
            assert not clashes, (zone.name, origin, clashes)


def test_walkthrough_is_the_same_for_both_compose_spellings() -> None:
    v1 = walkthrough()
    assert v1[0] == "docker-compose -p demo -f compose.example.yml up -d"
    assert walkthrough(V2_MARK) == [line.replace("docker-compose ", "docker compose ") for line in v1]
    for line in v1:
        if line.startswith("docker-compose "):
            assert Path(ROOT / line.split()[4]).is_file(), line
