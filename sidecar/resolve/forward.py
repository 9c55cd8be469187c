"""Relays questions upstream: from the cache when it can, else to the first live upstream (UDP,
TCP when the reply is truncated), the next one on timeout, SERVFAIL or REFUSED. A question gets
at most `BUDGET_FACTOR` x the per-upstream timeout in all, so a client sees SERVFAIL (or a stale
answer) before it gives up on us. Identical questions in flight share one upstream query."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable, Sequence

from dnslib import QTYPE, RCODE, DNSError

from ..endpoint import Endpoint, parse_endpoint
from ..errors import UpstreamError
from ..outcome import Answer, Query
from ..records import normalize_name
from ..wire import answer_from_reply, ttl_offsets
from .cache import AnswerCache, CacheKey
from .conditional import ConditionalForwards
from .exchange import Exchanger, Question
from .health import Health

log = logging.getLogger(__name__)

BUDGET_FACTOR = 1.5
_TC = 0x0200
_PROBE = Question.of(".", QTYPE.NS, 1)
_PARSE_ERRORS = (DNSError, ValueError, IndexError, UnicodeError, struct.error)


def _why(exc: Exception) -> str:
    return "timeout" if isinstance(exc, TimeoutError) else f"{type(exc).__name__} {exc}".strip()


class Forwarder:
    def __init__(self, upstreams: Callable[[], Sequence[Endpoint]], cache: AnswerCache,
                 timeout: float = 1.0, conditional: ConditionalForwards | None = None) -> None:
        self._upstreams = upstreams
        self.cache = cache
        self.timeout = timeout
        self.conditional = ConditionalForwards(()) if conditional is None else conditional
        self.exchanger = Exchanger()
        self.health = Health(self._probe)
        self._inflight: dict[tuple[CacheKey, tuple[Endpoint, ...]], asyncio.Future[Answer]] = {}
        self._named: dict[tuple[str, ...], tuple[Endpoint, ...]] = {}

    async def resolve(self, query: Query, upstreams: Sequence[str] = (), name: str | None = None) -> Answer:
        """Answer `query` (or `name` instead of its name) from cache or upstream: `upstreams` if
        given, else a --forward rule's, else the defaults. Raises UpstreamError when nobody
        answers and nothing stale is left."""
        qname = normalize_name(name) if name else query.key
        key: CacheKey = (qname, query.qtype, query.qclass, query.dnssec_ok)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        targets = self._targets(upstreams, qname)
        flight_key = (key, targets)
        pending = self._inflight.get(flight_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[flight_key] = future
        try:
            answer = await self._fresh(key, targets)
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[flight_key]

    def _targets(self, named: Sequence[str], qname: str) -> tuple[Endpoint, ...]:
        if named:
            key = tuple(named)
            found = self._named.get(key)
            if found is None:
                found = self._named[key] = tuple(parse_endpoint(u) for u in named)
            return found
        ruled = self.conditional.upstreams_for(qname)
        return tuple(self._upstreams()) if ruled is None else ruled

    async def _fresh(self, key: CacheKey, targets: tuple[Endpoint, ...]) -> Answer:
        """Ask upstream unless this question failed a moment ago; on failure, serve stale."""
        reason = self.cache.failure(key)
        repeated = True
        if reason is None and not targets:
            reason = "no upstream resolver configured"
        elif reason is None:
            try:
                return self.cache.put(key, await self._ask_each(targets, key))
            except UpstreamError as exc:
                reason, repeated = str(exc), False
                self.cache.put_failure(key, reason)
        stale = self.cache.stale(key)
        if stale is not None:
            log.log(logging.DEBUG if repeated else logging.INFO, "serving stale %s %s: %s", key[0],
                    QTYPE.get(key[1]), reason)
            return stale
        raise UpstreamError(reason, repeated)

    async def _ask_each(self, targets: Sequence[Endpoint], key: CacheKey) -> Answer:
        qname, qtype, qclass, dnssec_ok = key
        try:
            question = Question.of(qname, qtype, qclass)
        except ValueError as exc:
            raise UpstreamError(str(exc)) from None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout * BUDGET_FACTOR
        failures: list[str] = []
        for upstream in self.health.order(targets):
            remaining = min(self.timeout, deadline - loop.time())
            if remaining <= 0:
                failures.append("out of time")
                break
            try:
                data = await self.exchanger.udp(upstream, question, dnssec_ok, remaining)
            except (TimeoutError, OSError) as exc:
                self.health.failed(upstream, _why(exc))
                failures.append(f"{upstream}: {_why(exc)}")
                continue
            self.health.answered(upstream)
            if struct.unpack_from("!H", data, 2)[0] & _TC:
                try:
                    data = await self.exchanger.tcp(upstream, question, dnssec_ok,
                                                    max(0.1, deadline - loop.time()))
                except (TimeoutError, OSError) as exc:
                    failures.append(f"{upstream} over TCP: {_why(exc)}")
                    continue
            try:
                answer = self._answer(data)
            except _PARSE_ERRORS as exc:
                failures.append(f"{upstream}: unparseable reply ({exc})")
                continue
            if answer.rcode in (RCODE.SERVFAIL, RCODE.REFUSED):
                failures.append(f"{upstream}: {RCODE.get(answer.rcode)}")
                continue
            return answer
        raise UpstreamError(f"no upstream answered {qname} {QTYPE.get(qtype)}: {'; '.join(failures)}")

    def _answer(self, data: bytes) -> Answer:
        """The reply as an Answer: parsed when the cache will keep it, else left as bytes to be
        relayed (TTL 0, or nothing to cache), which spares two dnslib passes per query."""
        if self.cache.min_ttl == 0 and data[3] & 0xF not in (RCODE.SERVFAIL, RCODE.REFUSED):
            ttls = [ttl for _, ttl in ttl_offsets(data)]
            if not ttls or min(ttls) == 0:
                return Answer(rcode=data[3] & 0xF, source="forward", wire=data)
        return answer_from_reply(data)

    async def _probe(self, upstream: Endpoint) -> None:
        await self.exchanger.udp(upstream, _PROBE, False, self.timeout)

    def close(self) -> None:
        """Stop probing and close upstream sockets."""
        self.health.close()
        self.exchanger.close()
