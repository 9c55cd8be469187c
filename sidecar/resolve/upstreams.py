"""Where to forward by default: the nameservers of a resolv.conf, minus our own addresses."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..endpoint import Endpoint, parse_endpoint

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


class DefaultUpstreams:
    """The upstreams used when a query names none: fixed ones, or resolv.conf's, re-read when the
    file changes (checked at most once a second, so the hot path pays one clock read).

    Loop guard: our own listen addresses are never upstreams, since a host may point its
    resolv.conf at us."""

    def __init__(self, fixed: Sequence[Endpoint], resolv_conf: Path, own: Sequence[Endpoint],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._fixed = tuple(fixed)
        self._path = resolv_conf
        self._own = set(own)
        self._clock = clock
        self._checked_at = float("-inf")
        self._stamp: tuple[int, int] | None = None
        self._current: tuple[Endpoint, ...] = ()
        self.refresh()

    def _usable(self, endpoints: Sequence[Endpoint]) -> tuple[Endpoint, ...]:
        kept = []
        for endpoint in endpoints:
            if endpoint in self._own or (endpoint.port == 53 and Endpoint(endpoint.host, 53) in self._own):
                log.warning("upstream %s is this sidecar itself; skipped to avoid a loop", endpoint)
            else:
                kept.append(endpoint)
        return tuple(kept)

    def refresh(self) -> None:
        if self._fixed:
            self._current = self._usable(self._fixed)
            return
        try:
            st = os.stat(self._path)
            stamp: tuple[int, int] | None = (st.st_ino, st.st_mtime_ns)
        except OSError:
            stamp = None
        if stamp == self._stamp and self._current:
            return
        self._stamp = stamp
        found = self._usable(resolv_conf_nameservers(self._path))
        if found != self._current:
            log.info("upstreams from %s: %s", self._path, ", ".join(map(str, found)) or "none")
        self._current = found

    def __call__(self) -> tuple[Endpoint, ...]:
        now = self._clock()
        if now - self._checked_at >= 1.0:
            self._checked_at = now
            self.refresh()
        return self._current
