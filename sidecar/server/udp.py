"""The UDP listener: a cache hit is answered inside `datagram_received`; a miss becomes a task,
bounded so a flood sheds load instead of growing memory."""

from __future__ import annotations

import asyncio
import logging

from .handler import QueryHandler

log = logging.getLogger(__name__)


class UdpListener(asyncio.DatagramProtocol):
    def __init__(self, handler: QueryHandler, max_pending: int = 2048) -> None:
        self.handler = handler
        self.max_pending = max_pending
        self.dropped = 0
        self._pending: set[asyncio.Task] = set()
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        reply = self.handler.cached(data, addr[0], "udp")
        if reply is not None:
            self._transport.sendto(reply, addr)
            return
        if len(self._pending) >= self.max_pending:
            self.dropped += 1
            return
        task = asyncio.get_running_loop().create_task(self._answer(data, addr))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _answer(self, data: bytes, addr: tuple) -> None:
        reply = await self.handler.handle(data, addr[0], "udp")
        if reply is not None and self._transport is not None and not self._transport.is_closing():
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    async def drain(self) -> None:
        """Let queries already being resolved finish (used on shutdown)."""
        if self._pending:
            await asyncio.wait(set(self._pending), timeout=1.5)
