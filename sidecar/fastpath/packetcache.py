"""Packed replies keyed by normalized query bytes plus the client's view: the fast path.

`_entries` holds one packed reply per normalized question (ID dropped, name case folded, EDNS
reduced to size and DO bit, transport and view added). Ready tables, one per key suffix
(transport tag and view), remember per exact query as it arrived (minus its ID) the reply already
made that asker's own (its question case, TTLs aged to the current second). A repeat query, the
common case, then costs one slice, one dict lookup, one check and one concatenation: no parsing
at all. A whole batch of datagrams is looked up in one pass (`tails`), and the listener writes
each reply into the slot its query came in. `_keys` remembers the normalized key of each exact
query looked up, so a repeat that misses (an answer that may not be cached) is not parsed again
either, and `_missed` how many replies had been put when an exact query last missed: until
another is put, it misses again without a lookup.

Entries carry the zone generation they were built from, so any zone swap retires them all at
once (and empties the ready tables, so a hit need not look at generations); forwarded entries
also expire with their TTL and have their TTLs counted down on the way out.

Hits are counted here, by key suffix and rcode, the labels /metrics gives them: each ready answer
holds its labels, so a hit costs one dict increment."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..dns.wire import QuestionKey, count_down, patch_reply, question_key, ttl_offsets

FOREVER = float("inf")
TRANSPORT_TAG = {"udp": b"U", "tcp": b"T"}  # a key's suffix: this byte, then the client's view
TAG_TRANSPORT = {tag[0]: transport for transport, tag in TRANSPORT_TAG.items()}
_UNKNOWN = QuestionKey(b"", 0)  # not looked up yet
_NO_TABLE: Mapping[bytes, object] = MappingProxyType({})  # for a client with no table (no view yet, refused)


@dataclass(slots=True)
class _Packed:
    reply: bytes
    ttls: list[tuple[int, int]]
    stored_at: float
    expires_at: float
    generation: int


@dataclass(slots=True)
class _Seen:
    """One exact query's ready answer: `tail` is the reply after its ID, with the asker's question
    bytes and TTLs aged by whole seconds; it holds until `renew_at` (never, for local answers)."""

    renew_at: float
    tail: bytes
    labels: tuple[bytes, int]  # what its hits are counted by: the key suffix, the rcode


ReadyTable = dict[bytes, _Seen]  # one key suffix's ready answers, by exact query after its ID


class PacketCache:
    def __init__(self, max_entries: int = 50_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: dict[bytes, _Packed] = {}
        self._ready: dict[bytes, ReadyTable] = {}  # by key suffix; emptied, never replaced
        self._ready_generation = -1  # the zone generation the ready tables hold answers of
        self._keys: dict[bytes, QuestionKey] = {}  # plain questions only
        self._missed: dict[bytes, int] = {}
        self._puts = 0
        self.max_entries = max_entries
        self._clock = clock
        self.hits: defaultdict[tuple[bytes, int], int] = defaultdict(int)  # by key suffix and rcode
        # The last query that missed and its exact key (bytes but the ID, then the suffix): what
        # comes next for it (the handler's memo of relays) is keyed the same, and need not make it.
        self.last_miss: tuple[bytes, bytes] = (b"", b"")

    def total_hits(self) -> int:
        return sum(list(self.hits.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def table(self, suffix: bytes) -> ReadyTable:
        """The ready answers for the key suffix `suffix`, for `tails`: the same dict for as long
        as this cache lives."""
        table = self._ready.get(suffix)
        if table is None:
            table = self._ready[suffix] = {}
        return table

    def answer(self, query: bytes, suffix: bytes, generation: int) -> bytes | None:
        """The reply to `query` (asked over the transport and from the view that `suffix` names),
        ready to send; None when it must take the slow path."""
        if generation != self._ready_generation:
            self._retire_ready(generation)
        asked = query[2:]
        exact = asked + suffix
        if self._missed.get(exact) == self._puts:  # first: a relay asked again ends here
            self.last_miss = (query, exact)
            return None  # it missed, and nothing was put since (so it is in no ready table)
        table = self._ready.get(suffix)
        seen = None if table is None else table.get(asked)
        if seen is None or (seen.renew_at != FOREVER and self._clock() >= seen.renew_at):
            return self._sight(query, exact, suffix, generation)  # not ready, or a second old: age the TTLs
        self.hits[seen.labels] += 1
        return query[:2] + seen.tail

    def tails(self, queries: list[bytes], hosts: list[str], tables: dict[str, ReadyTable],
              generation: int) -> list[bytes | None]:
        """For a batch of queries, each given without its ID and asked by the client `hosts`
        names (whose ready table `tables` holds): the reply to each, after its ID; None for each
        one that must go through `answer` (not made ready yet, a second old, or from a client
        with no table). One clock read for the batch."""
        if generation != self._ready_generation:
            self._retire_ready(generation)
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

    def _retire_ready(self, generation: int) -> None:
        """A zone swap: every ready answer is of the old zone."""
        for table in self._ready.values():
            table.clear()
        self._ready_generation = generation

    def _sight(self, query: bytes, exact: bytes, suffix: bytes, generation: int) -> bytes | None:
        """Look `query` up by its normalized key and remember the ready reply for its exact bytes,
        or that it missed."""
        qkey = self._keys.get(exact, _UNKNOWN)
        if qkey is _UNKNOWN:
            qkey = question_key(query)
            if qkey is None:  # not a plain question: nothing of it is kept (junk must cost no memory)
                self.last_miss = (query, exact)
                return None
            if len(self._keys) >= self.max_entries:
                self._keys.clear()
            self._keys[exact] = qkey
        entry = self._live(qkey.key + suffix, generation)
        table = self.table(suffix)
        if entry is None:
            table.pop(query[2:], None)
            if len(self._missed) >= self.max_entries:
                self._missed.clear()
            self._missed[exact] = self._puts
            self.last_miss = (query, exact)
            return None
        age, renew_at = 0, FOREVER
        if entry.expires_at != FOREVER:
            age = int(self._clock() - entry.stored_at)
            renew_at = min(entry.stored_at + age + 1, entry.expires_at)
        if len(table) >= self.max_entries:
            table.clear()  # cheap and rare: the next queries rebuild it from `_entries`
        seen = table[query[2:]] = _Seen(renew_at, _tail(entry, query, qkey.question_end, age),
                                        (suffix, entry.reply[3] & 0xF))
        self.hits[seen.labels] += 1
        return query[:2] + seen.tail

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

    def put(self, key: bytes, reply: bytes, cache_for: float | None, generation: int) -> None:
        """Keep `reply`: for `cache_for` seconds, until the zone changes if None, not at all if 0."""
        if cache_for is not None and cache_for <= 0:
            return
        now = self._clock()
        self._puts += 1
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # oldest insertion goes first
        if cache_for is None:
            self._entries[key] = _Packed(reply, [], now, FOREVER, generation)
        else:
            self._entries[key] = _Packed(reply, ttl_offsets(reply), now, now + cache_for, generation)


def _tail(entry: _Packed, query: bytes, question_end: int, age: int) -> bytes:
    reply = count_down(entry.reply, entry.ttls, age) if age and entry.ttls else entry.reply
    return patch_reply(reply, query, question_end)[2:]
