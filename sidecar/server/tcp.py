"""The TCP listener: length-prefixed messages (RFC 1035 4.2.2), several queries per connection
answered in order, a deadline for each message, and a connection cap that hundreds of silent or
slow clients cannot use to lock out a real one (`TcpListener._make_room`). A client that goes
away while its answer is on the way costs nothing but its connection (a debug line, no traceback)."""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..dns.wire import frame
from .responder import Responder, reply_to

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    waiting_since: float  # when it was accepted or last answered: its next message is due from then
    answering: bool = False  # a complete question is being answered
    task: asyncio.Task | None = field(default=None)

    def close(self) -> None:
        self.writer.transport.abort()  # unblocks the reader at once; its task then ends


class TcpListener:
    def __init__(self, responder: Responder, idle_timeout: float = 10.0, max_connections: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.responder = responder
        self.idle_timeout = idle_timeout
        self.max_connections = max_connections
        self._clock = clock
        self._open: dict[_Connection, None] = {}  # insertion-ordered set
        self.evicted = 0
        self.turned_away = 0
        self._closing = False

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def _make_room(self) -> bool:
        """At the cap: close the connection that has waited longest without completing a message,
        silent or part way through one (RFC 7766 6.2.3 lets a server close idle connections); a
        real client's message is complete as soon as it arrives. False when every connection has
        a complete question being answered: the newcomer is then turned away."""
        waiting = [conn for conn in self._open if not conn.answering]
        if not waiting:
            return False
        oldest = min(waiting, key=lambda conn: conn.waiting_since)
        del self._open[oldest]
        oldest.close()
        self.evicted += 1
        return True

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._open) >= self.max_connections and not self._make_room():
            self.turned_away += 1
            writer.transport.abort()
            return
        conn = _Connection(writer, self._clock(), task=asyncio.current_task())
        self._open[conn] = None
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            await self._answer_until_done(conn, reader, peer[0])
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._open.pop(conn, None)
            writer.close()

    async def _answer_until_done(self, conn: _Connection, reader: asyncio.StreamReader, client: str) -> None:
        while True:
            async with asyncio.timeout(self.idle_timeout):  # the whole message, not each read
                size_bytes = await reader.readexactly(2)
                data = await reader.readexactly(struct.unpack("!H", size_bytes)[0])
            conn.answering = True
            reply = await reply_to(self.responder, data, client, "tcp")
            if reply is None:
                return  # garbage: drop the connection rather than guess at the framing
            if conn.writer.transport.is_closing():  # the client reset or closed while we resolved
                log.debug("TCP client %s reset its connection before its answer", client)
                return
            conn.writer.write(frame(reply))
            await conn.writer.drain()
            conn.answering = False
            conn.waiting_since = self._clock()
            if self._closing:
                return

    async def drain(self, timeout: float = 1.5) -> None:
        """On shutdown: close waiting connections now, give answering ones `timeout` to finish."""
        self._closing = True
        for conn in [c for c in self._open if not c.answering]:
            conn.close()
        busy = [c.task for c in self._open if c.answering and c.task is not None]
        if busy:
            _, still = await asyncio.wait(busy, timeout=timeout)
            for task in still:
                task.cancel()

