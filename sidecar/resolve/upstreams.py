"""Where to forward by default: the nameservers of a resolv.conf, minus our own addresses."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..net.endpoint import Endpoint, parse_endpoint

log = logging.getLogger(__name__)


def resolv_conf_nameservers(path: Path) -> list[Endpoint]:
    """The `nameserver` lines of a resolv.conf, in order; an unreadable file gives none."""
    try:
        text = path.read_text()
    except OSError:
        return []
    found: list[Endpoint] = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                found.append(parse_endpoint(fields[1].split("%", 1)[0]))
            except ValueError:
                continue
    return found


SYSTEMD_STUB = Endpoint("127.0.0.53", 53)
SYSTEMD_RESOLV_CONF = Path("/run/systemd/resolve/resolv.conf")
DOCKER_EMBEDDED = "127.0.0.11"
_WILDCARDS = ("0.0.0.0", "::")


def _is_local_address(host: str) -> bool:
    """Whether `host` is one of this machine's addresses: binding to it succeeds (nothing sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
    except OSError:
        return False
    return True


def is_own(endpoint: Endpoint, own: Sequence[Endpoint]) -> bool:
    """Whether queries sent to `endpoint` would reach one of our own listeners `own`. A wildcard
    listener owns every local address on its port, except Docker's embedded resolver: inside a
    container 127.0.0.11:53 is redirected by the firewall to Docker, never to us."""
    if endpoint in own:
        return True
    wildcard = any(o.host in _WILDCARDS and o.port == endpoint.port
                   and (":" in o.host) == (":" in endpoint.host) for o in own)
    return wildcard and endpoint.host != DOCKER_EMBEDDED and _is_local_address(endpoint.host)


def without_own(endpoints: Sequence[Endpoint], own: Sequence[Endpoint], where: str) -> tuple[Endpoint, ...]:
    """`endpoints` minus our own listen addresses (the loop guard), saying what was dropped and,
    when nothing is left, that forwarding is off."""
    kept = tuple(e for e in endpoints if not is_own(e, own))
    if len(kept) < len(endpoints):
        looped = ", ".join(str(e) for e in endpoints if e not in kept)
        if kept:
            log.warning("%s: upstream %s is this sidecar itself; skipped to avoid a loop", where, looped)
        else:
            log.error("%s: every upstream (%s) is this sidecar itself; skipped to avoid a loop, so "
                      "names that are not local get SERVFAIL", where, looped)
    return kept


class DefaultUpstreams:
    """The upstreams used when a query names none: fixed ones, or resolv.conf's, re-read when the
    file changes (checked at most once a second, so the hot path pays one clock read).

    When resolv.conf names only the systemd-resolved stub (127.0.0.53), the real servers come
    from `systemd_resolv_conf`, the file resolved writes them to, so the sidecar does not
    depend on the stub. Loop guard: our own listen addresses are never upstreams, since a host
    may point its resolv.conf at us."""

    def __init__(self, fixed: Sequence[Endpoint], resolv_conf: Path, own: Sequence[Endpoint],
                 clock: Callable[[], float] = time.monotonic,
                 systemd_resolv_conf: Path = SYSTEMD_RESOLV_CONF) -> None:
        self._fixed = tuple(fixed)
        self._path = resolv_conf
        self._systemd_path = systemd_resolv_conf
        self._own = tuple(own)
        self._clock = clock
        self._checked_at = float("-inf")
        self._stamp: tuple[tuple[int, int] | None, ...] | None = None
        self._current: tuple[Endpoint, ...] = ()
        self.refresh()

    def refresh(self) -> None:
        if self._fixed:
            if self._stamp is None:
                self._stamp = ()
                self._current = without_own(self._fixed, self._own, "--upstream")
            return
        stamp = (_stamp(self._path), _stamp(self._systemd_path))
        if stamp == self._stamp:
            return
        self._stamp = stamp
        path = self._path
        found = resolv_conf_nameservers(path)
        if found == [SYSTEMD_STUB] and resolv_conf_nameservers(self._systemd_path):
            path = self._systemd_path
            found = resolv_conf_nameservers(path)
        usable = without_own(found, self._own, str(path))
        if usable != self._current:
            log.info("upstreams from %s: %s", path, ", ".join(map(str, usable)) or "none")
        self._current = usable

    def __call__(self) -> tuple[Endpoint, ...]:
        now = self._clock()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            self.refresh()
        return self._current


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)
