"""Real swarms for tests: a one-node swarm (its own dockerd inside a private network namespace,
made a manager with `docker swarm init --advertise-addr 127.0.0.1`, that namespace's loopback),
and a two-node one (a manager and a worker, each in its namespace, joined over a veth pair).

The namespace keeps everything a swarm makes (the `docker_gwbridge` bridge, the ingress and
overlay sandboxes, the swarm's listening ports) away from the machine and from other sessions'
engines; the sidecar reaches the engine through its unix socket, which is a file. Live restore is
off: swarm mode refuses it."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.helpers.dockerd import Dockerd
from tests.helpers.netns import private_namespace

MANAGER_ADDRESS, WORKER_ADDRESS = "192.0.2.1", "192.0.2.2"


class SwarmDockerd(Dockerd):
    """A dockerd started inside network namespace `netns`."""

    def __init__(self, root: Path, netns: str) -> None:
        super().__init__(root)
        self.netns = netns

    def argv(self) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.netns}",
                *(arg for arg in super().argv() if arg != "--live-restore")]

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """The docker CLI against this engine (`stack deploy` exists nowhere else)."""
        return subprocess.run(["docker", "--host", self.url, *args], capture_output=True, text=True, check=check,
                              timeout=120)

    def init_swarm(self, check: bool = True) -> subprocess.CompletedProcess:
        return self.cli("swarm", "init", "--advertise-addr", "127.0.0.1", check=check)

    def leave_swarm(self) -> None:
        self.cli("swarm", "leave", "--force", check=False)


class SwarmUnavailable(Exception):
    """Why a swarm cannot run here (a test skips with it, a benchmark stops with it)."""


def _why_not() -> str | None:
    for tool in ("dockerd", "docker", "nsenter", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install docker.io util-linux iproute2)"
    return None


@contextmanager
def _engines(count: int) -> Iterator[list[SwarmDockerd]]:
    """`count` engines, each in a network namespace of its own with loopback up, `local/busybox`
    imported; afterwards each leaves its swarm, is stopped by its pid, and its namespace goes."""
    reason = _why_not()
    if reason:
        raise SwarmUnavailable(reason)
    engines: list[SwarmDockerd] = []
    namespaces = ExitStack()
    try:
        for _ in range(count):
            try:
                netns = namespaces.enter_context(private_namespace("sidecar-swarm"))
            except subprocess.CalledProcessError:
                raise SwarmUnavailable("cannot create a network namespace (needs root)") from None
            engines.append(SwarmDockerd(Path(tempfile.mkdtemp(prefix="dns-sidecar-swarm-")), netns))
        for engine in engines:
            try:
                engine.start()
            except AssertionError:
                raise SwarmUnavailable(f"dockerd cannot start in a network namespace here:\n{engine.log_tail()}") \
                    from None
            engine.import_busybox()
        yield engines
    finally:
        for engine in reversed(engines):  # workers first
            if engine.proc is not None:
                engine.leave_swarm()
            engine.stop()
            engine.unmount()
            shutil.rmtree(engine.root, ignore_errors=True)
        namespaces.close()


def _ok(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        raise SwarmUnavailable(f"{what} fails here: {result.stderr.strip()}")


@contextmanager
def one_node_swarm() -> Iterator[SwarmDockerd]:
    """A one-node swarm advertised on its namespace's loopback."""
    with _engines(1) as (engine,):
        _ok(engine.init_swarm(check=False), "docker swarm init")
        yield engine


@contextmanager
def two_node_swarm() -> Iterator[tuple[SwarmDockerd, SwarmDockerd]]:
    """A manager and a worker, their namespaces joined by a veth pair with documentation addresses
    (MANAGER_ADDRESS, WORKER_ADDRESS); the overlay's traffic stays between the two namespaces."""
    with _engines(2) as (manager, worker):
        link = f"swarm{uuid.uuid4().hex[:6]}"
        subprocess.run(["ip", "link", "add", f"{link}m", "netns", manager.netns, "type", "veth", "peer", "name",
                        f"{link}w", "netns", worker.netns], check=True)
        for engine, device, address in ((manager, f"{link}m", MANAGER_ADDRESS), (worker, f"{link}w", WORKER_ADDRESS)):
            subprocess.run(["ip", "netns", "exec", engine.netns, "ip", "addr", "add", f"{address}/24", "dev", device],
                           check=True)
            subprocess.run(["ip", "netns", "exec", engine.netns, "ip", "link", "set", device, "up"], check=True)
        _ok(manager.cli("swarm", "init", "--advertise-addr", MANAGER_ADDRESS, check=False), "docker swarm init")
        token = manager.cli("swarm", "join-token", "-q", "worker").stdout.strip()
        _ok(worker.cli("swarm", "join", "--token", token, "--advertise-addr", WORKER_ADDRESS,
                       f"{MANAGER_ADDRESS}:2377", check=False), "docker swarm join over a veth pair")
        yield manager, worker


@pytest.fixture(scope="session", name="swarm_engine")
def swarm_engine_fixture() -> Iterator[SwarmDockerd]:
    """The session's one-node swarm, or a skip that says why there is none."""
    try:
        with one_node_swarm() as engine:
            yield engine
    except SwarmUnavailable as exc:
        pytest.skip(str(exc))
