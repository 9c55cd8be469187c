"""A real one-node swarm for tests: its own dockerd inside a private network namespace, made a
manager with `docker swarm init --advertise-addr 127.0.0.1` (that namespace's loopback).

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
from contextlib import contextmanager
from pathlib import Path

import pytest
from dockerd import Dockerd


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
def one_node_swarm() -> Iterator[SwarmDockerd]:
    """A one-node swarm with `local/busybox` imported; afterwards the swarm is left, the engine
    stopped by its pid and the namespace deleted."""
    reason = _why_not()
    if reason:
        raise SwarmUnavailable(reason)
    netns = f"sidecar-swarm-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", netns], capture_output=True).returncode != 0:
        raise SwarmUnavailable("cannot create a network namespace (needs root)")
    root = Path(tempfile.mkdtemp(prefix="dns-sidecar-swarm-"))
    engine = SwarmDockerd(root, netns)
    try:
        subprocess.run(["ip", "netns", "exec", netns, "ip", "link", "set", "lo", "up"], check=True)
        try:
            engine.start()
        except AssertionError:
            raise SwarmUnavailable(f"dockerd cannot start in a network namespace here:\n{engine.log_tail()}") from None
        engine.import_busybox()
        result = engine.init_swarm(check=False)
        if result.returncode != 0:
            raise SwarmUnavailable(f"docker swarm init fails here: {result.stderr.strip()}")
        yield engine
    finally:
        if engine.proc is not None:
            engine.leave_swarm()
        engine.stop()
        engine.unmount()
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", netns], capture_output=True)


@pytest.fixture(scope="session", name="swarm_engine")
def swarm_engine_fixture() -> Iterator[SwarmDockerd]:
    """The session's one-node swarm, or a skip that says why there is none."""
    try:
        with one_node_swarm() as engine:
            yield engine
    except SwarmUnavailable as exc:
        pytest.skip(str(exc))
