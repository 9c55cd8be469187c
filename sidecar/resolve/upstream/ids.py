"""Query IDs for upstream questions: unpredictable, from the kernel's CSPRNG."""

from __future__ import annotations

import os
from collections.abc import Container


class QueryIds:
    """Unpredictable query IDs from the kernel's CSPRNG, drawn a few thousand at a time: one
    `getrandom` call per ID would cost as much as the rest of the ID handling. An ID is its two
    wire bytes, so neither a question nor a reply converts it to a number and back."""

    BATCH = 4096

    def __init__(self) -> None:
        self._ids: list[bytes] = []

    def new(self, taken: Container[bytes] = ()) -> bytes:
        ids = self._ids
        while True:
            if not ids:
                drawn = os.urandom(2 * self.BATCH)
                ids.extend(drawn[at : at + 2] for at in range(0, len(drawn), 2))
            qid = ids.pop()
            if qid not in taken:
                return qid
