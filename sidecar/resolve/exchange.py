"""Asking one upstream one question, over UDP or TCP, with reply matching that spoofing cannot
pass: a reply counts only when it arrives from the upstream's address (connected sockets), with
the ID we chose at random and with our exact question.

UDP uses a small pool of connected sockets per upstream instead of a socket per query: opening
and closing a socket per question costs more than the rest of the forwarding path together. Each
socket gets a random source port from the kernel (Linux randomizes ephemeral UDP ports) and is
replaced after `ROTATE_AFTER` queries or `ROTATE_SECONDS`, so the port an attacker must guess
keeps moving. TCP (after a truncated UDP reply) keeps one pipelined connection per upstream open
while it is busy, so a burst of large answers pays for one handshake."""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import time
from dataclasses import dataclass, field

from dnslib import DNSLabel

from ..endpoint import Endpoint
from ..wire import DO_BIT, HEADER, OUR_UDP_SIZE, frame

POOL_SIZE = 4
ROTATE_AFTER = 5_000
ROTATE_SECONDS = 60.0
TCP_IDLE_SECONDS = 10.0
_RD = 0x0100
_QR = 0x8000


@dataclass(frozen=True, slots=True)
class Question:
    """One question in wire form: the name as sent (lower-case) and type and class bytes, so a
    reply's question can be compared without parsing it."""

    name: bytes
    tail: bytes

    @classmethod
    def of(cls, qname: str, qtype: int, qclass: int) -> Question:
        """Raises ValueError for a name that cannot be encoded (a label over 63 bytes)."""
        wire = bytearray()
        for label in DNSLabel(qname).label:
            if not 0 < len(label) < 64:
                raise ValueError(f"bad label in {qname!r}")
            wire += bytes((len(label),)) + label
        wire += b"\x00"
        if len(wire) > 255:
            raise ValueError(f"name too long: {qname!r}")
        return cls(bytes(wire).lower(), struct.pack("!HH", qtype, qclass))

    def request(self, qid: int, dnssec_ok: bool) -> bytes:
        """A recursive query with EDNS (our UDP size, DO as the client asked, no options: no
        client subnet is ever added)."""
        opt = b"\x00" + struct.pack("!HHIH", 41, OUR_UDP_SIZE, DO_BIT if dnssec_ok else 0, 0)
        return HEADER.pack(qid, _RD, 1, 0, 0, 1) + self.name + self.tail + opt

    def answers(self, reply: bytes) -> bool:
        """Whether `reply` is a response whose single question is this one (case aside)."""
        if len(reply) < 12 + len(self.name) + 4:
            return False
        flags, qdcount = struct.unpack_from("!HH", reply, 2)
        end = 12 + len(self.name)
        return (flags & _QR != 0 and qdcount == 1 and reply[12:end].lower() == self.name
                and reply[end:end + 4] == self.tail)


def _new_id(taken: dict[int, object]) -> int:
    while True:
        qid = secrets.randbelow(65_536)
        if qid not in taken:
            return qid


