"""The UDP listener: it reads its socket itself, a batch of datagrams per wake-up with no transport
object in between, answers a packet-cache hit on the spot, lets the handler answer or relay a
plain question through callbacks, and turns anything else into a task. Queries in progress are
bounded, so a flood sheds load instead of growing memory.

On Linux a wake-up reads up to 64 datagrams with one recvmmsg (`batchio`). The packet cache looks
the whole batch up in one pass, and its hits are written into the slots their queries came in and
sent with one sendmmsg; the rest are answered one by one, and replies that come later (relayed
from upstream, built on the slow path) wait in an outbox sent once per loop turn. Elsewhere it reads and sends datagram
by datagram. Reading the socket directly rather than through an asyncio datagram transport costs
about a tenth less CPU per query (see bench/). A reply that finds the send buffer full is
dropped, as the network may drop any datagram: the client asks again."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable
from functools import partial

from ..dns.wire import truncated_reply
from ..fastpath.batchio import SLOTS, DatagramBatch
from ..net.pktinfo import IP_PKTINFO, Ancillary, reply_source
from .handler import QueryHandler
from .ratelimit import RateLimiter, Verdict

log = logging.getLogger(__name__)

BATCH = SLOTS  # datagrams handled per wake-up before other callbacks get their turn, batched or not
MAX_DATAGRAM = 65535
# Queries wait here while the loop is busy (a large zone being swapped in holds the interpreter for
# a while): 4 MiB keeps thousands of them instead of dropping them. The kernel caps it at
# net.core.rmem_max.
RECEIVE_BUFFER = 4 * 1024 * 1024
Peer = tuple | bytes  # a client's address: a socket-module tuple, or the sockaddr bytes of a batch


class UdpListener:
    """Serves one bound UDP socket: `start()` inside the running loop, `close()` when done.
    `batched=False` reads datagram by datagram even where recvmmsg is there."""

    def __init__(self, handler: QueryHandler, sock: socket.socket, max_pending: int = 2048,
                 limiter: RateLimiter | None = None, batched: bool = True) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.handler = handler
        self.limiter = limiter
        self.max_pending = max_pending
        self.dropped = 0
        self._sock = sock
        self._pending: set[asyncio.Task] = set()  # queries on the slow path
        self._relaying = 0  # queries the handler is answering without a task
        self._idle = asyncio.Event()
        self._idle.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._batched = batched
        self.batch: DatagramBatch | None = None
        self._outbox: list[tuple[Peer, Ancillary | None, bytes]] = []
        self._flush_soon = False
        # Whether the last batch had packet-cache hits: a batch is looked up as one (and its hits
        # answered in place) while they come; a stream of relays, which would only pay for that
        # lookup, goes datagram by datagram until a hit is seen there.
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
        if self.batch is not None:
            reader = self._readable_batch
        else:
            reader = self._readable_wildcard if wildcard else self._readable
        self._loop.add_reader(self._sock.fileno(), reader)

    def _readable_batch(self) -> None:
        """One recvmmsg; packet-cache hits answered in the slots they came in, with one
        sendmmsg; each other datagram answered or passed on, one sendmmsg for what is ready."""
        batch = self.batch
        try:
            count = batch.receive()
        except OSError as exc:  # an error queued on the socket (ICMP); the next read goes on
            log.debug("UDP receive error: %s", exc)
            return
        if not count:
            return
        hosts = batch.hosts()
        queries = batch.queries() if self.limiter is None and self._hits_last_batch else None
        if queries is None:
            self._hits_last_batch = self._one_by_one(hosts, range(count))
        else:
            unanswered, dropped = batch.reply_in_place(self.handler.ready_replies(queries, hosts))
            self.dropped += dropped
            self._hits_last_batch = len(unanswered) < count
            if unanswered:
                self._one_by_one(hosts, unanswered)
        self._flush()

    def _one_by_one(self, hosts: list[str], indices: Iterable[int]) -> bool:
        """Answer or pass on each of these datagrams of the batch, what is ready at once (a
        packet-cache hit, as a rule) through the outbox; whether anything was."""
        batch = self.batch
        at_once = self.handler.cached if self.limiter is None else self._at_once
        outbox = self._outbox
        datagrams, senders = batch.datagrams(), batch.senders()
        sources = batch.reply_sources() if batch.destinations else None
        any_at_once = False
        for i in indices:
            data = datagrams[i]
            if data is None:
                continue  # larger than any query: dropped
            reply = at_once(data, hosts[i], "udp")
            source = sources[i] if sources is not None else None
            if reply is None:
                self._later(data, hosts[i], senders[i], source)
            elif reply:  # b"": rate limiting says nothing at all
                outbox.append((senders[i], source, reply))
                any_at_once = True
        return any_at_once

    def _flush(self) -> None:
        """Send what the outbox holds (batched: replies ready now, and those that came later)."""
        self._flush_soon = False
        if self._outbox and self._sock.fileno() != -1:
            outbox, self._outbox = self._outbox, []
            self.dropped += self.batch.send(outbox)

    def _readable(self) -> None:
        recvfrom = self._sock.recvfrom
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an error queued on the socket (ICMP); the next read goes on
                log.debug("UDP receive error: %s", exc)
                continue
            self.datagram_received(data, addr)

    def _readable_wildcard(self) -> None:
        """As `_readable`, for a wildcard-bound socket: each query brings where it was sent."""
        recvmsg = self._sock.recvmsg
        for _ in range(BATCH):
            try:
                data, ancdata, _, addr = recvmsg(MAX_DATAGRAM, 256)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.debug("UDP receive error: %s", exc)
                continue
            self.datagram_received(data, addr, reply_source(ancdata))

    def _send(self, reply: bytes, peer: Peer, source: Ancillary | None = None) -> None:
        """Send `reply` to `peer`: into the outbox when batched (sent before the loop next
        waits, with everything else ready by then), else on its own."""
        if self.batch is not None:
            self._outbox.append((peer, source, reply))
            if not self._flush_soon:
                self._flush_soon = True
                self._loop.call_soon(self._flush)
            return
        try:
            if source:
                self._sock.sendmsg([reply], source, 0, peer)
            else:
                self._sock.sendto(reply, peer)
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
        except OSError as exc:
            log.debug("UDP reply to %s not sent: %s", peer[0], exc)

    def datagram_received(self, data: bytes, addr: tuple, source: Ancillary | None = None) -> None:
        reply = self._at_once(data, addr[0])
        if reply is None:
            self._later(data, addr[0], addr, source)
        elif reply:
            self._send(reply, addr, source)

    def _at_once(self, data: bytes, host: str, transport: str = "udp") -> bytes | None:
        """What to send `host` at once: a packet-cache hit, or what rate limiting lets through
        (a TC slip, or b"" for nothing at all). None: the query goes on to `_later`."""
        if self.limiter is not None:
            verdict = self.limiter.check(host)
            if verdict is not Verdict.ANSWER:
                return (truncated_reply(data) or b"") if verdict is Verdict.SLIP else b""
        return self.handler.cached(data, host, transport)

    def _later(self, data: bytes, host: str, peer: Peer, source: Ancillary | None) -> None:
        """A query the packet cache cannot answer: the handler's middle path, else a task."""
        if len(self._pending) + self._relaying >= self.max_pending:
            self.dropped += 1
            return
        if not self._relaying:
            self._idle.clear()
        self._relaying += 1
        if self.handler.respond(data, host, "udp", partial(self._relayed, peer, source)):
            return
        self._relayed(peer, source, None)
        task = self._loop.create_task(self._answer(data, host, peer, source))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def _relayed(self, peer: Peer, source: Ancillary | None, reply: bytes | None) -> None:
        """The end of a query the handler answered without a task (now, or from a callback)."""
        self._relaying -= 1
        if not self._relaying:
            self._idle.set()
        if reply is not None and self._sock.fileno() != -1:
            self._send(reply, peer, source)

    async def _answer(self, data: bytes, host: str, peer: Peer, source: Ancillary | None) -> None:
        reply = await self.handler.handle(data, host, "udp")
        if reply is not None and self._sock.fileno() != -1:
            self._send(reply, peer, source)

    async def drain(self) -> None:
        """Let queries already being resolved finish (used on shutdown)."""
        idle = asyncio.ensure_future(self._idle.wait())
        try:
            await asyncio.wait({*self._pending, idle}, timeout=1.5)
        finally:
            idle.cancel()

    def close(self) -> None:
        if self._sock.fileno() != -1:
            if self.batch is not None:
                self._flush()  # the last replies, from queries that finished while draining
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
