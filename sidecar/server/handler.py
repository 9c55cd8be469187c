"""The slow path: from a query to its reply bytes, for any transport. The question is read once;
the client is placed (or refused); the chain resolves it, or, with no plug-in before the local
zone, the zone and then the forwarder answer with no task; the reply is relayed or built.
Errors become rcodes here and only here: malformed -> FORMERR/NOTIMP or silence, no upstream ->
SERVFAIL, a failing plug-in -> SERVFAIL with its traceback logged."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from dnslib import CLASS, RCODE

from ..api import Answer, Query, Resolver
from ..dns.names import type_name
from ..dns.question import Question, read_question
from ..dns.relay import RelayFrame, relay_reply
from ..dns.reply import build_reply, error_reply, with_records
from ..errors import MalformedQuery, UpstreamError
from ..observe.logs import QueryLog
from ..observe.metrics import Metrics
from ..resolve.cache import CacheKey
from ..resolve.chain import Chain
from ..resolve.forward import Settled
from ..zone.store import Store
from .access import AccessPolicy, Clients, Placement
from .responder import Keep, Send

log = logging.getLogger(__name__)

SERVFAIL = Answer(rcode=RCODE.SERVFAIL, source="error")
REFUSED = Answer(rcode=RCODE.REFUSED, source="error")
NOT_ALLOWED = Answer(rcode=RCODE.REFUSED, source="policy")



@dataclass(frozen=True, slots=True)
class Relay:
    """A plain question found not to be local, asked from one placement over one transport: what
    relaying it (again) needs."""

    question: Question
    cache_key: CacheKey
    frame: RelayFrame
    transport: str
    placement: Placement


class QueryHandler:
    """`receive` takes a query's bytes; `answer` a question already read (by the fast path);
    `relay` a question known to go upstream. Each calls `send` exactly once, maybe before it
    returns."""

    def __init__(self, store: Store, chain: Chain, clients: Clients | None = None, metrics: Metrics | None = None,
                 query_log: QueryLog | None = None, local: Resolver | None = None) -> None:
        self.store = store
        self.chain = chain
        self.clients = clients or Clients(store, AccessPolicy())
        self.metrics = metrics or Metrics()
        self.query_log = query_log
        self.local = local
        self._tasks: set[asyncio.Task] = set()
        # With no plug-in before the local zone, plain questions need no task and no chain.
        self._direct = local is not None and chain.resolvers == (local,)

    def receive(self, data: bytes, client: str, transport: str, send: Send) -> None:
        """Answer the query `data` from `client`."""
        placement = self.clients.place(client)
        if placement is None and not self.clients.policy.local_to_any:
            if len(data) < 12 or data[2] & 0x80:
                send(None)  # never answer a response: that is how reflection loops start
                return
            self.metrics.answered(transport, RCODE.REFUSED, "policy", b"", 0.0)
            send(error_reply(data, RCODE.REFUSED))
            return
        try:
            question = read_question(data)
        except MalformedQuery as exc:
            log.debug("malformed query from %s: %s", client, exc)
            self.metrics.malformed += 1
            send(None if exc.reply_rcode is None else error_reply(data, exc.reply_rcode))
            return
        self.answer(question, data, client, transport, placement, send)

    def answer(self, question: Question, data: bytes, client: str, transport: str, placement: Placement | None,
               send: Send, keep: Keep | None = None) -> Relay | None:
        """Answer `question`, read from `data`, for a client placed at `placement` (None: a
        stranger, served local names only under --local-to-any); `keep` gets a reply that may
        answer again. The `Relay` when the question was found not to be local and relayed as it
        is, for whoever wants to relay it again."""
        started = time.perf_counter()
        finish = partial(self._finish, question, data, client, transport, placement, started, send, keep)
        if question.qclass != CLASS.IN:
            finish(REFUSED)
            return None
        query = Query(question.name, question.qtype, client, transport, placement.views if placement else (),
                      question.dnssec_ok, question.qclass)
        if placement is None:
            finish(self._stranger(query))
            return None
        if not self._direct or question.key is None:
            self._in_task(query, finish)
            return None
        try:
            outcome = self.local(query)
        except Exception:  # a bug must cost one answer, not the listener
            log.exception("answering %s %s failed", question.name, type_name(question.qtype))
            finish(SERVFAIL)
            return None
        if isinstance(outcome, Answer):
            finish(outcome)
            return None
        if outcome is not None:  # a CNAME chain that leaves our data: the chain finishes it
            self._in_task(query, finish)
            return None
        limit = None if transport == "tcp" else question.udp_limit
        relay = Relay(question, (query.key, question.qtype, question.qclass, question.dnssec_ok),
                      RelayFrame.of(data, question, limit), transport, placement)
        self.relay(relay, data, client, send, keep, started)
        return relay

    def relay(self, relay: Relay, data: bytes, client: str, send: Send, keep: Keep | None = None,
              started: float | None = None) -> None:
        """Relay a question known not to be local (`data` asks it, as the relay's question did,
        but for its ID): from the answer cache, else upstream."""
        if started is None:
            started = time.perf_counter()
        forwarder = self.chain.forwarder
        cached = forwarder.cache.get(relay.cache_key)
        if cached is not None:
            self._finish(relay.question, data, client, relay.transport, relay.placement, started, send, keep, cached)
            return
        forwarder.ask(relay.cache_key, forwarder.targets(relay.cache_key[0]), relay.question,
                      partial(self._relay_settled, relay, data, client, send, keep, started))

    def _relay_settled(self, relay: Relay, data: bytes, client: str, send: Send, keep: Keep | None,
                       started: float, settled: Settled) -> None:
        """The forwarder's word on a relayed question. Reply bytes that may not be kept, the
        common case, fill the relay's frame; anything else goes through `_finish`."""
        if isinstance(settled, bytes):
            reply = relay.frame.reply(data[:2], settled)
            self._answered(client, relay.transport, relay.placement.key, relay.question, reply[3] & 0xF, "forward",
                           started)
            send(reply)
            return
        if isinstance(settled, UpstreamError):
            settled = self._servfail(relay.question, settled)
        self._finish(relay.question, data, client, relay.transport, relay.placement, started, send, keep, settled)

    def _in_task(self, query: Query, finish: Callable[[Answer], None]) -> None:
        task = asyncio.get_running_loop().create_task(self._resolve(query, finish))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, query: Query, finish: Callable[[Answer], None]) -> None:
        """Resolve through the whole chain (plug-ins, local zone, forwarder)."""
        try:
            answer = await self.chain.resolve(query)
        except UpstreamError as exc:
            answer = self._servfail(query, exc)
        except Exception:  # a plug-in's bug must cost one answer, not the server
            log.exception("resolver failed on %s %s", query.name, query.type_name)
            answer = SERVFAIL
        finish(answer)

    @staticmethod
    def _servfail(asked: Question | Query, error: UpstreamError) -> Answer:
        log.log(logging.DEBUG if error.repeated else logging.WARNING, "SERVFAIL for %s %s: %s", asked.name,
                type_name(asked.qtype), error)
        return SERVFAIL

    def _finish(self, question: Question, data: bytes, client: str, transport: str, placement: Placement | None,
                started: float, send: Send, keep: Keep | None, answer: Answer) -> None:
        """Send the reply to `answer`: an upstream's bytes relayed as they came when they fit
        this client, else built; counted and logged. It is kept when the answer may be reused,
        the query is plain and the client is placed."""
        limit = None if transport == "tcp" else question.udp_limit
        reply = relay_reply(answer.wire, data, question, limit) if answer.wire is not None else None
        if reply is None:  # a local answer, or relayed bytes that do not fit this client as they are
            try:
                reply = build_reply(question, data, with_records(answer), limit)
            except MalformedQuery as exc:
                reply = error_reply(data, exc.reply_rcode or RCODE.FORMERR)
        view = placement.key if placement is not None else b""
        self._answered(client, transport, view, question, answer.rcode, answer.source, started)
        if keep is not None and answer.cache_for != 0 and placement is not None and question.key is not None:
            keep(reply, answer.cache_for)
        send(reply)

    def _answered(self, client: str, transport: str, view: bytes, question: Question, rcode: int, source: str,
                  started: float) -> None:
        """Count (and log, if asked) one answer that took from `started` until now."""
        seconds = time.perf_counter() - started
        self.metrics.answered(transport, rcode, source, view, seconds)
        if self.query_log is not None:
            self.query_log.answered(client, transport, question.name, question.qtype, rcode, source, seconds)

    def _stranger(self, query: Query) -> Answer:
        """A client outside the access policy, under --local-to-any: an answer from the local
        zone only (never a plug-in, never the forwarder: not an open resolver), else REFUSED."""
        if self.local is not None:
            outcome = self.local(query)
            if isinstance(outcome, Answer):
                return outcome
        return NOT_ALLOWED

