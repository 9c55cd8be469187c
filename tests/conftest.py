"""Fixtures for every test: real daemons on loopback, each started with its output in a file and
stopped by its pid in teardown, even when the test fails. What they are built from lives in
tests/helpers/; the repository root is on the import path through pyproject's `pythonpath`."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.daemons import free_port
from tests.helpers.netns import private_namespace
from tests.helpers.process import Daemon, query, start_daemon, wait_for
from tests.helpers.servers import sidecars

pytest_plugins = ("tests.helpers.upstream",)  # the `scripted` upstream fixture


def pytest_configure(config: pytest.Config) -> None:
    """Every sidecar a test starts (fixture or not) inherits a resolv.conf naming a loopback
    address where nothing listens, so no test can ever forward to the machine's own resolver."""
    safe = Path(tempfile.mkdtemp(prefix="dns-sidecar-tests-")) / "resolv.conf"
    safe.write_text("nameserver 127.0.0.254\n")
    os.environ["DNS_SIDECAR_RESOLV_CONF"] = str(safe)


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


@pytest.fixture
def sidecar(tmp_path_factory) -> Iterator:
    """`sidecars` for one test."""
    with sidecars(tmp_path_factory) as start:
        yield start


@pytest.fixture
def namespace():
    """A private network namespace (see private_namespace)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("network namespaces need root and iproute2")
    with private_namespace() as name:
        yield name
