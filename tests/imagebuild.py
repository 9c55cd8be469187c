"""The project's image, built from its real Dockerfile on the session's real engine.

No registry is reachable, so the base image is Debian made with `debootstrap` and `docker import`
(made once per session, or taken from `DNS_SIDECAR_TEST_BASE_TAR` when that names a tarball of
such a root), and the Python packages come from a wheel directory filled by pip beforehand and
passed with `PIP_NO_INDEX`/`PIP_FIND_LINKS` build arguments."""

from __future__ import annotations

import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import docker.errors
import pytest
from conftest import ROOT
from dockerd import Dockerd

BASE_TAG = "local/bookworm-python:latest"
IMAGE_TAG = "local/dns-sidecar:test"
SUITE = "bookworm"  # its python3 is 3.11: the wheels below are fetched for that version
PYTHON_VERSION = "3.11"
BASE_PACKAGES = "python3,python3-venv"
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md")


def _run(argv: list[str], log: Path) -> None:
    with log.open("ab") as out:
        result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, check=False)
    if result.returncode:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"{' '.join(argv[:3])} ... exited {result.returncode}:\n{tail}")


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


def base_tarball(workdir: Path) -> Path:
    """A Debian root with python3 as a tarball, without apt's downloads and the documentation."""
    given = os.environ.get("DNS_SIDECAR_TEST_BASE_TAR")
    if given and Path(given).is_file():
        return Path(given)
    if shutil.which("debootstrap") is None:
        pytest.skip("debootstrap is not installed (apt-get install debootstrap)")
    rootfs = workdir / "rootfs"
    _run(["debootstrap", "--variant=minbase", f"--include={BASE_PACKAGES}", SUITE, str(rootfs),
          "http://deb.debian.org/debian"], workdir / "debootstrap.log")
    for leftover in ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
                     "usr/share/locale", "usr/share/info"):
        shutil.rmtree(rootfs / leftover)  # smaller layers: the engine here copies them whole per step
    tarball = workdir / "base.tar"
    _run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], workdir / "tar.log")
    shutil.rmtree(rootfs)
    return tarball


def build_context(workdir: Path) -> Path:
    """The files .dockerignore lets in, plus `.wheels/` with every package the image installs."""
    context = workdir / "context"
    context.mkdir()
    for name in CONTEXT_FILES:
        shutil.copy2(ROOT / name, context / name)
    shutil.copytree(ROOT / "sidecar", context / "sidecar", ignore=shutil.ignore_patterns("__pycache__"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]
    _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--only-binary=:all:",
          "--python-version", PYTHON_VERSION, "--platform", f"manylinux2014_{platform.machine()}",
          "--platform", f"manylinux_2_28_{platform.machine()}", "--dest", str(context / ".wheels"), *wanted],
         workdir / "pip.log")
    return context


def build_image(engine: Dockerd, workdir: Path) -> str:
    client = engine.client()
    try:
        client.api.import_image_from_data(base_tarball(workdir).read_bytes(), repository=BASE_TAG.split(":")[0],
                                          tag="latest")
        try:
            client.images.build(path=str(build_context(workdir)), tag=IMAGE_TAG, rm=True, forcerm=True,
                                buildargs={"BASE_IMAGE": BASE_TAG, "PIP_NO_INDEX": "1",
                                           "PIP_FIND_LINKS": "/src/.wheels"})
        except docker.errors.BuildError as exc:
            log = "".join(step.get("stream", "") or step.get("error", "") for step in exc.build_log)
            raise AssertionError(f"docker build failed: {exc}\n{log[-3000:]}") from None
    finally:
        client.close()
    return IMAGE_TAG


@pytest.fixture(scope="session", name="sidecar_image")
def sidecar_image_fixture(docker_engine: Dockerd, tmp_path_factory) -> str:
    """The tag of the project's image on the session's engine (built once a session)."""
    return build_image(docker_engine, tmp_path_factory.mktemp("image"))
