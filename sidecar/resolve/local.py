"""The local zone as a resolver: reads the store's current zone at each query."""

from __future__ import annotations

from ..api import Outcome, Query
from ..zone.store import Store


class LocalZone:
    """Answers names the zone holds; falls through (None) for everything else."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __call__(self, query: Query) -> Outcome:
        return self._store.zone.lookup(query)
