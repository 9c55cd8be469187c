"""A scripted upstream for forwarding tests: a UDP socket on loopback answering with dnspython,
as each test says."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import dns.message
import dns.rrset
import pytest

from sidecar.net.endpoint import Endpoint

Reply = Callable[[dns.message.Message, tuple, socket.socket], None]


class ScriptedUpstream:
    """Receives queries on 127.0.0.6, remembers them with their source, and lets `respond`
    (run in the server thread) decide what to send back."""

    def __init__(self, respond: Reply) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.6", 0))
        self.sock.settimeout(0.2)
        self.endpoint = Endpoint("127.0.0.6", self.sock.getsockname()[1])
        self.seen: list[tuple[dns.message.Message, tuple]] = []
        self._respond = respond
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            query = dns.message.from_wire(data)
            self.seen.append((query, addr))
            self._respond(query, addr, self.sock)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def answer_a(query: dns.message.Message, address: str = "192.0.2.1") -> dns.message.Message:
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", address))
    return reply


@pytest.fixture
def scripted() -> Iterator[Callable[[Reply], ScriptedUpstream]]:
    made: list[ScriptedUpstream] = []

    def make(respond: Reply) -> ScriptedUpstream:
        made.append(ScriptedUpstream(respond))
        return made[-1]

    yield make
    for upstream in made:
        upstream.close()
