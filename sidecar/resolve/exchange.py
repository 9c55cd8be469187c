"""Asking one upstream one question, over UDP or TCP, with reply matching that spoofing cannot
pass: a reply counts only when it arrives from the upstream's address (connected sockets), with
the ID we chose at random and with our exact question.

UDP is callback-driven, because it is the forwarding hot path: `send_udp` writes the question on
a pooled socket; the loop reads the socket itself (`add_reader`, no transport
object) and hands the reply, or the error, to the caller's callback. No task, future or
`wait_for` per question: together they cost more than the two system calls.

The pool holds a few connected sockets per upstream instead of a socket per query: opening and
closing a socket per question costs more than the rest of the forwarding path together. Each
socket gets a random source port from the kernel (Linux randomizes ephemeral UDP ports) and is
replaced after `ROTATE_AFTER` queries or `ROTATE_SECONDS`, so the port an attacker must guess
keeps moving. TCP (after a truncated UDP reply) keeps one pipelined connection per upstream open
while it is busy, so a burst of large answers pays for one handshake."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dnslib import DNSLabel

from ..batchio import SLOT_SIZE, SLOTS, DatagramBatch, QuestionBatch
from ..endpoint import Endpoint
from ..wire import HEADER, OUR_OPT, frame, same_question

POOL_SIZE = 4
ROTATE_AFTER = 5_000
ROTATE_SECONDS = 60.0
SWEEP_SECONDS = 0.05
TCP_IDLE_SECONDS = 10.0
MAX_REPLY = 65535
_RD = 0x0100
TC = 0x02  # the truncation bit, in the header's third byte

Outcome = bytes | Exception
Done = Callable[[Outcome], None]


@dataclass(frozen=True, slots=True)
class Question:
    """One question in wire form: the name as sent (lower-case) and type and class bytes, so a
    reply's question can be compared without parsing it."""

    name: bytes
    tail: bytes
    end: int = field(init=False)  # where this question ends in a message that holds it first and alone
    _wire: bytes = field(init=False, repr=False, compare=False)  # name and tail
    _after_id: tuple[bytes, bytes] = field(init=False, repr=False, compare=False)  # `request` but its ID

    def __post_init__(self) -> None:
        wire = self.name + self.tail
        asked = HEADER.pack(0, _RD, 1, 0, 0, 1)[2:] + wire
        object.__setattr__(self, "end", 12 + len(wire))
        object.__setattr__(self, "_wire", wire)
        object.__setattr__(self, "_after_id", (asked + OUR_OPT[False], asked + OUR_OPT[True]))

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

    def request(self, qid: bytes, dnssec_ok: bool) -> bytes:
        """A recursive query with the ID `qid` (two bytes) and EDNS (our UDP size, DO as the
        client asked, no options: no client subnet is ever added)."""
        return qid + self._after_id[dnssec_ok]

    def answers(self, reply: bytes) -> bool:
        """Whether `reply` is a response whose single question is this one (the name's case
        aside)."""
        end = self.end
        if len(reply) < end or not reply[2] & 0x80 or reply[4:6] != b"\x00\x01":  # QR set, QDCOUNT 1
            return False
        found = reply[12:end]
        return found == self._wire or same_question(found, self._wire)  # the first test is the common case


class QueryIds:
    """Unpredictable query IDs from the kernel's CSPRNG, drawn a few thousand at a time: one
    `getrandom` call per ID would cost as much as the rest of the ID handling. An ID is its two
    wire bytes, so neither a question nor a reply converts it to a number and back."""

    BATCH = 4096

    def __init__(self) -> None:
        self._ids: list[bytes] = []

    def new(self, taken: dict[bytes, object]) -> bytes:
        ids = self._ids
        while True:
            if not ids:
                drawn = os.urandom(2 * self.BATCH)
                ids.extend(drawn[at : at + 2] for at in range(0, len(drawn), 2))
            qid = ids.pop()
            if qid not in taken:
                return qid


Waiting = tuple[Question, Done, float]  # the question, who gets the outcome, its deadline (loop time)


