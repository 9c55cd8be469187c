"""Relays questions upstream: from the cache when it can, else to the first live upstream (UDP,
TCP when the reply is truncated), the next one on timeout, SERVFAIL or REFUSED. A question gets
at most `BUDGET_FACTOR` x the per-upstream timeout in all, so a client sees SERVFAIL (or a stale
answer) before it gives up on us. Identical questions in flight share one upstream query."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

from dnslib import QTYPE, RCODE, DNSError

from ..api import Answer, Query
from ..dns.question import Question
from ..dns.relay import without_opt
from ..dns.reply import answer_from_reply
from ..dns.wire import TC
from ..errors import UpstreamError
from ..net.endpoint import Endpoint, parse_endpoint
from ..zone.records import normalize_name
from .cache import AnswerCache, CacheKey
from .conditional import ConditionalForwards
from .health import Health
from .scrub import scrubbed
from .upstream.exchange import Exchanger
from .upstream.udp import OutOfSockets, Received
from .upstreams import without_own

log = logging.getLogger(__name__)

BUDGET_FACTOR = 1.5
_PROBE = Question.of(".", QTYPE.NS, 1, False)
_PARSE_ERRORS = (DNSError, ValueError, IndexError, UnicodeError, struct.error)
_TRY_ANOTHER = frozenset((RCODE.SERVFAIL, RCODE.REFUSED))  # plain ints: dnslib's RCODE lookups are slow

Settled = Answer | bytes | UpstreamError  # bytes: an upstream reply to relay (`without_opt`), never cached
Waiter = Callable[[Settled], None]
FlightKey = tuple[CacheKey, tuple[Endpoint, ...]]


def relayed_answer(reply: bytes) -> Answer:
    """Reply bytes settled for relaying, as an `Answer` for a caller that needs one."""
    return Answer(rcode=reply[3] & 0xF, source="forward", wire=reply)


def _why(exc: Exception) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else f"{type(exc).__name__} {exc}".strip()


@dataclass(eq=False, slots=True)
class _Flight:
    """One question on its way upstream, moved along by callbacks (reply, timeout, error) rather
    than a coroutine, so a plain relayed query needs no task (`Forwarder.ask`): who waits for it,
    the upstreams to try (in health order; the first `tried` have been, the last of them is being
    asked now), when its budget runs out, and why each upstream failed so far."""

    cache_key: CacheKey
    targets: tuple[Endpoint, ...]
    question: Question
    order: Sequence[Endpoint]
    deadline: float  # time.monotonic()
    waiters: list[Waiter]
    tried: int = 0
    failures: tuple[str, ...] = ()  # a tuple: most flights never fail, and `()` costs nothing to make

    def failed(self, why: str) -> None:
        self.failures += (why,)

    @property
    def asking(self) -> Endpoint:
        """The upstream asked now (a flight asks one at a time): read only when it must be named."""
        return self.order[self.tried - 1]


class Forwarder:
    """`own`: our listen addresses, never asked even when a plug-in names them (the loop guard
    the default upstreams and --forward rules get where they are configured)."""

    def __init__(self, upstreams: Callable[[], tuple[Endpoint, ...]], cache: AnswerCache,
                 timeout: float = 1.0, conditional: ConditionalForwards | None = None,
                 own: Sequence[Endpoint] = ()) -> None:
        self._upstreams = upstreams
        self._own = tuple(own)
        self.cache = cache
        self.timeout = timeout
        self._budget = timeout * BUDGET_FACTOR
        self._rules = conditional or None  # None when there are no rules: no lookup per question
        self.exchanger = Exchanger()
        self.health = Health(self._probe)
        self._inflight: dict[FlightKey, _Flight] = {}
        # A plug-in's upstream lists, checked against our own addresses (and said so) once each.
        self._named: dict[tuple[str, ...], tuple[Endpoint, ...]] = {}
        self._tcp_legs: set[asyncio.Task] = set()  # held so they are not collected mid-flight

    async def resolve(self, query: Query, upstreams: Sequence[str] = (), name: str | None = None) -> Answer:
        """Answer `query` (or `name` instead of its name) from cache or upstream: `upstreams` if
        given, else a --forward rule's, else the defaults. Raises UpstreamError when nobody
        answers and nothing stale is left."""
        qname = normalize_name(name) if name else query.key
        key: CacheKey = (qname, query.qtype, query.qclass, query.dnssec_ok)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        try:
            question = Question.of(qname, query.qtype, query.qclass, query.dnssec_ok)
        except ValueError as exc:
            raise UpstreamError(str(exc)) from None
        future: asyncio.Future[Settled] = asyncio.get_running_loop().create_future()
        self.ask(key, self.targets(qname, upstreams), question,
                 lambda settled: future.done() or future.set_result(settled))
        settled = await future
        if isinstance(settled, UpstreamError):
            raise UpstreamError(str(settled), settled.repeated)
        return relayed_answer(settled) if isinstance(settled, bytes) else settled

    def targets(self, qname: str, named: Sequence[str] = ()) -> tuple[Endpoint, ...]:
        """Where `qname` goes: the `named` upstreams (a plug-in's, less our own addresses: said
        once per list), else a --forward rule's, else the defaults."""
        if named:
            key = tuple(named)
            found = self._named.get(key)
            if found is None:
                found = self._named[key] = without_own([parse_endpoint(u) for u in named], self._own,
                                                       "a plug-in's Forward")
            return found
        ruled = None if self._rules is None else self._rules.upstreams_for(qname)
        return self._upstreams() if ruled is None else ruled

    def ask(self, key: CacheKey, targets: tuple[Endpoint, ...], question: Question, waiter: Waiter) -> None:
        """Ask `targets` for `question` (the cache already missed); `waiter` gets the Answer, the
        reply bytes (one that cannot be cached, relayed as it is, with no `Answer` built around
        it) or the UpstreamError, exactly once, possibly before this returns. A question
        that failed a moment ago is not asked again: it gets a stale answer or the remembered
        failure."""
        flight_key = (key, targets)
        flight = self._inflight.get(flight_key)
        if flight is not None:
            flight.waiters.append(waiter)
            return
        if self.cache.failures or not targets:
            reason = self.cache.failure(key) or (None if targets else "no upstream resolver configured")
            if reason is not None:
                waiter(self._stale_or(key, UpstreamError(reason, repeated=True)))
                return
        deadline = time.monotonic() + self._budget
        order = self.health.order(targets) if self.health.dead else targets
        flight = self._inflight[flight_key] = _Flight(key, targets, question, order, deadline, [waiter])
        self._try_next(flight)

    def _try_next(self, flight: _Flight) -> None:
        """Send the flight to the next upstream, or give up when none (or no time) is left."""
        order, timeout = flight.order, self.timeout
        while flight.tried < len(order):
            remaining = flight.deadline - time.monotonic()
            if remaining <= 0:
                flight.failed("out of time")
                break
            upstream = order[flight.tried]
            flight.tried += 1
            try:
                self.exchanger.send_udp(upstream, flight.question, remaining if remaining < timeout else timeout,
                                        partial(self._on_udp, flight))
                return
            except OutOfSockets as exc:  # ours to fix, not the upstream's: it stays alive
                flight.failed(f"{upstream}: {exc}")
            except OSError as exc:
                self._upstream_failed(flight, upstream, exc)
        qname, qtype = flight.cache_key[:2]
        reason = f"no upstream answered {qname} {QTYPE.get(qtype)}: {'; '.join(flight.failures)}"
        self.cache.put_failure(flight.cache_key, reason)
        self._settle(flight, self._stale_or(flight.cache_key, UpstreamError(reason)))

    def _upstream_failed(self, flight: _Flight, upstream: Endpoint, exc: Exception) -> None:
        self.health.failed(upstream, _why(exc))
        flight.failed(f"{upstream}: {_why(exc)}")

    def _crashed(self, flight: _Flight, exc: Exception) -> None:
        """A bug in a step of `flight` costs this question (SERVFAIL, logged), never the socket
        reader that called the step nor the other questions."""
        log.error("forwarding %s failed", flight.cache_key[0], exc_info=exc)
        if self._inflight.get((flight.cache_key, flight.targets)) is flight:
            self._settle(flight, UpstreamError(f"internal error: {exc!r}"))

    def _on_udp(self, flight: _Flight, outcome: Received) -> None:
        try:
            if isinstance(outcome, Exception):
                self._upstream_failed(flight, flight.asking, outcome)
                self._try_next(flight)
                return
            if self.health.dead:
                self.health.answered(flight.asking)
            if outcome[2] & TC >> 8:
                leg = asyncio.get_running_loop().create_task(self._over_tcp(flight))
                self._tcp_legs.add(leg)
                leg.add_done_callback(self._tcp_legs.discard)
                return
            self._on_reply(flight, outcome)
        except Exception as exc:
            self._crashed(flight, exc)

    async def _over_tcp(self, flight: _Flight) -> None:
        """A truncated UDP reply: the same question to the same upstream over TCP."""
        remaining = max(0.1, flight.deadline - time.monotonic())
        try:
            data = await self.exchanger.tcp(flight.asking, flight.question, remaining)
        except (TimeoutError, OSError) as exc:
            flight.failed(f"{flight.asking} over TCP: {_why(exc)}")
            data = None
        try:
            if data is None:
                self._try_next(flight)
            else:
                self._on_reply(flight, data)
        except Exception as exc:
            self._crashed(flight, exc)

    def _on_reply(self, flight: _Flight, data: bytes) -> None:
        """A reply from the upstream being asked, over UDP or TCP."""
        rcode = data[3] & 0xF
        if rcode in _TRY_ANOTHER:
            flight.failed(f"{flight.asking}: {RCODE.get(rcode)}")
            self._try_next(flight)
            return
        try:
            relayed, smallest_ttl = without_opt(data, flight.question.end)
            relayed = scrubbed(relayed, flight.question.end)
            # Nothing to cache (TTL 0): relayed as bytes, never parsed (two dnslib passes spared).
            answer = None if self.cache.min_ttl == 0 and not smallest_ttl else answer_from_reply(relayed)
        except _PARSE_ERRORS as exc:
            flight.failed(f"{flight.asking}: unparseable reply ({exc})")
            self._try_next(flight)
            return
        if answer is None:
            if self.cache.failures:
                self.cache.forget_failure(flight.cache_key)
            self._settle(flight, relayed)
        else:
            self._settle(flight, self.cache.put(flight.cache_key, answer))

    def _settle(self, flight: _Flight, settled: Settled) -> None:
        del self._inflight[flight.cache_key, flight.targets]
        for waiter in flight.waiters:
            try:
                waiter(settled)
            except Exception:  # one asker's failure must not keep the answer from the others
                log.exception("delivering the answer for %s failed", flight.cache_key[0])

    def _stale_or(self, key: CacheKey, error: UpstreamError) -> Settled:
        """What to give when no upstream can answer: the stale answer if one is kept."""
        stale = self.cache.stale(key)
        if stale is None:
            return error
        log.log(logging.DEBUG if error.repeated else logging.INFO, "serving stale %s %s: %s", key[0],
                QTYPE.get(key[1]), error)
        return stale

    async def _probe(self, upstream: Endpoint) -> None:
        await self.exchanger.udp(upstream, _PROBE, self.timeout)

    def close(self) -> None:
        """Stop probing and close upstream sockets."""
        self.health.close()
        self.exchanger.close()
