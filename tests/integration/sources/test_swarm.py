"""Swarm services and tasks on a real one-node swarm: a stack deployed from a compose file with
`docker stack deploy`, answered per view in process (clients placed by address in the overlay's
real subnet) and over loopback (a loopback source mapped to the overlay with `--view`), kept live
while it scales, a task turns healthy and a service goes; the node leaving the swarm and coming
back. Every query goes to the sidecar on loopback; overlay addresses only appear in answers."""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import yaml
from dnslib import QTYPE

from sidecar.api import Query
from sidecar.sources.docker import DockerSource
from sidecar.sources.labels import NameRules
from sidecar.sources.swarm import FRAGMENT_KEY
from sidecar.zone.store import Store
from tests.helpers import ROOT
from tests.helpers.process import wait_for
from tests.helpers.swarm import SwarmDockerd, swarm_engine_fixture  # noqa: F401 - fixture
from tests.integration.sources.test_docker import answers, eventually

EXAMPLE = ROOT / "examples" / "swarm" / "stack.yml"
# The socket proxy's switches for exactly the endpoints tests/integration/sources/test_least_privilege.py allows.
PROXY_READS = {"PING", "VERSION", "INFO", "EVENTS", "CONTAINERS", "NETWORKS", "SERVICES", "TASKS", "NODES"}
STACK, NETWORK = "sw", "sw_front"
SUBNET = "10.213.0.0/24"
PUBLISHED, TARGET = 8080, 80


def compose_file() -> dict:
    """Two services on one overlay: `web` (vip, a published port, a healthcheck that passes once
    /ready exists) and `db` (dnsrr)."""
    sleeper = {"image": "local/busybox:latest", "command": ["sleep", "300"], "stop_signal": "SIGKILL",
               "networks": ["front"]}
    return {
        "version": "3.8",
        "services": {
            "web": {**sleeper, "deploy": {"replicas": 2}, "ports": [f"{PUBLISHED}:{TARGET}"],
                    "healthcheck": {"test": ["CMD", "test", "-e", "/ready"], "interval": "1s",
                                    "start_period": "300s"}},
            "db": {**sleeper, "deploy": {"replicas": 2, "endpoint_mode": "dnsrr"}},
        },
        "networks": {"front": {"driver": "overlay", "attachable": True, "ipam": {"config": [{"subnet": SUBNET}]}}},
    }


def tasks(client: docker.DockerClient, service: str, state: str | None = None) -> list[dict]:
    found = client.api.tasks(filters={"service": f"{STACK}_{service}", "desired-state": "running"})
    return [t for t in found if state is None or t["Status"]["State"] == state]


def task_addresses(client: docker.DockerClient, service: str, state: str | None = None) -> list[str]:
    return sorted(a["Addresses"][0].split("/")[0] for t in tasks(client, service, state)
                  for a in t.get("NetworksAttachments") or () if a["Network"]["Spec"]["Name"] == NETWORK)


def vip(client: docker.DockerClient, service: str) -> str:
    network_id = client.networks.get(NETWORK).id
    spec = client.api.inspect_service(f"{STACK}_{service}")
    return next(v["Addr"].split("/")[0] for v in spec["Endpoint"]["VirtualIPs"] if v["NetworkID"] == network_id)


@pytest.fixture
def swarm_client(swarm_engine: SwarmDockerd) -> Iterator[docker.DockerClient]:
    client = swarm_engine.client()
    yield client
    client.close()


@pytest.fixture
def stack(swarm_engine: SwarmDockerd, swarm_client, tmp_path: Path) -> Iterator[str]:
    """The stack deployed and its four tasks started (web's still starting); removed afterwards."""
    path = tmp_path / "stack.yml"
    path.write_text(yaml.safe_dump(compose_file()))
    swarm_engine.cli("stack", "deploy", "-c", str(path), STACK)
    wait_for(lambda: len(task_addresses(swarm_client, "db", "running")) == 2
             and len(task_addresses(swarm_client, "web", "starting")) == 2, timeout=60, what="the stack's tasks")
    yield STACK
    swarm_engine.cli("stack", "rm", STACK, check=False)
    wait_for(lambda: not swarm_client.api.services() and not swarm_client.networks.list(names=[NETWORK]),
             timeout=60, what="the stack removed")


@pytest.fixture
def serve_swarm(sidecar, swarm_engine, tmp_path):
    """Factory: a sidecar following the swarm with `--view sw_front=<its loopback source>/32`."""
    empty = tmp_path / "resolv.conf"
    empty.write_text("")

    def start(inside: str, *args: str):
        server = sidecar("--resolv-conf", str(empty), "--view", f"{NETWORK}={inside}/32", *args, docker=True,
                         env={"DOCKER_HOST": swarm_engine.url})
        wait_for(lambda: "swarm: " in server.log_text(), what="the swarm's first read")
        return server

    return start


def loopback_source() -> str:
    return f"127.0.{random.randint(1, 254)}.{random.randint(2, 254)}"


