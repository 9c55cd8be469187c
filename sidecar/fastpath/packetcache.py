"""Packed replies kept for reuse, and replies made ready for exact queries.

Entries hold one packed reply per question, transport and client view; a zone swap retires them
all at once, and forwarded ones also expire with their TTL. Ready tables hold, per exact query as
it arrived, the reply already made that asker's own, so a repeat query costs one dict lookup and
a concatenation."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..dns.question import Question
from ..dns.reply import patch_reply
from ..dns.wire import count_down, ttl_offsets
from ..server.access import Placement

FOREVER = float("inf")
TRANSPORT_TAG = {"udp": b"U", "tcp": b"T"}  # a key's suffix: this byte, then the client's view
TAG_TRANSPORT = {tag[0]: transport for transport, tag in TRANSPORT_TAG.items()}


@dataclass(slots=True)
class _Packed:
    reply: bytes
    ttls: list[tuple[int, int]]
    stored_at: float
    expires_at: float
    generation: int


@dataclass(slots=True)
class _Ready:
    """One exact query's ready reply after its ID, with the asker's question bytes and TTLs aged
    by whole seconds; it holds until `renew_at` (never, for local answers)."""

    renew_at: float
    tail: bytes
    labels: tuple[bytes, int]  # what its hits are counted by: the key suffix, the rcode


class ReadyTable(dict[bytes, _Ready]):
    """One key suffix's ready replies, by exact query after its ID, and the placement it serves."""

    __slots__ = ("placement", "suffix")

    def __init__(self, suffix: bytes, placement: Placement) -> None:
        super().__init__()
        self.suffix = suffix
        self.placement = placement


_NO_TABLE: Mapping[bytes, _Ready] = MappingProxyType({})  # for a client with no table yet


class PacketCache:
    """Entries are keyed by the question's `key` (ID dropped, name case folded, EDNS reduced to
    size and DO bit) and a key suffix (transport tag and client view), and carry the zone
    generation they were made in; forwarded ones have their TTLs counted down on the way out.
    Ready tables, one per key suffix, hold per exact query (minus its ID) the reply in that
    query's case with TTLs aged to the current second. Hits are counted by key suffix and rcode."""

    def __init__(self, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[bytes, _Packed] = {}
        self._tables: dict[bytes, ReadyTable] = {}  # by key suffix; emptied, never replaced
        self._generation = -1  # the zone generation the ready tables hold replies of
        self.max_entries = max_entries
        self._clock = clock
        self.hits: defaultdict[tuple[bytes, int], int] = defaultdict(int)  # by key suffix and rcode

    def total_hits(self) -> int:
        return sum(list(self.hits.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def table(self, transport: str, placement: Placement) -> ReadyTable:
        """The ready table of a placement over a transport: the same one for as long as this
        cache lives."""
        suffix = TRANSPORT_TAG[transport] + placement.key
        table = self._tables.get(suffix)
        if table is None:
            table = self._tables[suffix] = ReadyTable(suffix, placement)
        return table

    def retire(self, generation: int) -> None:
        """A zone swap: every ready reply is of the old zone."""
        if generation != self._generation:
            for table in self._tables.values():
                table.clear()
            self._generation = generation

    def ready(self, table: ReadyTable, asked: bytes) -> bytes | None:
        """The ready reply (after its ID) to the query `asked` (after its ID), if it is still
        good this second."""
        seen = table.get(asked)
        if seen is None or (seen.renew_at != FOREVER and self._clock() >= seen.renew_at):
            return None
        self.hits[seen.labels] += 1
        return seen.tail

    def ready_batch(self, queries: list[bytes], hosts: list[str],
                    tables: Mapping[str, ReadyTable]) -> list[bytes | None]:
        """`ready` for a batch of queries, each given without its ID and asked by the client
        `hosts` names (whose ready table `tables` holds): one clock read for the batch."""
        now, hits, tails, unknown = self._clock(), self.hits, [], _NO_TABLE
        add = tails.append
        for query, host in zip(queries, hosts, strict=True):
            seen = tables.get(host, unknown).get(query)
            if seen is None or seen.renew_at <= now:
                add(None)
            else:
                hits[seen.labels] += 1
                add(seen.tail)
        return tails

    def make_ready(self, table: ReadyTable, query: bytes, question: Question, generation: int) -> bytes | None:
        """The kept reply to the plain `question` of `query`, made this asker's own and ready for
        its repeats; None when none is kept."""
        entry = self._live(question.key + table.suffix, generation)
        if entry is None:
            table.pop(query[2:], None)
            return None
        age, renew_at = 0, FOREVER
        if entry.expires_at != FOREVER:
            age = int(self._clock() - entry.stored_at)
            renew_at = min(entry.stored_at + age + 1, entry.expires_at)
        if len(table) >= self.max_entries:
            table.clear()  # cheap and rare: the next queries make it again from the entries
        reply = count_down(entry.reply, entry.ttls, age) if age and entry.ttls else entry.reply
        seen = table[query[2:]] = _Ready(renew_at, patch_reply(reply, query, question.end)[2:],
                                         (table.suffix, entry.reply[3] & 0xF))
        self.hits[seen.labels] += 1
        return seen.tail

    def _live(self, key: bytes, generation: int) -> _Packed | None:
        """The entry under `key` if it is of this zone generation and not expired; a dead one is
        dropped."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.generation != generation or (entry.expires_at != FOREVER and self._clock() >= entry.expires_at):
            del self._entries[key]
            return None
        return entry

    def put(self, key: bytes, reply: bytes, keep_for: float | None, generation: int) -> None:
        """Keep `reply`: for `keep_for` seconds, until the zone changes if None, not at all if 0."""
        if keep_for is not None and keep_for <= 0:
            return
        now = self._clock()
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # oldest insertion goes first
        if keep_for is None:
            self._entries[key] = _Packed(reply, [], now, FOREVER, generation)
        else:
            self._entries[key] = _Packed(reply, ttl_offsets(reply), now, now + keep_for, generation)
