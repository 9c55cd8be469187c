"""Asking one upstream one question, over UDP or TCP: the sockets for every upstream asked so
far, made on first use."""

from __future__ import annotations

import asyncio
import socket

from ...dns.question import Question
from ...net.endpoint import Endpoint
from .ids import QueryIds
from .tcp import TcpChannel
from .udp import Done, Received, UdpSockets


class Exchanger:
    """Sockets for every upstream asked so far, created on first use."""

    def __init__(self) -> None:
        self._udp: UdpSockets | None = None
        self._addresses: dict[Endpoint, tuple[int, tuple]] = {}  # family and socket address
        self._tcp: dict[Endpoint, TcpChannel] = {}
        self._ids = QueryIds()

    def send_udp(self, upstream: Endpoint, question: Question, timeout: float, done: Done) -> None:
        """Ask over UDP; `done` gets the reply bytes, or the error (TimeoutError after `timeout`
        seconds, up to `SWEEP_SECONDS` late; an OSError from the socket), exactly once and never
        before this returns. Raises OSError when the question cannot be sent at all."""
        udp = self._udp
        if udp is None:
            udp = self._udp = UdpSockets(asyncio.get_running_loop(), self._ids)
        address = self._addresses.get(upstream)
        if address is None:
            family = socket.AF_INET6 if ":" in upstream.host else socket.AF_INET
            address = self._addresses[upstream] = (family, (upstream.host, upstream.port))
        udp.send(address[0], address[1], question, timeout, done)

    async def udp(self, upstream: Endpoint, question: Question, timeout: float) -> bytes:
        """`send_udp` for a coroutine: the reply, or the error raised."""
        future: asyncio.Future[Received] = asyncio.get_running_loop().create_future()
        self.send_udp(upstream, question, timeout,
                      lambda outcome: future.done() or future.set_result(outcome))
        outcome = await future
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def tcp(self, upstream: Endpoint, question: Question, timeout: float) -> bytes:
        channel = self._tcp.get(upstream)
        if channel is None:
            channel = self._tcp[upstream] = TcpChannel(upstream, self._ids)
        return await channel.ask(question, timeout)

    def close(self) -> None:
        for closable in (*((self._udp,) if self._udp is not None else ()), *self._tcp.values()):
            closable.close()
        self._udp = None
        self._tcp.clear()