@pytest.mark.docker
def test_in_process_views_from_the_overlay_subnet(swarm_engine, swarm_client, stack) -> None:
    store = Store()
    source = DockerSource(store, NameRules(), swarm_engine.url)
    source.start()
    try:
        wait_for(lambda: store.fragment(FRAGMENT_KEY) is not None, what="the swarm's fragment")
        zone = store.zone
        inside, outside = "10.213.0.200", "127.0.0.1"

        def ask(name: str, client: str, qtype: int = QTYPE.A) -> list[str]:
            answer = zone.lookup(Query(name, qtype, client, views=zone.views_of(client)))
            return sorted(str(rr.rdata) for rr in answer.answer) if answer is not None else []

        assert zone.views_of(inside) == (NETWORK,)
        assert ask("web.sw.docker", inside) == [vip(swarm_client, "web")]
        assert ask("sw_web.docker", inside) == [vip(swarm_client, "web")]
        assert ask("db.sw.docker", inside) == task_addresses(swarm_client, "db")
        assert ask("tasks.db.sw.docker", inside) == task_addresses(swarm_client, "db")
        assert ask("web.sw.docker", outside) == ["127.0.0.1"]  # the node's address: the routing mesh
        assert ask("db.sw.docker", outside) == []
        assert ask("_80._tcp.web.sw.docker", outside, QTYPE.SRV) == ["0 1 8080 sw_web.docker."]
        assert ask("_80._tcp.web.sw.docker", inside, QTYPE.SRV) == ["0 1 80 sw_web.docker."]
    finally:
        source.stop()


@pytest.mark.docker
def test_stack_answered_per_view_and_kept_live(serve_swarm, swarm_engine, swarm_client, stack) -> None:
    inside = loopback_source()
    server = serve_swarm(inside)
    web_vip, db_tasks, web_tasks = vip(swarm_client, "web"), task_addresses(swarm_client, "db"), \
        task_addresses(swarm_client, "web")
    for name in ("web.sw.docker", "sw_web.docker"):
        eventually(server, name, [web_vip], source=inside)
        eventually(server, name, ["127.0.0.1"])
    for name in ("db.sw.docker", "sw_db.docker", "tasks.db.sw.docker", "tasks.sw_db.docker"):
        eventually(server, name, db_tasks, source=inside)
        assert answers(server, name) == []  # overlay addresses never reach the host view
    eventually(server, "tasks.web.sw.docker", web_tasks, source=inside)  # none healthy yet: all answered
    assert answers(server, "tasks.web.sw.docker") == []
    assert answers(server, "_80._tcp.web.sw.docker", "SRV") == ["0 1 8080 sw_web.docker."]
    assert answers(server, "_80._tcp.web.sw.docker", "SRV", source=inside) == ["0 1 80 sw_web.docker."]

    first = tasks(swarm_client, "web")[0]
    swarm_client.containers.get(first["Status"]["ContainerStatus"]["ContainerID"]).exec_run(["touch", "/ready"])
    ready = next(a["Addresses"][0].split("/")[0] for a in first["NetworksAttachments"]
                 if a["Network"]["Spec"]["Name"] == NETWORK)
    eventually(server, "tasks.web.sw.docker", [ready], source=inside)  # the starting one withheld

    swarm_engine.cli("service", "scale", "--detach", f"{STACK}_db=3")
    wait_for(lambda: len(task_addresses(swarm_client, "db", "running")) == 3, timeout=30, what="db scaled up")
    eventually(server, "db.sw.docker", task_addresses(swarm_client, "db", "running"), source=inside)
    swarm_engine.cli("service", "scale", "--detach", f"{STACK}_db=1")
    wait_for(lambda: len(task_addresses(swarm_client, "db")) == 1, timeout=30, what="db scaled down")
    eventually(server, "tasks.db.sw.docker", task_addresses(swarm_client, "db"), source=inside)
    swarm_engine.cli("service", "rm", f"{STACK}_db")
    eventually(server, "db.sw.docker", [], source=inside)
    eventually(server, "web.sw.docker", [web_vip], source=inside)
    assert "swarm worker" not in server.log_text()


@pytest.mark.docker
def test_leaving_the_swarm_keeps_the_names_then_a_new_swarm_replaces_them(serve_swarm, swarm_engine, stack) -> None:
    server = serve_swarm(loopback_source())
    eventually(server, "web.sw.docker", ["127.0.0.1"])
    swarm_engine.leave_swarm()
    try:
        wait_for(lambda: "still cannot read the swarm" in server.log_text(), timeout=30,
                 what="a second failed read of the swarm")
        assert server.log_text().count("cannot read the swarm (") == 1  # said once
        assert answers(server, "web.sw.docker") == ["127.0.0.1"]  # the last names kept
    finally:
        swarm_engine.init_swarm()
    wait_for(lambda: "the swarm answers again" in server.log_text(), timeout=30, what="the swarm read again")
    eventually(server, "web.sw.docker", [])  # the new swarm has no such service


def example_services() -> dict:
    """The example's services as `docker stack config` renders them (CLI 23+), else as written
    (Debian's CLI 20.10 has no `stack config`)."""
    if shutil.which("docker") is not None:
        rendered = subprocess.run(["docker", "stack", "config", "-c", str(EXAMPLE)], capture_output=True, text=True,
                                  timeout=60)
        if rendered.returncode == 0:
            return yaml.safe_load(rendered.stdout)["services"]
        assert "unknown shorthand flag" in rendered.stderr, rendered.stderr  # an old CLI, not a bad file
    return yaml.safe_load(EXAMPLE.read_text())["services"]


def test_the_stack_example_runs_the_sidecar_per_node_behind_a_read_only_proxy_of_its_reads() -> None:
    services = example_services()
    proxy, dns = services["docker-api"], services["dns"]
    switches = {key for key, value in proxy["environment"].items() if str(value) == "1"}
    assert switches == PROXY_READS and str(proxy["environment"]["POST"]) == "0"
    assert all(v["read_only"] if isinstance(v, dict) else v.endswith(":ro") for v in proxy["volumes"])
    assert proxy["deploy"]["replicas"] == 1 and proxy["deploy"]["placement"]["constraints"] == ["node.role == manager"]
    assert dns["deploy"]["mode"] == "global" and dns["environment"]["DOCKER_HOST"] == "tcp://docker-api:2375"
    assert {port["mode"] for port in dns["ports"]} == {"host"}
