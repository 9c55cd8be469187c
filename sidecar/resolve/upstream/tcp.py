"""Upstream questions over TCP (after a truncated UDP reply): one pipelined connection per
upstream, kept open while it is busy, so a burst of large answers pays for one handshake."""

from __future__ import annotations

import asyncio
import struct
import time
from dataclasses import dataclass, field

from ...dns.question import Question
from ...dns.wire import frame
from ...net.endpoint import Endpoint
from .ids import QueryIds

TCP_IDLE_SECONDS = 10.0


@dataclass(eq=False)
class _TcpConnection:
    """One pipelined TCP connection (RFC 7766 6.2.1.1): replies may come in any order and are
    matched to their question by ID."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: dict[bytes, tuple[Question, asyncio.Future[bytes]]] = field(default_factory=dict)
    task: asyncio.Task | None = None
    idle_since: float = field(default_factory=time.monotonic)

    @property
    def usable(self) -> bool:
        return self.task is not None and not self.task.done() and not self.writer.is_closing()

    async def read_replies(self) -> None:
        error: Exception = ConnectionResetError("upstream closed the TCP connection")
        try:
            while True:
                size = struct.unpack("!H", await self.reader.readexactly(2))[0]
                data = await self.reader.readexactly(size)
                waiting = self.pending.get(data[:2]) if len(data) >= 12 else None
                if waiting is not None and waiting[0].answered_by(data) and not waiting[1].done():
                    waiting[1].set_result(data)
        except (OSError, asyncio.IncompleteReadError, struct.error) as exc:
            error = ConnectionResetError(f"TCP connection lost: {exc}")
        finally:
            for _, future in self.pending.values():
                if not future.done():
                    future.set_exception(error)
            self.writer.close()

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.writer.close()


class TcpChannel:
    """Questions to one upstream over TCP, on one pipelined connection kept while it is busy."""

    def __init__(self, upstream: Endpoint, ids: QueryIds) -> None:
        self._upstream = upstream
        self._ids = ids
        self._conn: _TcpConnection | None = None
        self._idle_check: asyncio.TimerHandle | None = None

    async def _connection(self, timeout: float) -> tuple[_TcpConnection, bool]:
        conn = self._conn
        if conn is not None and conn.usable:
            return conn, True
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(self._upstream.host, self._upstream.port), timeout)
        conn = self._conn = _TcpConnection(reader, writer)
        conn.task = asyncio.get_running_loop().create_task(conn.read_replies())
        return conn, False

    async def ask(self, question: Question, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn, reused = await self._connection(timeout)
        try:
            return await self._ask_on(conn, question, deadline - loop.time())
        except ConnectionResetError:
            if not reused:
                raise
            # The upstream closed a connection we kept open: one fresh try.
            conn, _ = await self._connection(deadline - loop.time())
            return await self._ask_on(conn, question, deadline - loop.time())

    async def _ask_on(self, conn: _TcpConnection, question: Question, timeout: float) -> bytes:
        qid = self._ids.new(conn.pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        conn.pending[qid] = (question, future)
        try:
            conn.writer.write(frame(question.query(qid)))
            return await asyncio.wait_for(future, max(timeout, 0.0))
        finally:
            del conn.pending[qid]
            conn.idle_since = time.monotonic()
            self._schedule_idle_close()

    def _schedule_idle_close(self) -> None:
        if self._idle_check is None:
            self._idle_check = asyncio.get_running_loop().call_later(TCP_IDLE_SECONDS, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self._idle_check = None
        conn = self._conn
        if conn is None:
            return
        if conn.pending or time.monotonic() - conn.idle_since < TCP_IDLE_SECONDS:
            self._schedule_idle_close()
            return
        conn.close()
        self._conn = None

    def close(self) -> None:
        if self._idle_check is not None:
            self._idle_check.cancel()
        if self._conn is not None:
            self._conn.close()
