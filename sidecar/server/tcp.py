"""The TCP listener: length-prefixed messages, several queries per connection answered in
order, an idle timeout so a silent client cannot hold a connection forever."""

from __future__ import annotations

import asyncio
import logging
import struct

from ..wire import frame
from .handler import QueryHandler

log = logging.getLogger(__name__)


class TcpListener:
    def __init__(self, handler: QueryHandler, idle_timeout: float = 10.0) -> None:
        self.handler = handler
        self.idle_timeout = idle_timeout
        self._connections: set[asyncio.Task] = set()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        peer = writer.get_extra_info("peername") or ("?", 0)
        try:
            while True:
                try:
                    size_bytes = await asyncio.wait_for(reader.readexactly(2), self.idle_timeout)
                    data = await asyncio.wait_for(reader.readexactly(struct.unpack("!H", size_bytes)[0]),
                                                  self.idle_timeout)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                reply = self.handler.cached(data, peer[0], "tcp")
                if reply is None:
                    reply = await self.handler.handle(data, peer[0], "tcp")
                if reply is None:
                    return  # garbage: drop the connection rather than guess at framing
                writer.write(frame(reply))
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._connections.discard(task)
            writer.close()

    async def drain(self, timeout: float = 1.5) -> None:
        """Give open connections a moment to finish the query they are on, then close them."""
        if self._connections:
            _, still = await asyncio.wait(set(self._connections), timeout=timeout)
            for task in still:
                task.cancel()
