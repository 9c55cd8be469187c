"""Real DNS servers on loopback for tests: Knot DNS serving a zone, and dns-sidecars run as
`python -m sidecar serve`. Each is ready when it returns and stopped by its pid on leaving."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bench.daemons import free_port
from tests.helpers.process import Daemon, query, start_daemon, wait_for


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
