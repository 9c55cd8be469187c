"""Upstream questions over UDP, one random source port each, with reply matching that spoofing
cannot pass: a reply counts only from the upstream's address and port, on that question's port,
with its random ID, QR set and the exact question. Callback-driven: no task or future per
question on the forwarding path."""

from __future__ import annotations

import asyncio
import ctypes
import errno
import select
import socket
import sys
from collections.abc import Callable

from ...dns.question import Question
from .ids import QueryIds

SWEEP_SECONDS = 0.05
MAX_REPLY = 65535
MAX_QUOTE = 1024  # of an ICMP error's quote: more than any question we send
MAX_EVENTS = 256  # sockets read per wake-up
MAX_IDLE_SOCKETS = 256  # kept open between questions; more are made while more are in flight
# IP_RECVERR / IPV6_RECVERR (linux/in.h, linux/in6.h): ICMP errors are queued with their quote
_RECVERR = {socket.AF_INET: (socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11)),
            socket.AF_INET6: (socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25))}
_MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
_OUT_OF_SOCKETS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

Received = bytes | Exception  # a reply, or why none came
Done = Callable[[Received], None]


class OutOfSockets(OSError):
    """No socket could be made for a question: this machine's limit, not the upstream's fault."""


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


class UdpSockets:
    """UDP questions, one per port: every question is sent from a socket of its own that has no
    port yet, so the kernel binds it to a random ephemeral port for just that question; once it
    is answered (or times out) the port is given back (`_DISCONNECT`) and the socket lent to the
    next question. A reply counts only from the upstream's address and port (compared here:
    connecting would cost a system call a question), so a forger must guess the port and the ID."""

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

    def send(self, family: int, address: tuple, question: Question, timeout: float, done: Done) -> None:
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
        self._queued.append((port, question.query(qid)))
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
        """Read every socket with a reply. The sockets sit in an epoll set of their own, which the
        loop watches: one wake-up reads them all, and an error on one socket (after which libuv
        would stop watching a socket it watched itself) never reaches the loop."""
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
                if data[:2] == port.qid and sender == port.upstream and len(data) >= 12 and question.answered_by(data):
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
                UdpSockets._quoted_by_error(port)

    @staticmethod
    def _quoted_by_error(port: _Port) -> bool:
        """Read the socket's error queue out; whether an error in it (an ICMP port or host
        unreachable) quotes the datagram of the question the socket is lent to: its ID and
        question. So a forged error must guess port and ID, as a forged reply must; an error that
        quotes too little is ignored, and the question times out."""
        theirs = False
        while True:
            try:
                quoted = port.sock.recvmsg(MAX_QUOTE, 512, _MSG_ERRQUEUE)[0]
            except OSError:  # BlockingIOError once it is read out
                return theirs
            if port.question is not None and quoted[:2] == port.qid and port.question.quoted_in(quoted):
                theirs = True

    def _finish(self, port: _Port, outcome: Received) -> None:
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
        """Time out every question past its deadline; come back while any still waits. One sweep
        every `SWEEP_SECONDS`, not a timer per question: a timeout fires up to that late, and with
        nothing waiting no timer runs."""
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
