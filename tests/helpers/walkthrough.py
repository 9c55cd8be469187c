"""The compose walkthrough of docs/compose.md, run as written: its commands are read from the
document, the example is copied aside as it sits in the repository (so a test may edit its
zonefile), and the engine runs in a private network namespace, so the example's published
127.0.0.1:53 is that namespace's own loopback and `dig` is run inside it. Shared by
tests/integration/deploy/test_image.py and bench/compose_up.py."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import docker

from tests.helpers import ROOT
from tests.helpers.dockerd import Dockerd
from tests.helpers.netns import private_namespace

DOCS = ROOT / "docs" / "compose.md"
COMPOSE_FILE = ROOT / "compose.example.yml"
EXAMPLE = ROOT / "examples" / "compose"
BUILD_SCRIPT = EXAMPLE / "build-offline.sh"
V1_MARK = "<!-- walkthrough: docker-compose -->"
V2_MARK = "<!-- walkthrough: docker compose -->"
IMAGES = ("dns-sidecar:latest", "busybox:latest")  # what the example runs


def walkthrough(mark: str = V1_MARK) -> list[str]:
    """The commands of the fenced block that follows `mark` in docs/compose.md, comments dropped."""
    text = DOCS.read_text()
    if mark not in text:
        raise AssertionError(f"{DOCS.name} has no {mark}")
    block = text.split(mark, 1)[1].split("```", 2)[1]
    commands = [line.split(" #", 1)[0].strip() for line in block.splitlines()[1:]]
    return [command for command in commands if command and not command.startswith("#")]


@contextmanager
def engine_in_namespace() -> Iterator[Dockerd]:
    """A dockerd of its own in a network namespace of its own; everything removed afterwards."""
    with private_namespace("compose") as name:
        engine = Dockerd(Path(tempfile.mkdtemp(prefix="dns-sidecar-compose-")), netns=name)
        try:
            engine.start()
            yield engine
        finally:
            engine.discard()


def copy_images(source: Dockerd, target: Dockerd, tags: tuple[str, ...] = IMAGES) -> None:
    """`docker save | docker load` from one engine to the other (built once, run on both)."""
    save = subprocess.Popen(["docker", "-H", source.url, "save", *tags], stdout=subprocess.PIPE)
    load = subprocess.run(["docker", "-H", target.url, "load", "-q"], stdin=save.stdout, capture_output=True,
                          check=False)
    save.stdout.close()
    if save.wait() or load.returncode:
        raise RuntimeError(f"copying {tags} failed: {load.stderr.decode(errors='replace')}")


class Stack:
    """The example, copied into `workdir` as it sits in the repository, driven on `engine`."""

    def __init__(self, engine: Dockerd, workdir: Path) -> None:
        shutil.copytree(EXAMPLE, workdir / "examples" / "compose")
        shutil.copy(COMPOSE_FILE, workdir / COMPOSE_FILE.name)
        self.engine = engine
        self.cwd = workdir
        self.zones = workdir / "examples" / "compose" / "zones"
        # The socket line's ADAPT, done the documented way: the engine's socket is not the default.
        self.env = {**engine.env(), "DOCKER_SOCKET": str(engine.socket)}

    def run(self, command: str, timeout: float = 240) -> subprocess.CompletedProcess:
        """One line of the walkthrough: compose talks to the engine, anything else runs inside
        the engine's network namespace (where 127.0.0.1:53 is published)."""
        argv = shlex.split(command)
        if argv[0] not in ("docker-compose", "docker"):
            argv = ["nsenter", f"--net=/run/netns/{self.engine.netns}", *argv]
        return subprocess.run(argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)

    def health(self, client: docker.DockerClient) -> str:
        """The dns service's health status ('' while it has no container)."""
        found = client.containers.list(all=True, filters={"label": "com.docker.compose.service=dns"})
        return found[0].attrs["State"].get("Health", {}).get("Status", "") if found else ""

    def up_until_healthy(self, up: str, client: docker.DockerClient, timeout: float = 120) -> float:
        """Run the walkthrough's `up` line; seconds from its start until the sidecar is healthy."""
        start = time.monotonic()
        result = self.run(up)
        if result.returncode:
            raise AssertionError(f"{up} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        while self.health(client) != "healthy":
            if time.monotonic() - start > timeout:
                logs = self.run(f"{up.split(' up', 1)[0]} logs --no-color").stdout
                raise AssertionError(f"not healthy after {timeout:.0f}s:\n{logs}")
            time.sleep(0.1)
        return time.monotonic() - start