class _UdpSocket(asyncio.DatagramProtocol):
    """One connected socket and the questions waiting on it, by ID."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.opening: asyncio.Task | None = None
        self.pending: dict[int, tuple[Question, asyncio.Future[bytes]]] = {}
        self.sent = 0
        self.born = time.monotonic()
        self.retired = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        if len(data) < 12:
            return
        waiting = self.pending.get(int.from_bytes(data[:2], "big"))
        if waiting is not None and waiting[0].answers(data) and not waiting[1].done():
            waiting[1].set_result(data)

    def error_received(self, exc: Exception) -> None:
        # A connected socket reports ICMP errors (port unreachable: nobody listens) for the
        # socket, not per question: everyone waiting learns the upstream is not there.
        for _, future in self.pending.values():
            if not future.done():
                future.set_exception(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or ConnectionAbortedError("socket closed"))

    def worn_out(self) -> bool:
        return (self.sent >= ROTATE_AFTER or time.monotonic() - self.born >= ROTATE_SECONDS
                or (self.transport is not None and self.transport.is_closing()))

    def retire(self) -> None:
        """Take no new questions; close once the last one waiting is done."""
        self.retired = True
        self.close_when_idle()

    def close_when_idle(self) -> None:
        if self.retired and not self.pending and self.transport is not None:
            self.transport.close()


class _UdpPool:
    def __init__(self, upstream: Endpoint) -> None:
        self._upstream = upstream
        self._slots: list[_UdpSocket | None] = [None] * POOL_SIZE
        self._next = 0

    async def _socket(self) -> _UdpSocket:
        index = self._next = (self._next + 1) % POOL_SIZE
        sock = self._slots[index]
        if sock is not None and sock.worn_out():
            sock.retire()
            sock = None
        if sock is None:
            sock = self._slots[index] = _UdpSocket()
            family = socket.AF_INET6 if ":" in self._upstream.host else socket.AF_INET
            sock.opening = asyncio.get_running_loop().create_task(
                asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: sock, remote_addr=(self._upstream.host, self._upstream.port), family=family))
        if sock.transport is None:
            assert sock.opening is not None
            try:
                await sock.opening
            except OSError:
                if self._slots[index] is sock:
                    self._slots[index] = None
                raise
        return sock

    async def ask(self, question: Question, dnssec_ok: bool, timeout: float) -> bytes:
        sock = await self._socket()
        qid = _new_id(sock.pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        sock.pending[qid] = (question, future)
        sock.sent += 1
        try:
            assert sock.transport is not None
            sock.transport.sendto(question.request(qid, dnssec_ok))
            return await asyncio.wait_for(future, timeout)
        finally:
            del sock.pending[qid]
            sock.close_when_idle()

    def close(self) -> None:
        for sock in self._slots:
            if sock is not None and sock.transport is not None:
                sock.transport.close()


@dataclass(eq=False)
class _TcpConnection:
    """One pipelined TCP connection (RFC 7766 6.2.1.1): replies may come in any order and are
    matched to their question by ID."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    pending: dict[int, tuple[Question, asyncio.Future[bytes]]] = field(default_factory=dict)
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
                waiting = self.pending.get(int.from_bytes(data[:2], "big")) if len(data) >= 12 else None
                if waiting is not None and waiting[0].answers(data) and not waiting[1].done():
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


class _TcpChannel:
    def __init__(self, upstream: Endpoint) -> None:
        self._upstream = upstream
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

    async def ask(self, question: Question, dnssec_ok: bool, timeout: float) -> bytes:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        conn, reused = await self._connection(timeout)
        try:
            return await self._ask_on(conn, question, dnssec_ok, deadline - loop.time())
        except ConnectionResetError:
            if not reused:
                raise
            # The upstream closed a connection we kept open: one fresh try.
            conn, _ = await self._connection(deadline - loop.time())
            return await self._ask_on(conn, question, dnssec_ok, deadline - loop.time())

    async def _ask_on(self, conn: _TcpConnection, question: Question, dnssec_ok: bool,
                      timeout: float) -> bytes:
        qid = _new_id(conn.pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        conn.pending[qid] = (question, future)
        try:
            conn.writer.write(frame(question.request(qid, dnssec_ok)))
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


class Exchanger:
    """Sockets for every upstream asked so far, created on first use."""

    def __init__(self) -> None:
        self._udp: dict[Endpoint, _UdpPool] = {}
        self._tcp: dict[Endpoint, _TcpChannel] = {}

    async def udp(self, upstream: Endpoint, question: Question, dnssec_ok: bool, timeout: float) -> bytes:
        pool = self._udp.get(upstream)
        if pool is None:
            pool = self._udp[upstream] = _UdpPool(upstream)
        return await pool.ask(question, dnssec_ok, timeout)

    async def tcp(self, upstream: Endpoint, question: Question, dnssec_ok: bool, timeout: float) -> bytes:
        channel = self._tcp.get(upstream)
        if channel is None:
            channel = self._tcp[upstream] = _TcpChannel(upstream)
        return await channel.ask(question, dnssec_ok, timeout)

    def close(self) -> None:
        for closable in (*self._udp.values(), *self._tcp.values()):
            closable.close()
        self._udp.clear()
        self._tcp.clear()

