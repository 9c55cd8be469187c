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
from ..outcome import Answer, Query
from ..resolve.chain import Chain
from ..store import Store
from ..wire import build_reply, dnssec_ok, error_reply, parse_query, question_key, udp_limit
from .packetcache import PacketCache

log = logging.getLogger(__name__)

SERVFAIL = Answer(rcode=RCODE.SERVFAIL, source="error")
REFUSED = Answer(rcode=RCODE.REFUSED, source="error")
_TRANSPORT_TAG = {"udp": b"U", "tcp": b"T"}


class QueryHandler:
    def __init__(self, store: Store, chain: Chain, packets: PacketCache, metrics: Metrics | None = None,
                 query_log: QueryLog | None = None) -> None:
        self.store = store
        self.chain = chain
        self.packets = packets
        self.metrics = metrics or Metrics()
        self.query_log = query_log
        self._view_keys: dict[str, bytes] = {}
        self._view_generation = -1

    def _view_key(self, client: str) -> bytes:
        zone = self.store.zone
        if not zone.view_networks:
            return b""
        if self._view_generation != zone.generation:
            self._view_keys.clear()
            self._view_generation = zone.generation
        key = self._view_keys.get(client)
        if key is None:
            if len(self._view_keys) > 65_536:
                self._view_keys.clear()
            key = self._view_keys[client] = ",".join(zone.views_of(client)).encode()
        return key

    def cached(self, data: bytes, client: str, transport: str) -> bytes | None:
        """The fast path: a reply from the packet cache, or None to take the slow path."""
        view = self._view_key(client)
        reply = self.packets.answer(data, _TRANSPORT_TAG[transport] + view, self.store.zone.generation)
        if reply is None:
            return None
        hits, labels = self.metrics.packet_hits, (transport, reply[3] & 0xF, view)
        hits[labels] = hits.get(labels, 0) + 1
        if self.query_log is not None:
            self.query_log.replayed(data, client, transport, reply)
        return reply

    async def handle(self, data: bytes, client: str, transport: str) -> bytes | None:
        """The slow path: parse, resolve through the chain, pack, and remember the reply."""
        try:
            request = parse_query(data)
        except MalformedQuery as exc:
            log.debug("malformed query from %s: %s", client, exc)
            self.metrics.malformed += 1
            return None if exc.reply_rcode is None else error_reply(data, exc.reply_rcode)
        started = time.perf_counter()
        zone = self.store.zone
        query = Query(str(request.q.qname), request.q.qtype, client, transport, zone.views_of(client),
                      dnssec_ok(request), request.q.qclass)
        if query.qclass != CLASS.IN:
            answer = REFUSED
        else:
            try:
                answer = await self.chain.resolve(query)
            except UpstreamError as exc:
                log.warning("SERVFAIL for %s %s: %s", query.name, query.type_name, exc)
                answer = SERVFAIL
            except Exception:  # a plug-in's bug must cost one answer, not the server
                log.exception("resolver failed on %s %s", query.name, query.type_name)
                answer = SERVFAIL
        reply = build_reply(request, answer, udp_limit(request) if transport == "udp" else None)
        view = self._view_key(client)
        qkey = question_key(data)
        if qkey is not None:
            self.packets.put(qkey.key + _TRANSPORT_TAG[transport] + view, reply, answer.cache_for, zone.generation)
        seconds = time.perf_counter() - started
        self.metrics.answered(transport, answer.rcode, answer.source, view, seconds)
        if self.query_log is not None:
            self.query_log.answered(client, transport, query.name, query.qtype, answer.rcode, answer.source, seconds)
        return reply
