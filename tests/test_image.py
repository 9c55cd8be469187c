"""The image from the project's Dockerfile, run as users run it: host networking, the Docker
socket mounted read-only, configuration through DNS_SIDECAR_* variables; then compose.example.yml
itself (its host-networking variant) on the same engine. Queried over loopback only.

The compose run lives here, not in test_compose.py, so that one engine and one image build serve
both: fixtures imported into two modules would each start their own."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from composefile import compose, host_network_variant
from conftest import free_port, query, wait_for
from dns import rcode
from dockerd import Dockerd, docker_client_fixture, docker_engine_fixture  # noqa: F401 - fixtures
from imagebuild import loopback_with_free_53, sidecar_image_fixture  # noqa: F401 - fixture

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def _uids(pid: int) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"no Uid line for pid {pid}")


@pytest.fixture
def running(docker_client: docker.DockerClient, docker_engine: Dockerd,
            sidecar_image: str) -> Iterator[tuple[docker.models.containers.Container, str]]:
    host = loopback_with_free_53()
    container = docker_client.containers.run(
        sidecar_image, detach=True, network_mode="host",
        volumes={str(docker_engine.socket): {"bind": "/var/run/docker.sock", "mode": "ro"}},
        group_add=[str(docker_engine.socket.stat().st_gid)],
        environment={"DNS_SIDECAR_LISTEN": f"{host}:53", "DNS_SIDECAR_UPSTREAM": "127.0.0.1:9",
                     "DNS_SIDECAR_RECORD": "img.test. 60 IN A 192.0.2.53"})
    try:
        yield container, host
    finally:
        print(container.logs().decode(errors="replace"))
        container.remove(force=True)


def test_image_answers_on_port_53_as_non_root_and_turns_healthy(running) -> None:
    container, host = running
    reply = wait_for(lambda: query(host, 53, "img.test.", timeout=0.5), timeout=30, what="the image answering")
    assert reply.rcode() == rcode.NOERROR
    assert addresses(reply) == ["192.0.2.53"]
    assert query(host, 53, "img.test.", tcp=True).answer[0].ttl == 60

    container.reload()
    assert all(uid != 0 for uid in _uids(container.attrs["State"]["Pid"])), "the server runs as root"
    assert container.attrs["Config"]["User"] == "dns-sidecar"

    def health() -> str:
        container.reload()
        return container.attrs["State"]["Health"]["Status"]

    wait_for(lambda: health() == "healthy", timeout=40, interval=0.5, what="HEALTHCHECK healthy")
    logs = container.logs().decode(errors="replace")
    assert f"listening on {host}:53" in logs


def test_image_metadata(docker_client: docker.DockerClient, sidecar_image: str) -> None:
    config = docker_client.images.get(sidecar_image).attrs["Config"]
    assert config["User"] == "dns-sidecar"
    assert config["Labels"]["org.opencontainers.image.title"] == "dns-sidecar"
    assert config["Healthcheck"]["Test"][-3:] == ["-m", "sidecar", "health"]
    assert "DNS_SIDECAR_LISTEN=0.0.0.0:53" in config["Env"]


@pytest.fixture
def stack(docker_client, docker_engine: Dockerd, sidecar_image: str, tmp_path) -> Iterator[dict]:
    host, http = loopback_with_free_53(), f"127.0.0.1:{free_port()}"
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "stack.test.zone").write_text("$ORIGIN stack.test.\n@ IN SOA ns admin 1 3600 600 86400 60\n"
                                           "ns IN A 192.0.2.1\ndb IN A 192.0.2.40\n")
    config, subnet = host_network_variant(sidecar_image, docker_engine, host, http, zones)
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(config))
    env = {**os.environ, "DOCKER_HOST": docker_engine.url, "DOCKER_GID": str(docker_engine.socket.stat().st_gid),
           "COMPOSE_PROJECT_NAME": "example"}
    log = tmp_path / "compose.log"
    up = compose("up", "-d", cwd=tmp_path, env=env, log=log)
    try:
        assert up.returncode == 0, log.read_text()
        yield {"host": host, "http": http, "subnet": ipaddress.ip_network(subnet), "client": docker_client}
    finally:
        compose("logs", "--no-color", cwd=tmp_path, env=env, log=log)
        print(log.read_text(errors="replace"))  # shown when the test failed
        compose("down", "-t", "2", cwd=tmp_path, env=env, log=log)


def addresses(reply) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose is not installed")
def test_compose_example_runs_with_host_networking(stack) -> None:
    host, subnet = stack["host"], stack["subnet"]

    def web_addresses(name: str) -> list[str]:
        return addresses(query(host, 53, name, timeout=0.5))

    for name in ("web.example.docker.", "api.dev.test.", "x.web.dev.test."):
        found = wait_for(lambda name=name: web_addresses(name), timeout=30, what=f"{name} answered")
        assert [ipaddress.ip_address(a) in subnet for a in found] == [True], (name, found)
    assert addresses(query(host, 53, "db.stack.test.")) == ["192.0.2.40"]  # the mounted zone directory
    assert addresses(query(host, 53, "anything.dev.test.")) == ["127.0.0.1"]  # DNS_SIDECAR_RECORD

    with urllib.request.urlopen(f"http://{stack['http']}/records", timeout=5) as response:
        records = json.load(response)
    api = [r for r in records if r["name"] == "api.dev.test." and r["view"] is None]
    assert [r["origin"] for r in api] == ["container example_web_1"]  # compose 1.x names it so

    client: docker.DockerClient = stack["client"]

    def service(name: str):
        return client.containers.list(all=True, filters={"label": f"com.docker.compose.service={name}"})[0]

    def health() -> str:
        return service("dns").attrs["State"]["Health"]["Status"]

    wait_for(lambda: health() == "healthy", timeout=40, interval=0.5, what="the sidecar's HEALTHCHECK")

    def client_done():
        container = service("client")
        return container.attrs["State"]["Status"] == "exited" and container

    finished = wait_for(client_done, timeout=40, interval=0.5, what="the client's lookup")
    assert finished.attrs["State"]["ExitCode"] == 0, finished.logs().decode(errors="replace")
    assert "api.dev.test" in finished.logs().decode(errors="replace")
