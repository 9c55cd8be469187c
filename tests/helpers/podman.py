"""A real Podman (Debian's `podman`, its Docker-compatible API) for tests, started as in TESTING.md.

Everything Podman makes stays in a private network namespace with a random name (its bridges,
netavark's rules, container addresses) and its storage under one temporary directory. The API
service is stopped by its pid; the namespace is removed afterwards. Tests drive it with the
Docker SDK, as the sidecar does; the `podman` command is there for what the API cannot do
(importing the image, running a healthcheck: Podman schedules those with systemd timers, and
there is no systemd here)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.helpers.dockerd import busybox_tar, die_with_parent, log_tail, terminate, unmount_under
from tests.helpers.netns import private_namespace
from tests.helpers.process import wait_for

# runc cannot raise RLIMIT_NOFILE/NPROC in this kind of VM ("error setting rlimit type 7")
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]\n'


class Podman:
    """One Podman API service under `root`, inside network namespace `netns`."""

    def __init__(self, root: Path, netns: str) -> None:
        self.root = root
        self.netns = netns
        self.socket = root / "podman.sock"
        self.url = f"unix://{self.socket}"
        self.log = root / "service.log"
        self.proc: subprocess.Popen | None = None
        for sub in ("tmp", "net"):
            (root / sub).mkdir(exist_ok=True)
        (root / "containers.conf").write_text(CONTAINERS_CONF)

    def argv(self, *args: str) -> list[str]:
        """`podman ARGS` in the namespace, on this instance's storage (`nsenter --net`, not
        `ip netns exec`, which remounts /sys and hides the cgroup mounts runc needs)."""
        r = self.root
        return ["nsenter", f"--net=/run/netns/{self.netns}", "podman", "--root", str(r / "root"),
                "--runroot", str(r / "run"), "--storage-driver", "vfs", "--cgroup-manager", "cgroupfs",
                "--events-backend", "file", "--network-config-dir", str(r / "net"), "--tmpdir", str(r / "tmp"),
                *args]

    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.root / "containers.conf")}

    def podman(self, *args: str, data: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), input=data, capture_output=True, env=self.env(), timeout=120,
                              check=False)

    def start(self, timeout: float = 60.0) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(self.argv("system", "service", "--time=0", self.url), stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
                                         start_new_session=True, preexec_fn=die_with_parent)
        try:
            wait_for(lambda: self.proc.poll() is None and self.client().ping(), timeout=timeout, interval=0.2,
                     what=f"podman service on {self.url}")
        except AssertionError:
            self.stop()
            raise

    def import_busybox(self) -> None:
        tar = self.root / "busybox.tar"
        tar.write_bytes(busybox_tar())
        result = self.podman("import", str(tar), "local/busybox:latest")
        if result.returncode != 0:
            raise RuntimeError(f"podman import: {result.stderr.decode(errors='replace')}")

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url, version="auto", timeout=30)

    def remove_all(self) -> None:
        """Remove every container and every network but Podman's own."""
        self.podman("rm", "-af", "-t", "0")
        self.podman("network", "prune", "-f")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.remove_all()
        terminate(self.proc, 30)
        self.proc = None


def _why_not() -> str | None:
    if shutil.which("podman") is None:
        return "podman is not installed (apt-get install podman)"
    if os.geteuid() != 0:
        return "these Podman tests run it as root, in a network namespace of their own"
    if shutil.which("nsenter") is None or shutil.which("ip") is None:
        return "nsenter (util-linux) and ip (iproute2) are needed to keep Podman in its own namespace"
    return None


def _end_leftovers(root: Path) -> None:
    """Podman's monitors of exec sessions (conmon, a healthcheck or `exec` each) outlive the
    service for minutes: end, by pid, every process whose command line names this instance's
    own directory."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if str(root).encode() in (entry / "cmdline").read_bytes():
                os.kill(int(entry.name), signal.SIGKILL)
        except OSError:
            continue


@pytest.fixture(scope="session", name="podman_engine")
def podman_engine_fixture() -> Iterator[Podman]:
    """A session's Podman with `local/busybox` imported, in its own namespace; stopped by pid."""
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    root = Path(tempfile.mkdtemp(prefix="dns-sidecar-podman-"))
    with private_namespace("sidecar-podman") as netns:
        engine = Podman(root, netns)
        try:
            try:
                engine.start()
            except AssertionError:
                pytest.skip(f"podman cannot start here:\n{log_tail(engine.log)}")
            engine.import_busybox()
            yield engine
        finally:
            engine.stop()
            _end_leftovers(root)
            unmount_under(root)
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="podman_client")
def podman_client_fixture(podman_engine: Podman) -> Iterator[docker.DockerClient]:
    """A Docker SDK client to the session's Podman; what a test made is removed afterwards."""
    client = podman_engine.client()
    yield client
    client.close()
    podman_engine.remove_all()
