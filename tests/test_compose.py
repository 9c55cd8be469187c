"""compose.example.yml, validated by Debian's `docker-compose config` (the live run of it is in
test_image.py, beside the image it needs)."""

from __future__ import annotations

import ipaddress
import os
import shutil

import pytest
import yaml
from composefile import EXAMPLE, compose
from conftest import ROOT

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="docker-compose is not installed (apt-get install docker-compose)")


def test_example_is_valid_and_says_what_it_promises(tmp_path) -> None:
    result = compose("-f", str(EXAMPLE), "config", cwd=ROOT, env={**os.environ, "DOCKER_GID": "998"})
    assert result.returncode == 0, result.stdout.decode()
    config = yaml.safe_load(result.stdout)
    dns, web, client = (config["services"][name] for name in ("dns", "web", "client"))
    address = dns["networks"]["stack"]["ipv4_address"]
    assert client["dns"] == [address]  # compose cannot name a service there: a fixed address
    subnet = ipaddress.ip_network(config["networks"]["stack"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    assert sorted(dns["ports"]) == ["127.0.0.1:53:53/tcp", "127.0.0.1:53:53/udp"]  # loopback only
    assert sorted(dns["volumes"]) == sorted(["/var/run/docker.sock:/var/run/docker.sock:ro",
                                             f"{ROOT}/zones:/zones:ro"])  # a directory: atomic saves reload
    assert dns["group_add"] == ["998"]
    assert "NET_BIND_SERVICE" in dns["cap_add"]
    assert "dns-sidecar.names" in web["labels"]


def test_example_insists_on_the_socket_group() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DOCKER_GID"}
    result = compose("-f", str(EXAMPLE), "config", cwd=ROOT, env=env)
    assert result.returncode != 0
    assert b"set DOCKER_GID to the group id of /var/run/docker.sock" in result.stdout
