"""The image from the project's Dockerfile, run as users run it: host networking, the Docker
socket mounted read-only, configuration through DNS_SIDECAR_* variables. Queried over loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
from conftest import query, wait_for
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
    assert [rr.to_text() for rrset in reply.answer for rr in rrset] == ["192.0.2.53"]
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
