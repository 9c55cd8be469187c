"""Relays questions to upstream resolvers: UDP first, TCP when the reply is truncated, the next
upstream on timeout or SERVFAIL/REFUSED. A reply is accepted only when its source (the
connected socket), ID and question all match what was asked."""

from __future__ import annotations

import asyncio
import logging
import secrets
import struct
from collections.abc import Callable, Sequence

from dnslib import EDNS0, QTYPE, RCODE, DNSError, DNSHeader, DNSQuestion, DNSRecord

from ..endpoint import Endpoint, parse_endpoint
from ..errors import UpstreamError
from ..outcome import Answer, Query
from ..records import normalize_name
from ..wire import OUR_UDP_SIZE, frame
from .cache import AnswerCache, CacheKey

log = logging.getLogger(__name__)


def _matches(reply: DNSRecord, request: DNSRecord) -> bool:
    return (reply.header.id == request.header.id and reply.header.qr == 1 and len(reply.questions) == 1
            and reply.q.qtype == request.q.qtype and reply.q.qclass == request.q.qclass
            and str(reply.q.qname).lower() == str(request.q.qname).lower())


class _ReplyCatcher(asyncio.DatagramProtocol):
    """Waits for the one datagram that answers `request`; ignores any other (spoofing)."""

    def __init__(self, request: DNSRecord, done: asyncio.Future[DNSRecord]) -> None:
        self._request = request
        self._done = done

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            reply = DNSRecord.parse(data)
        except (DNSError, ValueError, IndexError, UnicodeError, struct.error):
            return
        if _matches(reply, self._request) and not self._done.done():
            self._done.set_result(reply)

    def error_received(self, exc: Exception) -> None:
        if not self._done.done():
            self._done.set_exception(exc)


class Forwarder:
    def __init__(self, upstreams: Callable[[], Sequence[Endpoint]], cache: AnswerCache,
                 timeout: float = 1.0) -> None:
        self._upstreams = upstreams
        self.cache = cache
        self.timeout = timeout
        self._inflight: dict[tuple[CacheKey, tuple[Endpoint, ...]], asyncio.Future[Answer]] = {}

    async def resolve(self, query: Query, upstreams: Sequence[str] = (), name: str | None = None) -> Answer:
        """Answer `query` (or `name` instead of its name) from cache or upstream.
        Identical questions asked while one is in flight share its answer."""
        qname = normalize_name(name) if name else query.key
        key: CacheKey = (qname, query.qtype, query.qclass, query.dnssec_ok)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        targets = tuple(parse_endpoint(u) for u in upstreams) or tuple(self._upstreams())
        flight_key = (key, targets)
        pending = self._inflight.get(flight_key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._inflight[flight_key] = future
        try:
            answer = self.cache.put(key, await self._ask_each(targets, qname, query))
            future.set_result(answer)
            return answer
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody else may be waiting
            raise
        finally:
            del self._inflight[flight_key]

    async def _ask_each(self, targets: Sequence[Endpoint], qname: str, query: Query) -> Answer:
        if not targets:
            raise UpstreamError("no upstream resolver configured")
        failures: list[str] = []
        for upstream in targets:
            request = DNSRecord(DNSHeader(id=secrets.randbelow(65536), rd=1),
                                q=DNSQuestion(qname, query.qtype, query.qclass))
            request.add_ar(EDNS0(udp_len=OUR_UDP_SIZE, flags="do" if query.dnssec_ok else ""))
            try:
                reply = await self._exchange(upstream, request)
            except (TimeoutError, OSError, DNSError, asyncio.IncompleteReadError, struct.error) as exc:
                failures.append(f"{upstream}: {type(exc).__name__} {exc}".strip())
                continue
            if reply.header.rcode in (RCODE.SERVFAIL, RCODE.REFUSED):
                failures.append(f"{upstream}: {RCODE.get(reply.header.rcode)}")
                continue
            return Answer(rcode=reply.header.rcode, answer=tuple(reply.rr), authority=tuple(reply.auth),
                          additional=tuple(rr for rr in reply.ar if rr.rtype != QTYPE.OPT),
                          source="forward")
        raise UpstreamError(f"no upstream answered {qname} {QTYPE.get(query.qtype)}: {'; '.join(failures)}")

    async def _exchange(self, upstream: Endpoint, request: DNSRecord) -> DNSRecord:
        reply = await self._udp(upstream, request)
        if reply.header.tc:
            reply = await self._tcp(upstream, request)
        return reply

    async def _udp(self, upstream: Endpoint, request: DNSRecord) -> DNSRecord:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[DNSRecord] = loop.create_future()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _ReplyCatcher(request, done), remote_addr=(upstream.host, upstream.port))
        try:
            transport.sendto(request.pack())
            return await asyncio.wait_for(done, self.timeout)
        finally:
            transport.close()

    async def _tcp(self, upstream: Endpoint, request: DNSRecord) -> DNSRecord:
        async def exchange() -> DNSRecord:
            reader, writer = await asyncio.open_connection(upstream.host, upstream.port)
            try:
                writer.write(frame(request.pack()))
                await writer.drain()
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = DNSRecord.parse(await reader.readexactly(size))
            finally:
                writer.close()
            if not _matches(reply, request):
                raise DNSError("TCP reply does not match the question")
            return reply

        return await asyncio.wait_for(exchange(), self.timeout * 2)
