"""Asking one upstream one question, over UDP or TCP, with reply matching that spoofing cannot
pass: a reply counts only when it arrives from the upstream's address and port, on the random
source port of that one question, with the ID we chose at random, with QR set and with our exact
question.

UDP is callback-driven, because it is the forwarding hot path: `send_udp` writes the question on
a socket of its own; the loop reads the socket itself (`add_reader`, no transport object) and
hands the reply, or the error, to the caller's callback. No task, future or `wait_for` per
question: together they cost more than the system calls. TCP (after a truncated UDP reply) keeps
one pipelined connection per upstream open while it is busy, so a burst of large answers pays
for one handshake."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import select
import socket
import struct
import sys
import time
from collections.abc import Callable, Container
from dataclasses import dataclass, field

from dnslib import DNSLabel

from ...dns.wire import HEADER, OUR_OPT, frame, same_question
from ...net.endpoint import Endpoint

SWEEP_SECONDS = 0.05
TCP_IDLE_SECONDS = 10.0
MAX_REPLY = 65535
MAX_QUOTE = 1024  # of an ICMP error's quote: more than any question we send
MAX_EVENTS = 256  # sockets read per wake-up
MAX_IDLE_SOCKETS = 256  # kept open between questions; more are made while more are in flight
# IP_RECVERR / IPV6_RECVERR (linux/in.h, linux/in6.h): ICMP errors are queued with their quote
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)),
            socket.AF_INET6: (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25))}
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_OUT_OF_SOCKETS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
_RD = 0x0100
TC = 0x02  # the truncation bit, in the header's third byte

Outcome = bytes | Exception
Done = Callable[[Outcome], None]


class OutOfSockets(OSError):
    """No socket could be made for a question: this machine's limit, not the upstream's fault."""


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

    def sent_in(self, datagram: bytes) -> bool:
        """Whether `datagram` (what an ICMP error quotes) holds this question as we sent it."""
        return datagram[12 : self.end] == self._wire


class QueryIds:
    """Unpredictable query IDs from the kernel's CSPRNG, drawn a few thousand at a time: one
    `getrandom` call per ID would cost as much as the rest of the ID handling. An ID is its two
    wire bytes, so neither a question nor a reply converts it to a number and back."""

    BATCH = 4096

    def __init__(self) -> None:
        self._ids: list[bytes] = []

    def new(self, taken: Container[bytes] = ()) -> bytes:
        ids = self._ids
        while True:
            if not ids:
                drawn = os.urandom(2 * self.BATCH)
                ids.extend(drawn[at : at + 2] for at in range(0, len(drawn), 2))
            qid = ids.pop()
            if qid not in taken:
                return qid


def _disconnect_call() -> Callable[[int], int] | None:
    """connect(2) with AF_UNSPEC, which, for a UDP socket whose port the kernel chose, gives the
    port back: the next send picks a fresh random one. It returns 0 on success. None where the C
    library cannot be reached."""
    try:
        connect = ctypes.CDLL(None, use_errno=True).connect
    except (OSError, AttributeError):
        return None
    connect.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    unspec = bytes(16)  # a zeroed sockaddr: sa_family AF_UNSPEC

    def disconnect(fd: int) -> int:
        return connect(fd, unspec, 16)

    return disconnect


_DISCONNECT = _disconnect_call() if sys.platform.startswith("linux") else None


class _Port:
    """One socket and the one question it is lent to (None between questions): its ID, who
    gets the outcome, and its deadline (loop time). Kept per socket rather than made per
    question: the question path allocates nothing it can avoid."""

    __slots__ = ("deadline", "done", "fd", "idle", "qid", "question", "sock", "upstream")

    def __init__(self, sock: socket.socket, idle: list[_Port]) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.idle = idle  # where it waits between questions (one list per address family)
        self.question: Question | None = None
        self.qid = b""
        self.done: Done | None = None
        self.deadline = 0.0
        self.upstream: tuple = ()  # the upstream's address, as recvfrom gives a sender's


class _UdpSockets:
    """UDP questions, one per port: every question is sent from a socket of its own that has no
    port yet, so the kernel binds it to a random ephemeral port for just that question; once the
    question is answered (or times out) the port is given back (`_DISCONNECT`) and the socket is
    lent to the next question, which gets a new port. Sockets are made and closed rarely, and no
    port carries two questions at once. A reply counts only from the upstream's address and port
    (compared here: the sockets are not connected, which would cost a system call a question).
    An attacker must guess the port and the ID of one question in flight.

    The sockets are watched through an epoll set of their own, which the loop watches: one
    wake-up of the loop reads every socket with a reply, and an error on one socket (after which
    libuv would stop watching a socket it watched itself) never reaches the loop.

    Timeouts are found by a sweep every `SWEEP_SECONDS` while anything waits, not by a timer per
    question: a timeout fires up to `SWEEP_SECONDS` late; with nothing waiting, no timer runs.

    An ICMP error (port or host unreachable) is read from the socket's error queue, where the
    kernel keeps what the error quotes of the datagram it answers; it fails the question only
    when that quote is this question's own (its ID and question), so a forged error must guess
    both port and ID, as a forged reply must. An error that quotes too little is ignored: the
    question then times out."""

    def __init__(self, loop: asyncio.AbstractEventLoop, ids: QueryIds) -> None:
        self._loop = loop
        self._ids = ids
        self._idle: dict[int, list[_Port]] = {socket.AF_INET: [], socket.AF_INET6: []}
        self._asking: dict[int, _Port] = {}  # the ports lent to a question, by fd
        self._open: dict[int, _Port] = {}  # every port made and not closed, by fd
        self._sweep_timer: asyncio.TimerHandle | None = None
        self._queued: list[tuple[_Port, bytes]] = []  # questions to send at the end of this loop turn
        self._epoll = select.epoll()
        loop.add_reader(self._epoll.fileno(), self._ready)

    def send(self, family: int, address: tuple, question: Question, dnssec_ok: bool, timeout: float,
             done: Done) -> None:
        """Ask on a socket of its own. The question leaves at the end of this loop turn with the
        others of the turn, so the upstream is woken for them together rather than once each;
        a refusal then reaches `done` as its OSError. Raises `OutOfSockets` when no socket can
        be made."""
        idle = self._idle[family]
        port = idle.pop() if idle else self._new_port(family)
        qid = self._ids.new()
        port.question, port.qid, port.done, port.deadline = question, qid, done, self._loop.time() + timeout
        port.upstream = address
        self._asking[port.fd] = port
        if not self._queued:
            self._loop.call_soon(self._flush)
        self._queued.append((port, question.request(qid, dnssec_ok)))
        if self._sweep_timer is None:
            self._sweep_timer = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def _flush(self) -> None:
        """Send the questions of this loop turn. A send that fails on a lent socket may fail for
        an error the socket got after its last question (sent to it just as that one was
        answered): not this upstream's fault, so the question moves to a new socket once."""
        queued, self._queued = self._queued, []
        for port, request in queued:
            if port.question is None:
                continue  # closed meanwhile; whoever waited has been told
            try:
                port.sock.sendto(request, port.upstream)
            except OSError:
                self._move(port, request)

    def _move(self, port: _Port, request: bytes) -> None:
        """Ask `port`'s question again from a new socket, once; its outcome goes where it would."""
        question, qid, done, deadline = port.question, port.qid, port.done, port.deadline
        del self._asking[port.fd]
        address, family = port.upstream, port.sock.family
        self._close(port)
        try:
            moved = self._new_port(family)
        except OSError as exc:
            done(exc)
            return
        moved.question, moved.qid, moved.done, moved.deadline = question, qid, done, deadline
        moved.upstream = address
        self._asking[moved.fd] = moved
        try:
            moved.sock.sendto(request, address)
        except OSError as exc:
            self._finish(moved, exc)

    def _new_port(self, family: int) -> _Port:
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno in _OUT_OF_SOCKETS:
                raise OutOfSockets(exc.errno, f"no socket for an upstream question: {exc.strerror}") from None
            raise
        sock.setblocking(False)
        level, option = _RECVERR[family]
        sock.setsockopt(level, option, 1)
        port = self._open[sock.fileno()] = _Port(sock, self._idle[family])
        self._epoll.register(port.fd, select.EPOLLIN)
        return port

    def _ready(self) -> None:
        asking = self._asking
        for fd, _ in self._epoll.poll(0, MAX_EVENTS):
            port = asking.get(fd)
            if port is None:
                port = self._open.get(fd)
                if port is not None:
                    self._drain(port)
                continue
            sock, question = port.sock, port.question
            while True:
                try:
                    data, sender = sock.recvfrom(MAX_REPLY)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    if self._quoted_by_error(port):
                        self._finish(port, exc)
                        break
                    continue
                if data[:2] == port.qid and sender == port.upstream and len(data) >= 12 and question.answers(data):
                    self._finish(port, data)
                    break

    @staticmethod
    def _drain(port: _Port) -> None:
        """Read out a socket lent to no question (a late reply, a late error): nothing is for it."""
        while True:
            try:
                port.sock.recv(MAX_REPLY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                _UdpSockets._quoted_by_error(port)

    @staticmethod
    def _quoted_by_error(port: _Port) -> bool:
        """Read the socket's error queue out; whether an error in it quotes the datagram of the
        question the socket is lent to."""
        theirs = False
        while True:
            try:
                quoted = port.sock.recvmsg(MAX_QUOTE, 512, _MSG_ERRQUEUE)[0]
            except OSError:  # BlockingIOError once it is read out
                return theirs
            if port.question is not None and quoted[:2] == port.qid and port.question.sent_in(quoted):
                theirs = True

    def _finish(self, port: _Port, outcome: Outcome) -> None:
        del self._asking[port.fd]
        done = port.done
        port.question = port.done = None
        if _DISCONNECT is not None and len(port.idle) < MAX_IDLE_SOCKETS and not _DISCONNECT(port.fd):
            port.idle.append(port)
        else:
            self._close(port)
        done(outcome)

    def _close(self, port: _Port) -> None:
        if self._open.pop(port.fd, None) is not None:
            port.sock.close()  # which takes it out of the epoll set

    def _sweep(self) -> None:
        """Time out every question past its deadline; come back while any still waits."""
        self._sweep_timer = None
        now = self._loop.time()
        for port in [port for port in self._asking.values() if port.deadline <= now]:
            if port.question is not None:  # not finished by an earlier one's callback meanwhile
                self._finish(port, TimeoutError())
        if self._asking and self._sweep_timer is None:
            self._sweep_timer = self._loop.call_later(SWEEP_SECONDS, self._sweep)

    def close(self) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
            self._sweep_timer = None
        asking, self._asking = list(self._asking.values()), {}
        for port in list(self._open.values()):
            self._close(port)
        for idle in self._idle.values():
            idle.clear()
        if not self._epoll.closed:
            self._loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
        for port in asking:
            port.done(ConnectionAbortedError("socket closed"))


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
        self._udp: _UdpSockets | None = None
        self._addresses: dict[Endpoint, tuple[int, tuple]] = {}  # family and socket address
        self._tcp: dict[Endpoint, _TcpChannel] = {}
        self._ids = QueryIds()

    def send_udp(self, upstream: Endpoint, question: Question, dnssec_ok: bool, timeout: float,
                 done: Done) -> None:
        """Ask over UDP; `done` gets the reply bytes, or the error (TimeoutError after `timeout`
        seconds, up to `SWEEP_SECONDS` late; an OSError from the socket), exactly once and never
        before this returns. Raises OSError when the question cannot be sent at all."""
        udp = self._udp
        if udp is None:
            udp = self._udp = _UdpSockets(asyncio.get_running_loop(), self._ids)
        address = self._addresses.get(upstream)
        if address is None:
            family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
            address = self._addresses[upstream] = (family, (upstream.host, upstream.port))
        udp.send(address[0], address[1], question, dnssec_ok, timeout, done)

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
        for closable in (*((self._udp,) if self._udp is not None else ()), *self._tcp.values()):
            closable.close()
        self._udp = None
        self._tcp.clear()
