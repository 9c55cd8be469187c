"""The fast path, in front of the slow one (`server.handler`): what it has ready it answers with
no parsing at all; the rest it reads once and hands on, keeping what the answer makes reusable.
Everything here is for speed only: without it (`--no-fast-path`) the handler answers every
query, with the same bytes."""

from __future__ import annotations

from functools import partial

from ..dns.question import read_question
from ..errors import MalformedQuery
from ..server.handler import QueryHandler, Relay
from ..server.responder import Keep, Send
from ..zone.store import Store
from .packetcache import TRANSPORT_TAG, PacketCache, ReadyTable

MAX_CLIENTS = 65_536
MAX_RELAYS = 50_000


class FastPath:
    """`receive` as the handler's, and `ready_batch` for a batch of UDP queries."""

    def __init__(self, handler: QueryHandler, store: Store, packets: PacketCache | None = None) -> None:
        self._handler = handler
        self._clients = handler.clients
        self._query_log = handler.query_log
        self._store = store
        self.packets = packets or PacketCache()
        # Each client's ready table, by transport; and relays by exact query but its ID, and suffix.
        self._tables: dict[str, dict[str, ReadyTable]] = {transport: {} for transport in TRANSPORT_TAG}
        self._relays: dict[bytes, tuple[Relay, Keep]] = {}
        self._generation = -1  # the zone generation both hold answers of

    def receive(self, data: bytes, client: str, transport: str, send: Send) -> None:
        """Answer the query `data` from `client`; `send` gets the reply exactly once. In order: a
        reply made ready for these exact bytes (but the ID) from this client's view; else a relay
        remembered for them (a question found not to be local: straight to the answer cache and
        upstream); else the question is read, a kept reply for it made ready, or the handler answers."""
        generation = self._store.zone.generation
        if generation != self._generation:
            self._retire(generation)
        table = self._tables[transport].get(client)
        if table is None:
            table = self._table(client, transport)
            if table is None:  # the policy refuses the client, or serves it local names only
                self._handler.receive(data, client, transport, send)
                return
        asked = data[2:]
        tail = self.packets.ready(table, asked)
        if tail is not None:
            self._replay(data, client, transport, tail, send)
            return
        exact = asked + table.suffix
        remembered = self._relays.get(exact)
        if remembered is not None:
            relay, keep = remembered
            self._handler.relay(relay, data, client, send, keep)
            return
        try:
            question = read_question(data)
        except MalformedQuery:
            self._handler.receive(data, client, transport, send)  # which says how to answer it
            return
        if question.key is None:  # not plain: nothing of it is kept (junk must cost no memory)
            self._handler.answer(question, data, client, transport, table.placement, send)
            return
        tail = self.packets.make_ready(table, data, question, generation)
        if tail is not None:
            self._replay(data, client, transport, tail, send)
            return
        keep = partial(self._keep, question.key + table.suffix, exact, generation)
        relay = self._handler.answer(question, data, client, transport, table.placement, send, keep)
        if relay is not None:
            if len(self._relays) >= MAX_RELAYS:
                self._relays.clear()  # rare and cheap: repeats make it again
            self._relays[exact] = (relay, keep)

    def ready_batch(self, queries: list[bytes], hosts: list[str]) -> list[bytes | None]:
        """For a batch of UDP queries, each given without its ID: the ready reply to each, after
        its ID; None for each one that must go through `receive`."""
        if self._store.zone.generation != self._generation:
            return [None] * len(queries)
        return self.packets.ready_batch(queries, hosts, self._tables["udp"])

    def _table(self, client: str, transport: str) -> ReadyTable | None:
        """The ready table for `client`'s placement, now remembered for it; None for a client
        the policy does not place."""
        placement = self._clients.place(client)
        if placement is None:
            return None
        tables = self._tables[transport]
        if len(tables) >= MAX_CLIENTS:
            tables.clear()
        table = tables[client] = self.packets.table(transport, placement)
        return table

    def _replay(self, data: bytes, client: str, transport: str, tail: bytes, send: Send) -> None:
        """Send a ready reply (and log it, with --log-queries)."""
        reply = data[:2] + tail
        if self._query_log is not None:
            self._query_log.replayed(data, client, transport, reply)
        send(reply)

    def _keep(self, key: bytes, exact: bytes, generation: int, reply: bytes, keep_for: float | None) -> None:
        """Keep a reply that may answer again, under `key`; the query `exact` then goes to it,
        not to a relay."""
        self.packets.put(key, reply, keep_for, generation)
        self._relays.pop(exact, None)

    def _retire(self, generation: int) -> None:
        """A zone swap: placements, ready replies and relays may all have changed."""
        for tables in self._tables.values():
            tables.clear()
        self._relays.clear()
        self.packets.retire(generation)
        self._generation = generation
