"""The image from the project's Dockerfile, built by the documented no-registry recipe and run
as users run it: host networking, the Docker socket mounted read-only, configuration through
DNS_SIDECAR_* variables; then docs/compose.md's walkthrough, word for word, on an engine in a
private network namespace. Queried over loopback only (the namespace's own, for the stack).

The compose run lives here, not in test_compose.py, so that one image build serves both:
fixtures imported into two modules would each start their own."""

from __future__ import annotations

import ipaddress
import re
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from dns import rcode

from tests.helpers.dockerd import Dockerd, docker_client_fixture, docker_engine_fixture  # noqa: F401 - fixtures
from tests.helpers.imagebuild import Build, loopback_with_free_53, offline_build_fixture, sidecar_image_fixture  # noqa: F401
from tests.helpers.process import query, wait_for
from tests.helpers.walkthrough import V2_MARK, Stack, copy_images, engine_in_namespace, walkthrough

pytestmark = [pytest.mark.docker, pytest.mark.slow]


NET_BIND_SERVICE = 1 << 10


def _status(pid: int) -> dict[str, str]:
    """The kernel's word on a process: Uid, Groups, CapEff, CapBnd, NoNewPrivs ..."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


@pytest.fixture
def running(docker_client: docker.DockerClient, docker_engine: Dockerd,
            sidecar_image: str) -> Iterator[tuple[docker.models.containers.Container, str]]:
    host = loopback_with_free_53()
    container = docker_client.containers.run(
        sidecar_image, detach=True, network_mode="host",
        volumes={str(docker_engine.socket): {"bind": "/var/run/docker.sock", "mode": "ro"}},
        environment={"DNS_SIDECAR_LISTEN": f"{host}:53", "DNS_SIDECAR_UPSTREAM": "127.0.0.1:9",
                     "DNS_SIDECAR_RECORD": "img.test. 60 IN A 192.0.2.53"})
    try:
        yield container, host
    finally:
        print(container.logs().decode(errors="replace"))
        container.remove(force=True)


def test_image_answers_on_port_53_as_its_own_user_and_turns_healthy(running, docker_engine: Dockerd) -> None:
    container, host = running
    reply = wait_for(lambda: query(host, 53, "img.test.", timeout=0.5), timeout=30, what="the image answering")
    assert reply.rcode() == rcode.NOERROR
    assert addresses(reply) == ["192.0.2.53"]
    assert query(host, 53, "img.test.", tcp=True).answer[0].ttl == 60

    container.reload()
    server = _status(container.attrs["State"]["Pid"])
    assert server["Uid"].split() == ["5353"] * 4, server["Uid"]  # dns-sidecar, real to file system
    assert str(docker_engine.socket.stat().st_gid) in server["Groups"].split()  # joined with no group_add
    for capabilities in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(server[capabilities], 16) == NET_BIND_SERVICE, (capabilities, server[capabilities])

    def health() -> str:
        container.reload()
        return container.attrs["State"]["Health"]["Status"]

    wait_for(lambda: health() == "healthy", timeout=40, interval=0.5, what="HEALTHCHECK healthy")
    logs = container.logs().decode(errors="replace")
    assert f"listening on {host}:53" in logs


def test_image_with_a_socket_only_root_may_open_keeps_uid_0_without_capabilities(
        docker_client: docker.DockerClient, sidecar_image: str, tmp_path) -> None:
    """Where the socket gives its group no write (as some Docker Desktop versions mount it), no
    group helps: uid 0 stays, with NET_BIND_SERVICE alone, and the log says so."""
    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        path.chmod(0o755)
        container = docker_client.containers.run(
            sidecar_image, detach=True, network_mode="none", security_opt=["no-new-privileges:true"],
            volumes={str(path): {"bind": "/var/run/docker.sock", "mode": "ro"}},
            environment={"DNS_SIDECAR_LISTEN": "127.0.0.1:53", "DNS_SIDECAR_UPSTREAM": "127.0.0.1:9"})
        try:
            wait_for(lambda: b"listening on 127.0.0.1:53" in container.logs(), timeout=30, what="the server")
            container.reload()
            server = _status(container.attrs["State"]["Pid"])
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
    assert server["Uid"].split() == ["0"] * 4
    for capabilities in ("CapEff", "CapPrm", "CapBnd"):
        assert int(server[capabilities], 16) == NET_BIND_SERVICE, (capabilities, server[capabilities])
    assert server["NoNewPrivs"] == "1"
    assert ("dns-sidecar: /var/run/docker.sock is root's with mode 755 (no group write): running as uid 0 "
            "without capabilities, not as dns-sidecar") in logs


def addresses(reply) -> list[str]:
    return [rr.to_text() for rrset in reply.answer for rr in rrset]


def test_image_metadata(docker_client: docker.DockerClient, sidecar_image: str) -> None:
    config = docker_client.images.get(sidecar_image).attrs["Config"]
    assert config["User"] == ""  # root only until the entrypoint has joined the socket's group
    assert config["Entrypoint"] == ["dns-sidecar-entrypoint"]
    assert config["Labels"]["org.opencontainers.image.title"] == "dns-sidecar"
    assert config["Healthcheck"]["Test"] == ["CMD", "dns-sidecar-entrypoint", "health"]
    assert "DNS_SIDECAR_LISTEN=0.0.0.0:53" in config["Env"]




def test_offline_build_is_complete_and_quiet(offline_build: Build) -> None:
    assert "useradd warning" not in offline_build.output
    assert f"built {offline_build.tag}" in offline_build.output


@pytest.fixture(scope="module")
def namespace_engine(docker_engine: Dockerd, sidecar_image: str) -> Iterator[Dockerd]:
    """An engine in a network namespace of its own, holding the session's image and busybox."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    with engine_in_namespace() as engine:
        copy_images(docker_engine, engine)
        yield engine


