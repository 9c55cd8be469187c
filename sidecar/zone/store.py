"""Holds each source's latest fragment and the current `Zone`.

A change builds a new zone aside (by delta when a few sources change: `build.py`) and swaps the
pointer in one assignment, so readers (the event loop) never see a half-built zone and need no
lock. Writers (the zonefile watcher and the Docker thread) are serialized by a lock so two
changes cannot interleave."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .build import ZoneBuilder
from .zone import Fragment, Zone

log = logging.getLogger(__name__)


class _CollectorPause:
    """No cyclic garbage collection while any pause is open (pauses nest, and overlap across
    threads), and everything alive frozen when the last one closes: a big zone is hundreds of
    thousands of objects, and every collection pass would walk them all, holding the event loop.
    Reference counting still frees an old zone when it is replaced, since zones hold no cycles;
    the price is that cyclic garbage still referenced at freezing time is never reclaimed (the
    server makes almost none)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open = 0
        self._was_enabled = False

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if not self._open:
                self._was_enabled = gc.isenabled()
                gc.disable()
            self._open += 1
        try:
            yield
        finally:
            with self._lock:
                self._open -= 1
                if not self._open:
                    gc.freeze()
                    if self._was_enabled:
                        gc.enable()


collector_paused = _CollectorPause()


class Store:
    def __init__(self) -> None:
        self._builder = ZoneBuilder()
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self.zone: Zone = self._builder.zone
        self.loaded: set[str] = set()

    def put(self, source: str, fragment: Fragment) -> Zone:
        """Replace one source's fragment and swap in the new zone."""
        with self._lock:
            self.loaded.add(source)
            return self._change({source: fragment})

    def put_many(self, fragments: dict[str, Fragment], replace_prefix: str | None = None) -> Zone:
        """Replace several fragments in one swap; with `replace_prefix`, fragments of sources
        under that prefix that are not given are removed (a full resync, built in full). Events
        follow a resync, so the index deltas need is made then, after the swap, rather than by
        the first event."""
        with self._lock:
            changes: dict[str, Fragment | None] = {}
            if replace_prefix is not None:
                changes = {key: None for key in self._builder.fragments
                           if key.startswith(replace_prefix) and key not in fragments}
            changes.update(fragments)
            self.loaded.update(fragments)
            zone = self._change(changes, full=replace_prefix is not None)
            if replace_prefix is not None:
                with collector_paused():
                    self._builder.ready_for_deltas()
            return zone

    def remove(self, source: str) -> Zone:
        with self._lock:
            return self._change({source: None})

    def fragment(self, source: str) -> Fragment | None:
        return self._builder.fragments.get(source)

    def _change(self, changes: dict[str, Fragment | None], full: bool = False) -> Zone:
        with collector_paused():
            zone, warnings = self._builder.change(changes, self.zone.generation + 1, full)
            self.zone = zone
        for warning in warnings:
            if warning not in self._reported:  # a conflict is logged once, not on every rebuild
                self._reported.add(warning)
                log.warning("%s", warning)
        return zone
