"""A real Docker engine for tests and benchmarks, started as in TESTING.md.

Everything lives under one directory (data root, exec root, socket, pid file, log), the firewall,
the default bridge and IP forwarding are left alone, and the engine is stopped by its pid. With
live restore, containers can outlive an engine restart (as they do in production); a plain stop
removes them first, so nothing is left running. No image can be pulled here: `local/busybox` is
imported from the machine's busybox binary."""

from __future__ import annotations

import ctypes
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.helpers.process import wait_for

IMAGE = "local/busybox:latest"
APPLETS = ("sh", "sleep", "nslookup", "cat", "test", "touch", "rm")


PR_SET_PDEATHSIG = 1


def busybox_tar() -> bytes:
    """A one-binary image's root file system: busybox and the applets the tests run, as symlinks."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise RuntimeError("busybox not installed (apt-get install busybox-static)")
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        tar.add(busybox, arcname="bin/busybox")
        for applet in APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return data.getvalue()


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL when it has not ended after `timeout` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def unmount_under(root: Path) -> None:
    """Undo every mount an engine left under `root`, deepest first."""
    prefix = f"{root}/"
    with open("/proc/mounts") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def log_tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def die_with_parent() -> None:
    """Runs in the child before exec: dockerd gets SIGTERM when the process that started it dies
    without its teardown (a killed test run), so no engine outlives its session."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Dockerd:
    """One engine under `root`; `start()`/`stop()` may be repeated (an engine restart). With
    `netns`, the engine runs in that network namespace: what it publishes on 127.0.0.1 is the
    namespace's own loopback (`nsenter --net`, since `ip netns exec` remounts /sys and hides the
    cgroups dockerd needs)."""

    def __init__(self, root: Path, netns: str | None = None) -> None:
        self.root = root
        self.netns = netns
        self.socket = root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.log = root / "dockerd.log"
        self.proc: subprocess.Popen | None = None

    def argv(self) -> list[str]:
        enter = ["nsenter", f"--net=/run/netns/{self.netns}"] if self.netns else []
        return [*enter, "dockerd", "--data-root", str(self.root / "data"), "--exec-root", str(self.root / "exec"),
                "-H", self.url, "--pidfile", str(self.root / "dockerd.pid"), "--storage-driver", "vfs",
                "--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false",
                "--bridge=none", "--live-restore"]

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, preexec_fn=die_with_parent)
        try:
            wait_for(lambda: self.proc.poll() is None and self.client().ping(), timeout=timeout,
                     interval=0.2, what=f"dockerd on {self.url}")
        except AssertionError:
            self.stop()
            raise

    def stop(self, keep_containers: bool = False, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        try:
            if not keep_containers and self.proc.poll() is None:
                self.remove_all()
        except docker.errors.DockerException as exc:  # the engine is stopped below all the same
            print(f"dockerd {self.url}: could not remove containers before stopping: {exc}")
        terminate(self.proc, timeout)
        self.proc = None

    def unmount(self) -> None:
        """Undo the mounts dockerd leaves under its directories (data root, network namespace)."""
        unmount_under(self.root)

    def discard(self) -> None:
        """Stop the engine and remove everything under its directory."""
        self.stop()
        self.unmount()
        shutil.rmtree(self.root, ignore_errors=True)

    def remove_all(self) -> None:
        """Remove every container and unused network (the engine is ours alone)."""
        client = self.client()
        try:
            for container in client.containers.list(all=True):
                container.remove(force=True)
            client.networks.prune()
        finally:
            client.close()

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=30)

    def import_busybox(self) -> None:
        client = self.client()
        try:
            client.api.import_image_from_data(busybox_tar(), repository="local/busybox", tag="latest")
        finally:
            client.close()

    def env(self) -> dict[str, str]:
        """Environment for a process that should talk to this engine."""
        return {**os.environ, "DOCKER_HOST": self.url}

    def log_tail(self, lines: int = 20) -> str:
        return log_tail(self.log, lines)


def _why_not() -> str | None:
    if shutil.which("dockerd") is None:
        return "dockerd is not installed (apt-get install docker.io)"
    if os.geteuid() != 0:
        return "dockerd needs root"
    return None


@pytest.fixture(scope="session", name="docker_engine")
def docker_engine_fixture() -> Iterator[Dockerd]:
    """A session's engine with `local/busybox` imported; stopped by pid at the end. Its directory
    is its own (not pytest's rotating tmp dirs, which another session may prune while it runs)."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="dns-sidecar-dockerd-"))
    engine = Dockerd(root)
    try:
        try:
            engine.start()
        except AssertionError:
            pytest.skip(f"dockerd cannot start here:\n{engine.log_tail()}")
        engine.import_busybox()
        yield engine
    finally:
        engine.discard()


@pytest.fixture(name="docker_client")
def docker_client_fixture(docker_engine: Dockerd) -> Iterator[docker.DockerClient]:
    """A client to the session's engine; the containers and networks a test made are removed."""
    client = docker_engine.client()
    yield client
    client.close()
    if docker_engine.proc is None:  # a test left the engine stopped
        docker_engine.start()
    docker_engine.remove_all()
