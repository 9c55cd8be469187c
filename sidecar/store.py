"""Holds each source's latest fragment and the current `Zone`.

A change builds a whole new zone aside and replaces the pointer in one assignment, so readers
(the event loop) never see a half-built zone and need no lock. Writers (the zonefile watcher and
the Docker thread) are serialized by a lock so two rebuilds cannot interleave."""

from __future__ import annotations

import logging
import threading

from .zone import Fragment, Zone

log = logging.getLogger(__name__)


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
        zone, warnings = Zone.build(self._fragments, self.zone.generation + 1)
        for warning in warnings:
            if warning not in self._reported:  # a conflict is logged once, not on every rebuild
                self._reported.add(warning)
                log.warning("%s", warning)
        self.zone = zone
        return zone
