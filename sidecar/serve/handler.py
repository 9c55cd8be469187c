"""From query bytes to reply bytes, for any transport. Errors become rcodes here and only here:
malformed -> FORMERR/NOTIMP or silence, no upstream -> SERVFAIL, a failing plug-in -> SERVFAIL
with its traceback logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from dnslib import CLASS, RCODE, DNSRecord

from ..api import Answer, Query, Resolver
from ..dns.wire import (
    PlainQuestion,
    RelayFrame,
    build_reply,
    dnssec_ok,
    error_reply,
    parse_query,
    plain_question,
    question_key,
    question_name,
    relay_reply,
    udp_limit,
    with_records,
)
from ..errors import MalformedQuery, UpstreamError
from ..fastpath.packetcache import TRANSPORT_TAG, PacketCache, ReadyTable
from ..observe.logs import QueryLog
from ..observe.metrics import Metrics
from ..resolve.cache import CacheKey
from ..resolve.chain import Chain
from ..resolve.forward import Settled, relayed_answer
from ..resolve.upstream.exchange import Question
from ..zone.records import type_name
from ..zone.store import Store
from .access import AccessPolicy

log = logging.getLogger(__name__)

SERVFAIL = Answer(rcode=RCODE.SERVFAIL, source="error")
REFUSED = Answer(rcode=RCODE.REFUSED, source="error")
NOT_ALLOWED = Answer(rcode=RCODE.REFUSED, source="policy")
_UNSEEN = b"?unseen"
MAX_RELAYS = 50_000


@dataclass(slots=True)
class _Asked:
    """One query between its arrival and its answer: its bytes (and parse, if one was needed),
    question, UDP size limit (None over TCP), who asked and how, the client's view key (None:
    refused by the access policy), and the zone generation and time it arrived."""

    data: bytes
    request: DNSRecord | None
    question: PlainQuestion
    limit: int | None
    client: str
    transport: str
    view: bytes | None
    generation: int
    started: float


@dataclass(frozen=True, slots=True)
class _Relay:
    """A plain question found not to be local, for one exact query (all but its ID) from one view
    over one transport: what relaying it again needs, down to the frame of its reply."""

    plain: PlainQuestion
    cache_key: CacheKey
    question: Question  # as asked upstream
    frame: RelayFrame
    transport: str
    view: bytes
    generation: int  # the zone's when it was found: the memo is dropped when that changes


class QueryHandler:
    def __init__(self, store: Store, chain: Chain, packets: PacketCache, metrics: Metrics | None = None,
                 query_log: QueryLog | None = None, access: AccessPolicy | None = None,
                 local: Resolver | None = None) -> None:
        self.store = store
        self.chain = chain
        self.packets = packets
        self.metrics = metrics or Metrics()
        self.query_log = query_log
        self.local = local
        self.access = access or AccessPolicy()
        self._client_keys: dict[str, bytes | None] = {}
        self._suffixes: dict[str, dict[str, bytes]] = {transport: {} for transport in TRANSPORT_TAG}
        self._udp_tables: dict[str, ReadyTable] = {}  # each UDP client's view's ready answers
        self._relays: dict[bytes, _Relay] = {}
        self._keys_generation = -1
        # With no plug-in before the local zone, plain questions skip the chain (`respond`).
        self._direct = local is not None and chain.resolvers == (local,)

    def _client_key(self, client: str) -> bytes | None:
        """The client's view as packet-cache key bytes, or None when the access policy refuses
        it; remembered per address until the zone (and so the known networks) changes. A zone
        change also forgets which questions were found not to be local."""
        zone = self.store.zone
        if self._keys_generation != zone.generation:
            self._forget_clients()
            self._relays.clear()
            self._keys_generation = zone.generation
        key = self._client_keys.get(client, _UNSEEN)
        if key is _UNSEEN:
            if len(self._client_keys) > 65_536:
                self._forget_clients()
            allowed = self.access.allows(client, zone)
            key = self._client_keys[client] = ",".join(zone.views_of(client)).encode() if allowed else None
        return key

    def _forget_clients(self) -> None:
        self._client_keys.clear()
        self._udp_tables.clear()
        for suffixes in self._suffixes.values():
            suffixes.clear()

    def cached(self, data: bytes, client: str, transport: str) -> bytes | None:
        """The fast path: a reply from the packet cache, or None to take the slow path."""
        generation = self.store.zone.generation
        suffix = self._suffixes[transport].get(client) if generation == self._keys_generation else None
        if suffix is None:
            view = self._client_key(client)
            if view is None:
                if self.access.local_to_any:
                    return None  # the slow path answers local names only
                if len(data) < 12 or data[2] & 0x80:
                    return None  # never answer a response: that is how reflection loops start
                self.metrics.answered(transport, RCODE.REFUSED, "policy", b"", 0.0)
                return error_reply(data, RCODE.REFUSED)
            suffix = self._suffixes[transport][client] = TRANSPORT_TAG[transport] + view
            if transport == "udp":
                self._udp_tables[client] = self.packets.table(suffix)
        reply = self.packets.answer(data, suffix, generation)
        if reply is None:
            return None
        if self.query_log is not None:
            self.query_log.replayed(data, client, transport, reply)
        return reply

    def ready_replies(self, queries: list[bytes], clients: list[str]) -> list[bytes | None]:
        """The fast path for a batch of UDP queries, each given without its ID: per query, the
        reply after its ID; None for each one that must go through `cached` (which is also where
        a client is first placed in its view, or refused). With a query log, every hit must be
        logged: all go through `cached`."""
        generation = self.store.zone.generation
        if generation != self._keys_generation or self.query_log is not None:
            return [None] * len(queries)
        return self.packets.tails(queries, clients, self._udp_tables, generation)

    def respond(self, data: bytes, client: str, transport: str, send: Callable[[bytes | None], None]) -> bool:
        """The middle path, for a plain question when no plug-in is in the chain: a local answer
        at once, a forwarded one from a callback, with no task and no dnslib on the way out of a
        relay. `send` gets the reply (None: nothing to send), exactly once, possibly before this
        returns True. False, and `send` is never called, when the query needs `handle`.

        A question found not to be local is remembered (per exact query, view and transport,
        until the zone changes), so asking it again goes straight to the answer cache and
        upstream, and its reply is made from the remembered frame. The memo is keyed as the
        packet cache's exact queries are: when `cached` has just missed these very bytes (over
        this transport, as the listener calls them), its key is taken as it is."""
        if not self._direct:
            return False
        missed, memo_key = self.packets.last_miss
        relay = self._relays.get(memo_key) if missed is data else None
        if relay is not None:
            self._relay(relay, data, client, send)
            return True
        view = self._client_key(client)
        if view is None:
            return False
        memo_key = data[2:] + TRANSPORT_TAG[transport] + view
        relay = self._relays.get(memo_key)
        if relay is None:
            plain = plain_question(data)
            if plain is None or plain.qclass != CLASS.IN:
                return False
            asked = self._asked(data, client, transport, plain, view)
            try:
                query = Query(plain.name, plain.qtype, client, transport, self.store.zone.views_of(client),
                              plain.dnssec_ok, plain.qclass)
                outcome = self.local(query)
            except Exception:  # a bug must cost one answer, not the listener
                log.exception("answering %s %s failed", plain.name, type_name(plain.qtype))
                send(self._finish(asked, SERVFAIL))
                return True
            if isinstance(outcome, Answer):
                send(self._finish(asked, outcome))
                return True
            if outcome is not None:
                return False  # a CNAME chain that leaves our data: the chain finishes it
            relay = self._remember(memo_key, asked, query.key)
        self._relay(relay, data, client, send)
        return True

    def _relay(self, relay: _Relay, data: bytes, client: str, send: Callable[[bytes | None], None]) -> None:
        """Relay a question known not to be local: from the answer cache, else upstream."""
        forwarder = self.chain.forwarder
        started = time.perf_counter()
        cached = forwarder.cache.get(relay.cache_key)
        if cached is not None:
            send(self._finish(self._relay_asked(relay, data, client, started), cached))
            return
        forwarder.ask(relay.cache_key, forwarder.targets(relay.cache_key[0]), relay.question,
                      partial(self._relay_settled, relay, data, client, send, started))

    def _relay_settled(self, relay: _Relay, data: bytes, client: str, send: Callable[[bytes | None], None],
                       started: float, settled: Settled) -> None:
        """The forwarder's word on a relayed question (a partial, not a closure: once per query).
        Reply bytes that may not be cached, the common case, fill the relay's frame; anything
        else (an answer to keep, no upstream answering: SERVFAIL) goes through `_finish`."""
        if isinstance(settled, bytes):
            reply = relay.frame.reply(data[:2], settled)
            self._answered(client, relay.transport, relay.view, relay.plain, reply[3] & 0xF, "forward", started)
            send(reply)
            return
        asked = self._relay_asked(relay, data, client, started)
        if isinstance(settled, UpstreamError):
            settled = self._servfail(asked, settled)
        send(self._finish(asked, settled))

    def _relay_asked(self, relay: _Relay, data: bytes, client: str, started: float) -> _Asked:
        """What `_finish` needs of a remembered relay's query, made only when a reply must go
        that way (cached, kept, or a failure)."""
        return _Asked(data, None, relay.plain, relay.frame.limit, client, relay.transport, relay.view,
                      relay.generation, started)

    def _remember(self, memo_key: bytes, asked: _Asked, qname: str) -> _Relay:
        if len(self._relays) >= MAX_RELAYS:
            self._relays.clear()  # rare and cheap: repeats rebuild it
        data, plain = asked.data, asked.question
        qend = plain.qkey.question_end  # the question's name, then its type and class
        question = Question(data[12 : qend - 4].lower(), data[qend - 4 : qend])
        relay = self._relays[memo_key] = _Relay(
            plain, (qname, plain.qtype, plain.qclass, plain.dnssec_ok), question,
            RelayFrame.of(data, plain.qkey, asked.limit), asked.transport, asked.view, asked.generation)
        return relay

    async def handle(self, data: bytes, client: str, transport: str) -> bytes | None:
        """The slow path: read the question (by hand when it is plain), resolve it through the
        chain, relay or pack the reply, and remember it. dnslib parses the query only when the
        question is unusual or a reply must be built rather than relayed."""
        plain = plain_question(data)
        request = None
        if plain is None:
            try:
                request = parse_query(data)
            except MalformedQuery as exc:
                log.debug("malformed query from %s: %s", client, exc)
                self.metrics.malformed += 1
                return None if exc.reply_rcode is None else error_reply(data, exc.reply_rcode)
        asked = self._asked(data, client, transport, plain, self._client_key(client), request)
        question = asked.question
        query = Query(question.name, question.qtype, client, transport, self.store.zone.views_of(client),
                      question.dnssec_ok, question.qclass)
        if query.qclass != CLASS.IN:
            answer = REFUSED
        elif asked.view is None:
            answer = self._stranger(query)
        else:
            try:
                answer = await self.chain.resolve(query)
            except UpstreamError as exc:
                answer = self._servfail(asked, exc)
            except Exception:  # a plug-in's bug must cost one answer, not the server
                log.exception("resolver failed on %s %s", query.name, query.type_name)
                answer = SERVFAIL
        return self._finish(asked, answer)

    def _asked(self, data: bytes, client: str, transport: str, plain: PlainQuestion | None, view: bytes | None,
               request: DNSRecord | None = None) -> _Asked:
        """What answering `data` needs to remember until the answer comes: the plain question,
        or else the same read from the parsed request."""
        if plain is None:
            assert request is not None
            plain = PlainQuestion(question_name(request), request.q.qtype, request.q.qclass, dnssec_ok(request),
                                  udp_limit(request), question_key(data))
        return _Asked(data, request, plain, None if transport == "tcp" else plain.udp_limit, client, transport, view,
                      self.store.zone.generation, time.perf_counter())

    @staticmethod
    def _servfail(asked: _Asked, error: UpstreamError) -> Answer:
        log.log(logging.DEBUG if error.repeated else logging.WARNING, "SERVFAIL for %s %s: %s", asked.question.name,
                type_name(asked.question.qtype), error)
        return SERVFAIL

    def _finish(self, asked: _Asked, answer: Answer | bytes) -> bytes | None:
        """The reply bytes for `answer` (relayed as the upstream sent them when possible, else
        built), kept in the packet cache, counted and logged. Bare bytes are an upstream reply
        that may not be cached."""
        if isinstance(answer, bytes):
            wire, rcode, source, cache_for = answer, answer[3] & 0xF, "forward", 0
        else:
            wire, rcode, source, cache_for = answer.wire, answer.rcode, answer.source, answer.cache_for
        data, qkey = asked.data, asked.question.qkey
        reply = relay_reply(wire, data, qkey, asked.limit) if wire is not None else None
        if reply is None:  # a local answer, or relayed bytes that do not fit this client as they are
            try:
                request = asked.request or parse_query(data)
            except MalformedQuery as exc:
                return error_reply(data, exc.reply_rcode or RCODE.FORMERR)
            if isinstance(answer, bytes):
                answer = relayed_answer(answer)
            reply = build_reply(request, with_records(answer), asked.limit)
        if cache_for != 0 and qkey is not None and asked.view is not None:
            self.packets.put(qkey.key + TRANSPORT_TAG[asked.transport] + asked.view, reply, cache_for,
                             asked.generation)
        self._answered(asked.client, asked.transport, asked.view or b"", asked.question, rcode, source, asked.started)
        return reply

    def _answered(self, client: str, transport: str, view: bytes, question: PlainQuestion, rcode: int, source: str,
                  started: float) -> None:
        """Count (and log, if asked) one answer that took from `started` until now."""
        seconds = time.perf_counter() - started
        self.metrics.answered(transport, rcode, source, view, seconds)
        if self.query_log is not None:
            self.query_log.answered(client, transport, question.name, question.qtype, rcode, source, seconds)

    def _stranger(self, query: Query) -> Answer:
        """A client outside the access policy: REFUSED, or with --local-to-any an answer from the
        local zone only (never a plug-in, never the forwarder: not an open resolver)."""
        if self.access.local_to_any and self.local is not None:
            outcome = self.local(query)
            if isinstance(outcome, Answer):
                return outcome
        return NOT_ALLOWED
