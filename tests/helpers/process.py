"""A process a test starts (output in a file, stopped by its pid even when the test fails), the
poll that waits for it, and the DNS client that asks it."""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query


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