def dig_addresses(result) -> list[ipaddress.IPv4Address]:
    assert result.returncode == 0, result.stdout + result.stderr
    return [ipaddress.ip_address(line) for line in result.stdout.split()]


def test_docs_walkthrough_word_for_word(namespace_engine: Dockerd, tmp_path) -> None:
    """docs/compose.md's docker-compose lines, run as written on a real engine: healthy, the web
    service's names through the published port over UDP and TCP, the zonefile, the lookup from
    inside the stack, an edited zonefile served at once, and nothing left after `down`."""
    commands = walkthrough()
    assert walkthrough(V2_MARK) == [line.replace("docker-compose ", "docker compose ") for line in commands]
    up, *steps, down = commands
    assert up.endswith(" up -d") and down.endswith(" down"), commands
    stack = Stack(namespace_engine, tmp_path)
    client = namespace_engine.client()
    try:
        seconds = stack.up_until_healthy(up, client)
        print(f"from `up -d` to healthy: {seconds:.1f} s")
        dns = client.containers.list(filters={"label": "com.docker.compose.service=dns"})[0]
        server = _status(dns.attrs["State"]["Pid"])
        assert server["Uid"].split() == ["5353"] * 4, server["Uid"]
        assert str(namespace_engine.socket.stat().st_gid) in server["Groups"].split()  # no variable set
        assert int(server["CapEff"], 16) == int(server["CapBnd"], 16) == NET_BIND_SERVICE
        assert server["NoNewPrivs"] == "1"
        subnet = ipaddress.ip_network("172.28.53.0/24")
        results = {line: stack.run(line) for line in steps}
        for line, result in results.items():
            assert result.returncode == 0, (line, result.stdout, result.stderr)
        by_name = {line.split()[-1]: result for line, result in results.items() if line.startswith("dig ")}
        web, api = dig_addresses(by_name["web.demo.docker"]), dig_addresses(by_name["api.dev.test"])
        assert len(web) == 1 and web[0] in subnet and api == web, (web, api)
        assert any("+tcp" in line for line in results if line.endswith("api.dev.test") and line.startswith("dig"))
        assert dig_addresses(by_name["printer.office.test"]) == [ipaddress.ip_address("192.0.2.80")]
        assert dig_addresses(stack.run("dig +short @127.0.0.1 x.web.dev.test")) == web  # the label's wildcard
        assert dig_addresses(stack.run("dig +short @127.0.0.1 other.dev.test")) == [ipaddress.ip_address("127.0.0.1")]

        lookup = next(result.stdout for line, result in results.items() if " nslookup " in line)
        assert re.search(r"Name:\s+api\.dev\.test\s+Address:\s+" + re.escape(str(web[0])), lookup), lookup
        logs = next(result.stdout for line, result in results.items() if line.endswith(" logs dns"))
        assert re.search(r"container demo_web_1: (named|added:) .*\bweb\.demo\.docker\.", logs), logs
        assert "/zones/office.test.zone: loaded 4 records" in logs

        zone = stack.zones / "office.test.zone"
        edited = zone.with_suffix(".tmp")
        edited.write_text(zone.read_text().replace("192.0.2.80", "192.0.2.81"))
        edited.rename(zone)  # as editors save
        wait_for(lambda: dig_addresses(stack.run("dig +short @127.0.0.1 printer.office.test"))
                 == [ipaddress.ip_address("192.0.2.81")], timeout=1.0, interval=0.02,
                 what="the edited zonefile served")
    finally:
        print(stack.run(f"{up.split(' up', 1)[0]} logs --no-color").stdout)
        result = stack.run(down)
    assert result.returncode == 0, result.stdout + result.stderr
    assert client.containers.list(all=True) == []
    assert {network.name for network in client.networks.list()} <= {"bridge", "host", "none"}
    assert client.volumes.list() == []
    client.close()
