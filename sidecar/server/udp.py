"""The UDP transport: reads queries, hands each to the responder with a way back to its sender,
and sends what comes back. Queries in progress are bounded, so a flood sheds load instead of
growing memory, and rate limiting (when on) is applied before anything else. Where the system
allows, datagrams are read and sent by the batch (`net/batchio.py`). A reply that finds the send
buffer full is dropped, as the network may drop any datagram: the client asks again."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterable
from functools import partial

from ..dns.reply import truncated_reply
from ..net.batchio import SLOTS, DatagramBatch
from ..net.pktinfo import IP_PKTINFO, Ancillary, reply_source
from .ratelimit import RateLimiter, Verdict
from .responder import Responder, Send

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
# Queries wait here while the loop is busy (a large zone being swapped in): 4 MiB keeps thousands
# of them instead of dropping them. The kernel caps it at net.core.rmem_max.
RECEIVE_BUFFER = 4 * 1024 * 1024
ReadyBatch = Callable[[list[bytes], list[str]], list[bytes | None]]


class UdpListener:
    """Serves one bound UDP socket: `start()` inside the running loop, `close()` when done.
    `batched`: read and send by the batch where the system allows; `ready_batch`: what answers
    a whole batch in place (the fast path's), when allowed."""

    def __init__(self, responder: Responder, sock: socket.socket, max_pending: int = 2048,
                 limiter: RateLimiter | None = None, batched: bool = True,
                 ready_batch: ReadyBatch | None = None) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.responder = responder
        self.limiter = limiter
        self.max_pending = max_pending
        self.dropped = 0
        self._sock = sock
        self._in_flight = 0  # queries handed on and not answered yet
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batched = batched
        self._ready_batch = ready_batch
        self.batch: DatagramBatch | None = None
        self._outbox: list[tuple[bytes, Ancillary | None, bytes]] = []
        self._flush_soon = False
        # Whether the last batch had replies at once: a batch is looked up whole while they come;
        # a stream of relays, which would only pay for that lookup, goes datagram by datagram.
        self._hits_last_batch = True

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        wildcard = self._sock.getsockname()[0] in ("0.0.0.0", "::")
        if wildcard:
            if self._sock.family == socket.AF_INET6:
                self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
            else:
                self._sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.batch = DatagramBatch.open(self._sock, wildcard) if self._batched else None
        reader = self._read_each if self.batch is None else self._read_batch
        self._loop.add_reader(self._sock.fileno(), reader)

    def _read_batch(self) -> None:
        """One recvmmsg; ready replies written in place and sent with one sendmmsg; each other
        datagram handed on; one sendmmsg for the outbox."""
        batch = self.batch
        try:
            count = batch.receive()
        except OSError as exc:  # an error queued on the socket (ICMP); the next read goes on
            log.debug("UDP receive error: %s", exc)
            return
        if not count:
            return
        hosts = batch.hosts()
        unanswered: Iterable[int] = range(count)
        queries = batch.queries() if self._ready_batch is not None and self._hits_last_batch else None
        if queries is not None:
            unanswered, dropped = batch.reply_in_place(self._ready_batch(queries, hosts))
            self.dropped += dropped
        waiting = len(self._outbox)
        self._flush_soon = True  # replies made now leave with the flush below, not a later one
        if unanswered:
            datagrams, senders = batch.datagrams(), batch.senders()
            sources = batch.reply_sources() if batch.destinations else None
            for i in unanswered:
                data = datagrams[i]
                if data is not None:  # None: larger than any query, dropped
                    source = sources[i] if sources is not None else None
                    self._take(data, hosts[i], partial(self._reply_batched, senders[i], source))
        self._hits_last_batch = len(unanswered) < count or len(self._outbox) > waiting
        self._flush()

    def _read_each(self) -> None:
        """Up to `SLOTS` datagrams, one recvmsg each (each brings where it was sent, for a
        wildcard-bound socket)."""
        recvmsg = self._sock.recvmsg
        for _ in range(SLOTS):
            try:
                data, ancdata, _, addr = recvmsg(MAX_DATAGRAM, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an error queued on the socket (ICMP); the next read goes on
                log.debug("UDP receive error: %s", exc)
                continue
            self._take(data, addr[0], partial(self._reply_now, addr, reply_source(ancdata)))

    def _take(self, data: bytes, host: str, reply_to: Send) -> None:
        """Hand one query on, unless too many are in progress or rate limiting holds it back."""
        if self._in_flight >= self.max_pending:
            self.dropped += 1
            return
        if not self._in_flight:
            self._idle.clear()
        self._in_flight += 1
        if self.limiter is not None:
            verdict = self.limiter.check(host)
            if verdict is not Verdict.ANSWER:
                reply_to(truncated_reply(data) if verdict is Verdict.SLIP else None)
                return
        self.responder.receive(data, host, "udp", reply_to)

    def _answered(self) -> None:
        self._in_flight -= 1
        if not self._in_flight:
            self._idle.set()

    def _reply_batched(self, sender: bytes, source: Ancillary | None, reply: bytes | None) -> None:
        """A reply to a query read by the batch: into the outbox, sent before the loop next
        waits with everything else ready by then."""
        self._answered()
        if reply is None or self._sock.fileno() == -1:
            return
        self._outbox.append((sender, source, reply))
        if not self._flush_soon:
            self._flush_soon = True
            self._loop.call_soon(self._flush)

    def _reply_now(self, addr: tuple, source: Ancillary, reply: bytes | None) -> None:
        """A reply to a query read on its own: sent at once."""
        self._answered()
        if reply is None or self._sock.fileno() == -1:
            return
        try:
            if source:
                self._sock.sendmsg([reply], source, 0, addr)
            else:
                self._sock.sendto(reply, addr)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            log.debug("UDP reply to %s not sent: %s", addr[0], exc)

    def _flush(self) -> None:
        """Send what the outbox holds."""
        self._flush_soon = False
        if self._outbox and self._sock.fileno() != -1:
            outbox, self._outbox = self._outbox, []
            self.dropped += self.batch.send(outbox)

    async def drain(self) -> None:
        """Let queries already being answered finish (used on shutdown)."""
        idle = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait({idle}, timeout=1.5)
        finally:
            idle.cancel()

    def close(self) -> None:
        if self._sock.fileno() != -1:
            if self.batch is not None:
                self._flush()  # the last replies, from queries that finished while draining
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
