"""Holds each source's latest fragment and the current `Zone`.

A change builds a whole new zone aside and replaces the pointer in one assignment, so readers
(the event loop) never see a half-built zone and need no lock. Writers (the zonefile watcher and
the Docker thread) are serialized by a lock so two rebuilds cannot interleave.

A big zone is hundreds of thousands of objects. The cyclic garbage collector is kept out of the
way while one is built, and the result is frozen (`gc.freeze`) once swapped in; otherwise every
collection pass walks the whole zone, holding the interpreter (and so the event loop) for up to
0.2 s each, several times per load, and again later in steady serving."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .zone import Fragment, Zone

log = logging.getLogger(__name__)


class _CollectorPause:
    """No cyclic garbage collection while any pause is open (pauses nest, and overlap across
    threads), and everything alive frozen when the last one closes. Reference counting still
    frees an old zone when it is replaced, since zones hold no cycles; the price of freezing is
    that cyclic garbage still referenced at that moment is never reclaimed (the server makes
    almost none)."""

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
        self._fragments: dict[str, Fragment] = {}
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self.zone: Zone = Zone.empty()
        self.loaded: set[str] = set()

    def put(self, source: str, fragment: Fragment) -> Zone:
        """Replace one source's fragment and swap in the rebuilt zone."""
        with self._lock:
            self._fragments[source] = fragment
            self.loaded.add(source)
            return self._rebuild()

    def put_many(self, fragments: dict[str, Fragment], replace_prefix: str | None = None) -> Zone:
        """Replace several fragments in one rebuild; with `replace_prefix`, fragments of sources
        under that prefix that are not given are removed (a full resync)."""
        with self._lock:
            if replace_prefix is not None:
                for key in [k for k in self._fragments if k.startswith(replace_prefix) and k not in fragments]:
                    del self._fragments[key]
            self._fragments.update(fragments)
            self.loaded.update(fragments)
            return self._rebuild()

    def remove(self, source: str) -> Zone:
        with self._lock:
            self._fragments.pop(source, None)
            return self._rebuild()

    def fragment(self, source: str) -> Fragment | None:
        return self._fragments.get(source)

    def _rebuild(self) -> Zone:
        with collector_paused():
            zone, warnings = Zone.build(self._fragments, self.zone.generation + 1)
            self.zone = zone
        for warning in warnings:
            if warning not in self._reported:  # a conflict is logged once, not on every rebuild
                self._reported.add(warning)
                log.warning("%s", warning)
        return zone
