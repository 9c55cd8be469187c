"""Private network namespaces: whatever a test starts inside one (a sidecar, an engine and its
bridges) never reaches the machine's own interfaces."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


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


def in_ns(namespace: str, *argv: str) -> list[str]:
    return ["ip", "netns", "exec", namespace, *argv]
