"""From query bytes to reply bytes, for any transport. Errors become rcodes here and only here:
malformed -> FORMERR/NOTIMP or silence, no upstream -> SERVFAIL, a failing plug-in -> SERVFAIL
with its traceback logged."""

from __future__ import annotations

import logging
import time

from dnslib import CLASS, RCODE

from ..errors import MalformedQuery, UpstreamError
from ..logs import QueryLog
from ..metrics import Metrics
from ..outcome import Answer, Query, Resolver
from ..resolve.chain import Chain
from ..store import Store
from ..wire import (
    build_reply,
    dnssec_ok,
    error_reply,
    parse_query,
    plain_question,
    question_key,
    relay_reply,
    udp_limit,
    with_records,
)
from .access import AccessPolicy
from .packetcache import PacketCache

log = logging.getLogger(__name__)

SERVFAIL = Answer(rcode=RCODE.SERVFAIL, source="error")
REFUSED = Answer(rcode=RCODE.REFUSED, source="error")
NOT_ALLOWED = Answer(rcode=RCODE.REFUSED, source="policy")
_UNSEEN = b"?unseen"
_TRANSPORT_TAG = {"udp": b"U", "tcp": b"T"}


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
        self._keys_generation = -1

    def _client_key(self, client: str) -> bytes | None:
        """The client's view as packet-cache key bytes, or None when the access policy refuses
        it; remembered per address until the zone (and so the known networks) changes."""
        zone = self.store.zone
        if self._keys_generation != zone.generation:
            self._client_keys.clear()
            self._keys_generation = zone.generation
        key = self._client_keys.get(client, _UNSEEN)
        if key is _UNSEEN:
            if len(self._client_keys) > 65_536:
                self._client_keys.clear()
            allowed = self.access.allows(client, zone)
            key = self._client_keys[client] = ",".join(zone.views_of(client)).encode() if allowed else None
        return key

    def cached(self, data: bytes, client: str, transport: str) -> bytes | None:
        """The fast path: a reply from the packet cache, or None to take the slow path."""
        view = self._client_key(client)
        if view is None:
            if self.access.local_to_any:
                return None  # the slow path answers local names only
            if len(data) < 12 or data[2] & 0x80:
                return None  # never answer a response: that is how reflection loops start
            self.metrics.answered(transport, RCODE.REFUSED, "policy", b"", 0.0)
            return error_reply(data, RCODE.REFUSED)
        reply = self.packets.answer(data, _TRANSPORT_TAG[transport] + view, self.store.zone.generation)
        if reply is None:
            return None
        hits, labels = self.metrics.packet_hits, (transport, reply[3] & 0xF, view)
        hits[labels] = hits.get(labels, 0) + 1
        if self.query_log is not None:
            self.query_log.replayed(data, client, transport, reply)
        return reply

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
            name, qtype, qclass = str(request.q.qname), request.q.qtype, request.q.qclass
            do_bit, udp_size = dnssec_ok(request), udp_limit(request)
        else:
            name, qtype, qclass = plain.name, plain.qtype, plain.qclass
            do_bit, udp_size = plain.dnssec_ok, plain.udp_limit
        started = time.perf_counter()
        zone = self.store.zone
        query = Query(name, qtype, client, transport, zone.views_of(client), do_bit, qclass)
        view = self._client_key(client)
        if query.qclass != CLASS.IN:
            answer = REFUSED
        elif view is None:
            answer = self._stranger(query)
        else:
            try:
                answer = await self.chain.resolve(query)
            except UpstreamError as exc:
                log.log(logging.DEBUG if exc.repeated else logging.WARNING, "SERVFAIL for %s %s: %s", query.name,
                        query.type_name, exc)
                answer = SERVFAIL
            except Exception:  # a plug-in's bug must cost one answer, not the server
                log.exception("resolver failed on %s %s", query.name, query.type_name)
                answer = SERVFAIL
        limit = None if transport == "tcp" else udp_size
        qkey = plain.qkey if plain is not None else question_key(data)
        reply = relay_reply(answer.wire, data, qkey, limit) if answer.wire is not None else None
        if reply is None:  # a local answer, or relayed bytes that do not fit this client as they are
            try:
                request = request or parse_query(data)
            except MalformedQuery as exc:
                return error_reply(data, exc.reply_rcode or RCODE.FORMERR)
            reply = build_reply(request, with_records(answer), limit)
        if qkey is not None and view is not None:
            self.packets.put(qkey.key + _TRANSPORT_TAG[transport] + view, reply, answer.cache_for, zone.generation)
        seconds = time.perf_counter() - started
        self.metrics.answered(transport, answer.rcode, answer.source, view or b"", seconds)
        if self.query_log is not None:
            self.query_log.answered(client, transport, query.name, query.qtype, answer.rcode, answer.source, seconds)
        return reply

    def _stranger(self, query: Query) -> Answer:
        """A client outside the access policy: REFUSED, or with --local-to-any an answer from the
        local zone only (never a plug-in, never the forwarder: not an open resolver)."""
        if self.access.local_to_any and self.local is not None:
            outcome = self.local(query)
            if isinstance(outcome, Answer):
                return outcome
        return NOT_ALLOWED
