"""Shared fixtures: real daemons on loopback, each started with its output in a file and stopped
by its pid in teardown, even when the test fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))  # the benchmark's daemon helpers serve the tests too
from daemons import free_port  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    """Every sidecar a test starts (fixture or not) inherits a resolv.conf naming a loopback
    address where nothing listens, so no test can ever forward to the machine's own resolver."""
    safe = Path(tempfile.mkdtemp(prefix="dns-sidecar-tests-")) / "resolv.conf"
    safe.write_text("nameserver 127.0.0.254\n")
    os.environ["DNS_SIDECAR_RESOLV_CONF"] = str(safe)


def query(host: str, port: int, name: str, rdtype: str = "A", tcp: bool = False, timeout: float = 3.0,
          source: str | None = None, **make_kwargs) -> dns.message.Message:
    """One query with dnspython (a client nobody here wrote)."""
    msg = dns.message.make_query(name, rdtype, **make_kwargs)
    send = dns.query.tcp if tcp else dns.query.udp
    kwargs = {"source": source} if source else {}
    return send(msg, host, port=port, timeout=timeout, **kwargs)


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy (returned) or fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}" + (f": {last_exc}" if last_exc else ""))


@dataclass
class Daemon:
    """A process started by a fixture: output in `log`, stopped by pid."""

    proc: subprocess.Popen
    log: Path
    host: str = "127.0.0.1"
    port: int = 0
    extra: dict = field(default_factory=dict)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def query(self, name: str, rdtype: str = "A", **kwargs) -> dns.message.Message:
        return query(self.host, self.port, name, rdtype, **kwargs)


def start_daemon(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    handle = log.open("ab")
    try:
        return subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, start_new_session=True)
    finally:
        handle.close()


@contextmanager
def knot_serving(directory: Path, domain: str, zone: str, probe: str, signing: bool = False,
                 host: str = "127.0.0.4") -> Iterator[Daemon]:
    """A real Knot DNS (knotd) serving `zone` as `domain` on `host`, signing it itself with
    `signing`; ready once it answers `probe`, stopped by its pid afterwards."""
    if shutil.which("knotd") is None:
        pytest.skip("knotd not installed (Debian package knot; .ci/run installs it)")
    port = free_port(host)
    (directory / "db").mkdir()
    (directory / f"{domain}.zone").write_text(zone)
    (directory / "knot.conf").write_text(f"""server:
    listen: {host}@{port}
    rundir: {directory}
log:
  - target: stdout
    any: info
database:
    storage: {directory}/db
template:
  - id: default
    storage: {directory}
    dnssec-signing: {"on" if signing else "off"}
    zonefile-sync: -1
zone:
  - domain: {domain}
    file: {directory}/{domain}.zone
""")
    log = directory / "knot.log"
    daemon = Daemon(start_daemon(["knotd", "-c", str(directory / "knot.conf")], log), log, host, port)
    try:
        wait_for(lambda: daemon.proc.poll() is None
                 and query(host, port, probe, want_dnssec=signing, timeout=0.5).answer,
                 what=f"knotd serving {domain}")
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def dnsmasq(tmp_path_factory) -> Iterator:
    """Factory: `dnsmasq(host="127.0.0.2", args=[...])` starts a real dnsmasq that never forwards;
    `port=` restarts one where a stopped one was (`dnsmasq(d.host, args, port=d.port)`)."""
    started: list[Daemon] = []

    def start(host: str = "127.0.0.2", args: list[str] = (), ttl: int = 300, port: int | None = None) -> Daemon:
        port = port or free_port(host)
        log = tmp_path_factory.mktemp("dnsmasq") / "dnsmasq.log"
        argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--port={port}",
                f"--listen-address={host}", "--bind-interfaces", "--user=root", f"--local-ttl={ttl}",
                "--log-facility=-", "--pid-file=", *args]
        daemon = Daemon(start_daemon(argv, log), log, host, port)
        started.append(daemon)
        wait_for(lambda: daemon.proc.poll() is None and query(host, port, "probe.invalid", timeout=0.5),
                 what=f"dnsmasq on {host}:{port}")
        return daemon

    yield start
    for daemon in started:
        daemon.stop()


@contextmanager
def sidecars(tmp_path_factory) -> Iterator:
    """Factory: `start("--zonefile", path, ...)` runs `python -m sidecar serve` on a free loopback
    port (with --no-docker unless `docker=True`) and waits until it answers; each one started is
    stopped on leaving."""
    started: list[Daemon] = []

    def start(*args: str, host: str = "127.0.0.1", docker: bool = False, env: dict | None = None,
              ready: bool = True) -> Daemon:
        port = free_port(host)
        log = tmp_path_factory.mktemp("sidecar") / "sidecar.log"
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        args = tuple(map(str, args))
        argv = [sys.executable, "-m", "sidecar", "serve", "--listen", listen, "--log-level", "debug",
                *(() if docker else ("--no-docker",)), *args]
        full_env = {**os.environ, **(env or {})}
        daemon = Daemon(start_daemon(argv, log, full_env), log, host, port)
        started.append(daemon)
        if ready:
            wait_for(lambda: "listening on" in daemon.log_text() or daemon.proc.poll() is not None,
                     what=f"sidecar on {listen}")
            assert daemon.proc.poll() is None, daemon.log_text()
        return daemon

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()


@pytest.fixture
def sidecar(tmp_path_factory) -> Iterator:
    """`sidecars` for one test."""
    with sidecars(tmp_path_factory) as start:
        yield start


@contextmanager
def private_namespace(prefix: str = "sidecar") -> Iterator[str]:
    """A private network namespace with loopback up and its own /etc/netns/NAME/resolv.conf
    (naming 127.0.0.1), removed afterwards. Traffic inside it never leaves this machine."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    netns_etc = Path("/etc/netns") / name
    try:
        subprocess.run(in_ns(name, "ip", "link", "set", "lo", "up"), check=True)
        netns_etc.mkdir(parents=True)
        (netns_etc / "resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        yield name
    finally:
        shutil.rmtree(netns_etc, ignore_errors=True)
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def namespace():
    """A private network namespace (see private_namespace)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    with private_namespace() as name:
        yield name


def in_ns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]