class _UdpSocket:
    """One connected, non-blocking socket and the questions waiting on it, by ID.

    Timeouts are found by a sweep every `SWEEP_SECONDS` while anything waits, not by a timer per
    question: arming and cancelling a timer would cost more per question than the whole sweep. A
    timeout therefore fires up to `SWEEP_SECONDS` late; with nothing waiting, no timer runs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, upstream: Endpoint) -> None:
        family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.connect((upstream.host, upstream.port))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        self._batch = QuestionBatch.open(sock)
        self._replies = DatagramBatch.open(sock, destinations=False)
        self.queued: list[bytes] = []  # questions to send at the end of this loop turn
        self.pending: dict[bytes, Waiting] = {}  # by ID
        self.sent = 0
        self.retire_at = loop.time() + ROTATE_SECONDS
        self.retired = False
        self._sweep_timer: asyncio.TimerHandle | None = None
        loop.add_reader(sock.fileno(), self._readable)

    def send(self, qid: bytes, question: Question, dnssec_ok: bool, deadline: float, done: Done) -> None:
        """Batched, the question leaves with the others of this loop turn, and a refusal reaches
        `done` as its OSError; otherwise it leaves now, and a refusal raises OSError here."""
        request = question.request(qid, dnssec_ok)
        if self._batch is None:
            self._sock.send(request)
        else:
            if not self.queued:
                self._loop.call_soon(self._flush)
            self.queued.append(request)
        self.sent += 1
        self.pending[qid] = (question, done, deadline)
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def _flush(self) -> None:
        queued, self.queued = self.queued, []
        if self._sock.fileno() == -1:
            return  # closed meanwhile: whoever waited has been told
        for index, exc in self._batch.send(queued):
            waiting = self.pending.pop(queued[index][:2], None)  # a question starts with its ID
            if waiting is not None:
                waiting[1](exc)
        self._close_if_idle()

    def _readable(self) -> None:
        while True:
            try:
                replies = self._receive()
            except OSError as exc:
                # A connected socket reports ICMP errors (port unreachable: nobody listens) for
                # the socket, not per question: everyone waiting learns the upstream is not there.
                self._fail_all(exc)
                return
            if not replies:
                return
            self._deliver(replies)
            if self._sock.fileno() == -1 or (self._replies is not None and len(replies) < SLOTS):
                return  # closed (retired and done), or read out

    def _receive(self) -> list[bytes]:
        """What has arrived: a batch of replies, or one reply, or none. A reply larger than a
        batch slot (an upstream that ignored our EDNS size) is marked truncated, so it is asked
        again over TCP."""
        if self._replies is None:
            try:
                return [self._sock.recv(MAX_REPLY)]
            except (BlockingIOError, InterruptedError):
                return []
        if not self._replies.receive():
            return []
        replies, cut = self._replies.datagrams_or_cut()
        if not cut:
            return replies
        return [data if len(data) < SLOT_SIZE else data[:2] + bytes((data[2] | TC,)) + data[3:] for data in replies]

    def _deliver(self, replies: list[bytes]) -> None:
        pending = self.pending
        for data in replies:
            if len(data) < 12:
                continue
            qid = data[:2]
            waiting = pending.get(qid)
            if waiting is not None and waiting[0].answers(data):
                del pending[qid]
                waiting[1](data)
                if self.retired and not pending:
                    self.close()
                    return

    def _sweep(self) -> None:
        """Time out every question past its deadline; come back while any still waits."""
        self._sweep_timer = None
        now = self._loop.time()
        expired = [qid for qid, waiting in self.pending.items() if waiting[2] <= now]
        for qid in expired:
            waiting = self.pending.pop(qid)
            waiting[1](TimeoutError())
        if self.pending and self._sweep_timer is None and self._sock.fileno() != -1:
            self._sweep_timer = self._loop.call_later(SWEEP_SECONDS, self._sweep)
        self._close_if_idle()

    def _fail_all(self, exc: Exception) -> None:
        pending, self.pending = self.pending, {}
        self._close_if_idle()
        for waiting in pending.values():
            waiting[1](exc)

    def retire(self) -> None:
        """Take no new questions; close once the last one waiting is done."""
        self.retired = True
        self._close_if_idle()

    def _close_if_idle(self) -> None:
        if self.retired and not self.pending:
            self.close()

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        if self._sock.fileno() != -1:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
        if self.pending:
            self._fail_all(ConnectionAbortedError("socket closed"))


class _UdpPool:
    def __init__(self, loop: asyncio.AbstractEventLoop, upstream: Endpoint, ids: QueryIds) -> None:
        self._loop = loop
        self._upstream = upstream
        self._ids = ids
        self._slots: list[_UdpSocket | None] = [None] * POOL_SIZE
        self._next = 0

    def send(self, question: Question, dnssec_ok: bool, timeout: float, done: Done) -> None:
        """On the socket of this loop turn: while its questions wait to leave together (batched),
        the next question joins them there; the first of a turn goes to the pool's next socket."""
        sock = self._slots[self._next]
        if sock is None or not sock.queued:
            sock = self._next_socket()
        sock.send(self._ids.new(sock.pending), question, dnssec_ok, self._loop.time() + timeout, done)

    def _next_socket(self) -> _UdpSocket:
        """The pool's next socket, replaced when worn out (so its questions get a new random
        port). Checked once a loop turn, not once a question: a socket may go a turn's worth of
        questions past `ROTATE_AFTER`."""
        index = self._next = (self._next + 1) % POOL_SIZE
        sock = self._slots[index]
        if sock is not None and (sock.sent >= ROTATE_AFTER or self._loop.time() >= sock.retire_at):
            sock.retire()
            sock = None
        if sock is None:
            sock = self._slots[index] = _UdpSocket(self._loop, self._upstream)
        return sock

    def close(self) -> None:
        for sock in self._slots:
            if sock is not None:
                sock.close()
        self._slots = [None] * POOL_SIZE


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
        qid = self._ids.new(conn.pending)
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
        self._ids = QueryIds()

    def send_udp(self, upstream: Endpoint, question: Question, dnssec_ok: bool, timeout: float,
                 done: Done) -> None:
        """Ask over UDP; `done` gets the reply bytes, or the error (TimeoutError after `timeout`
        seconds, up to `SWEEP_SECONDS` late; an OSError from the socket), exactly once and never
        before this returns. Raises OSError when the question cannot be sent at all."""
        pool = self._udp.get(upstream)
        if pool is None:
            pool = self._udp[upstream] = _UdpPool(asyncio.get_running_loop(), upstream, self._ids)
        pool.send(question, dnssec_ok, timeout, done)

    async def udp(self, upstream: Endpoint, question: Question, dnssec_ok: bool, timeout: float) -> bytes:
        """`send_udp` for a coroutine: the reply, or the error raised."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.send_udp(upstream, question, dnssec_ok, timeout,
                      lambda outcome: future.done() or future.set_result(outcome))
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def tcp(self, upstream: Endpoint, question: Question, dnssec_ok: bool, timeout: float) -> bytes:
        channel = self._tcp.get(upstream)
        if channel is None:
            channel = self._tcp[upstream] = _TcpChannel(upstream, self._ids)
        return await channel.ask(question, dnssec_ok, timeout)

    def close(self) -> None:
        for closable in (*self._udp.values(), *self._tcp.values()):
            closable.close()
        self._udp.clear()
        self._tcp.clear()
