"""The project's image, built on the session's real engine by the documented no-registry recipe,
examples/compose/build-offline.sh: a Debian base made with `debootstrap` and `docker import` (or
imported from `DNS_SIDECAR_TEST_BASE_TAR` when that names a tarball of such a root, to save the
debootstrap), a wheel directory filled by pip, and `docker build` from them."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.dockerd import Dockerd
from tests.helpers.walkthrough import BUILD_SCRIPT

IMAGE_TAG = "dns-sidecar:latest"  # the tag compose.example.yml runs


@dataclass(frozen=True)
class Build:
    tag: str
    output: str  # everything the recipe printed


def loopback_with_free_53() -> str:
    """A loopback address whose port 53 is free (others may hold 127.0.0.1:53 on this machine)."""
    for _ in range(20):
        host = f"127.53.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, 0))
            except OSError:
                continue
        if not any(f"{host}:53 " in line for line in Path("/proc/net/udp").read_text().splitlines()):
            return host
    raise RuntimeError("no loopback address found")


def build_offline(engine: Dockerd, log: Path) -> Build:
    """Run the recipe against `engine`, its output in `log`."""
    argv = [str(BUILD_SCRIPT)]
    given = os.environ.get("DNS_SIDECAR_TEST_BASE_TAR")
    if given and Path(given).is_file():
        argv += ["--base-tar", given]
    elif shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (apt-get install debootstrap)")
    with log.open("wb") as out:
        result = subprocess.run(argv, env=engine.env(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, timeout=1800, check=False)
    output = log.read_text(errors="replace")
    if result.returncode:
        raise AssertionError(f"{BUILD_SCRIPT.name} exited {result.returncode}:\n{output[-3000:]}")
    return Build(IMAGE_TAG, output)


@pytest.fixture(scope="session", name="offline_build")
def offline_build_fixture(docker_engine: Dockerd, tmp_path_factory) -> Build:
    """The image and what its build printed (built once a session)."""
    return build_offline(docker_engine, tmp_path_factory.mktemp("image") / "build.log")


@pytest.fixture(scope="session", name="sidecar_image")
def sidecar_image_fixture(offline_build: Build) -> str:
    """The tag of the project's image on the session's engine."""
    return offline_build.tag
