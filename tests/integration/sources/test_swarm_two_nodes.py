"""A two-node swarm for real: a manager and a worker, each a dockerd in its own network namespace,
joined over a veth pair with documentation addresses; the overlay runs between them. The sidecar
(on this machine's loopback) watches one engine's unix socket; every query goes to it on
loopback, and overlay and node addresses only appear in answers."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.helpers.process import wait_for
from tests.helpers.swarm import MANAGER_ADDRESS, WORKER_ADDRESS, SwarmDockerd, SwarmUnavailable, two_node_swarm
from tests.integration.sources.test_docker import answers, eventually
from tests.integration.sources.test_swarm import loopback_source

NETWORK, SUBNET = "duo", "10.216.0.0/24"


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[tuple[SwarmDockerd, SwarmDockerd]]:
    """The swarm with `spread` (dnsrr, four replicas over both nodes), `edge` (vip, a published
    port, two replicas) and `far` (dnsrr, two replicas on the worker only) on one overlay."""
    try:
        with two_node_swarm() as (manager, worker):
            manager.cli("network", "create", "--driver", "overlay", "--attachable", "--subnet", SUBNET, NETWORK)
            common = ["--detach", "--network", NETWORK, "--stop-signal", "SIGKILL"]
            manager.cli("service", "create", *common, "--name", "spread", "--replicas", "4", "--endpoint-mode", "dnsrr",
                        "local/busybox:latest", "sleep", "300")
            manager.cli("service", "create", *common, "--name", "edge", "--replicas", "2", "--publish", "8080:80",
                        "local/busybox:latest", "sleep", "300")
            manager.cli("service", "create", *common, "--name", "far", "--replicas", "2", "--endpoint-mode", "dnsrr",
                        "--constraint", "node.role == worker", "local/busybox:latest", "sleep", "300")
            client = manager.client()
            try:
                wait_for(lambda: len(running(client, "spread")) == 4 and len(running(client, "far")) == 2
                         and len(running(client, "edge")) == 2, timeout=90, what="every task running")
            finally:
                client.close()
            yield manager, worker
    except SwarmUnavailable as exc:
        pytest.skip(str(exc))


def running(client: docker.DockerClient, service: str) -> dict[str, tuple[str, str]]:
    """Task ID -> (node ID, overlay address) of the service's running tasks, from the manager."""
    found = {}
    for task in client.api.tasks(filters={"service": service, "desired-state": "running"}):
        if task["Status"]["State"] != "running":
            continue
        for attachment in task.get("NetworksAttachments") or ():
            if attachment["Network"]["Spec"]["Name"] == NETWORK:
                found[task["ID"]] = (task["NodeID"], attachment["Addresses"][0].split("/")[0])
    return found


@pytest.fixture
def serve_engine(sidecar, tmp_path):
    empty = tmp_path / "resolv.conf"
    empty.write_text("")

    def start(engine: SwarmDockerd, *args: str):
        server = sidecar("--resolv-conf", str(empty), *args, docker=True, env={"DOCKER_HOST": engine.url})
        wait_for(lambda: "following events" in server.log_text(), what="the first list of containers")
        return server

    return start


@pytest.mark.docker
@pytest.mark.slow
def test_tasks_on_both_nodes_are_answered_and_a_remote_task_that_dies_is_seen(two_nodes, serve_engine) -> None:
    manager, worker = two_nodes
    inside = loopback_source()
    server = serve_engine(manager, "--view", f"{NETWORK}={inside}/32")
    client = manager.client()
    try:
        tasks = running(client, "spread")
        assert {node for node, _ in tasks.values()} == {n.id for n in client.nodes.list()}  # placed on both
        eventually(server, "tasks.spread.docker", [address for _, address in tasks.values()], source=inside)
        eventually(server, "spread.docker", [address for _, address in tasks.values()], source=inside)
        eventually(server, "edge.docker", [MANAGER_ADDRESS, WORKER_ADDRESS])  # the routing mesh: every node
        assert answers(server, "spread.docker") == []

        far = running(client, "far")
        eventually(server, "tasks.far.docker", [address for _, address in far.values()], source=inside)
        victim_id = next(iter(far))
        victim = next(t for t in client.api.tasks(filters={"id": victim_id}))
        worker_client = worker.client()
        try:  # a task on the worker dies: no event on the manager's stream says so
            worker_client.containers.get(victim["Status"]["ContainerStatus"]["ContainerID"]).kill()
        finally:
            worker_client.close()
        wait_for(lambda: victim_id not in running(client, "far") and len(running(client, "far")) == 2, timeout=60,
                 what="the dead task replaced on the worker")
        eventually(server, "tasks.far.docker", [address for _, address in running(client, "far").values()],
                   source=inside)
    finally:
        client.close()


@pytest.mark.docker
@pytest.mark.slow
def test_a_sidecar_on_a_worker_says_so_once_and_serves_its_own_containers(two_nodes, serve_engine) -> None:
    _, worker = two_nodes
    server = serve_engine(worker)
    client = worker.client()
    try:
        local = next(c for c in client.containers.list() if c.name.startswith("far."))
        overlay = local.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
    finally:
        client.close()
    eventually(server, f"{local.name}.docker", [overlay])
    assert server.log_text().count("is a swarm worker") == 1
    assert answers(server, "far.docker") == [] and "running tasks named" not in server.log_text()
