"""Malformed input, generated: random bytes and mutated valid queries through the wire layer and
the whole handler path. Nothing may raise; every reply must itself be a well-formed message.
The counts of inputs tried are printed (run with -s to see them)."""

import asyncio
import contextlib
import random
import socket
import struct

import dns.message
import dns.rcode
from dnslib import DNSRecord
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sidecar.dns.question import parse_query, read_question
from sidecar.errors import MalformedQuery
from sidecar.fastpath.fastpath import FastPath
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.chain import Chain
from sidecar.resolve.forward import Forwarder
from sidecar.resolve.local import LocalZone
from sidecar.server.handler import QueryHandler
from sidecar.server.responder import reply_to
from sidecar.zone.parse import parse_zone
from sidecar.zone.store import Store
from sidecar.zone.zone import Fragment
from tests.helpers import ROOT

EXAMPLES = 2000
SOCKET_PACKETS = 4000
VALID = [bytes(DNSRecord.question(name, qtype).pack()) for name, qtype in
         [("web.dev.test", "A"), ("x.apps.dev.test", "AAAA"), ("dev.test", "MX"), ("a.b.c.d.e", "TXT")]]
HEADER_ONLY = st.binary(min_size=12, max_size=12)


def handler() -> QueryHandler:
    """The real handler over a real zone; no upstream at all (so nothing leaves the process)."""
    store = Store()
    store.put("file", Fragment(tuple(parse_zone(
        "$ORIGIN dev.test.\n@ 60 SOA ns a 1 2 3 4 5\nweb 60 A 192.0.2.1\n*.apps 60 A 192.0.2.2\n@ 60 MX 10 web\n",
        "fuzz.zone"))))
    chain = Chain([LocalZone(store)], Forwarder(lambda: (), AnswerCache()))
    return QueryHandler(store, chain)


HANDLER = handler()
FAST = FastPath(HANDLER, HANDLER.store)
LOOP = asyncio.new_event_loop()


def mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    buf = bytearray(data)
    for position, value in edits:
        buf[position % len(buf)] = value
    return bytes(buf[: max(0, len(buf) - cut)])


mutated = st.builds(mutate, st.sampled_from(VALID), st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)),
                                                            min_size=1, max_size=6), st.integers(0, 8))
random_packets = st.one_of(st.binary(max_size=600), mutated,
                           st.builds(lambda h, rest: h + rest, HEADER_ONLY, st.binary(max_size=80)))


def check_reply(data: bytes, reply: bytes | None) -> None:
    if reply is None:
        return
    message = dns.message.from_wire(reply, question_only=False) if len(reply) > 12 else None
    assert reply[:2] == data[:2]  # the asker's ID
    assert reply[2] & 0x80  # QR
    if message is not None:
        assert message.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.FORMERR,
                                   dns.rcode.SERVFAIL, dns.rcode.NOTIMP, dns.rcode.REFUSED)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_packets)
def test_wire_layer_never_raises_anything_but_malformed(data):
    with contextlib.suppress(MalformedQuery):
        parse_query(data)
    with contextlib.suppress(MalformedQuery):
        read_question(data)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_packets)
# a tab for a label: read by hand, the name was stripped to ".apps.dev.test." and the query crashed
@example(b"\xac\x02\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01\t\x04apps\x03dev\x04test\x00\x00\x1c\x00\x01")
# an UPDATE whose zone section is not of type SOA: echoed, it made a reply no client can read
@example(b"\x15\xae(\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03dev\x04test\x00\x00\x0f\x00\x01")
def test_handler_answers_or_drops_every_packet(data):
    async def both() -> None:
        check_reply(data, await reply_to(HANDLER, data, "127.0.0.1", "udp"))
        for _ in range(2):  # the second time from what the first kept, when anything was
            check_reply(data, await reply_to(FAST, data, "127.0.0.1", "udp"))

    LOOP.run_until_complete(both())


def pointer_loop() -> bytes:
    return struct.pack("!6H", 7, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c\x00\x01\x00\x01"


def test_handcrafted_hostile_packets():
    long_label = struct.pack("!6H", 1, 0x0100, 1, 0, 0, 0) + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01"
    long_name = struct.pack("!6H", 2, 0x0100, 1, 0, 0, 0) + (b"\x3f" + b"a" * 63) * 5 + b"\x00\x00\x01\x00\x01"
    forward_pointer = struct.pack("!6H", 3, 0x0100, 1, 0, 0, 0) + b"\xc0\x20\x00\x01\x00\x01" + b"\x00" * 20
    lying_counts = struct.pack("!6H", 4, 0x0100, 1, 5, 5, 5) + b"\x03web\x00\x00\x01\x00\x01"
    for packet in (pointer_loop(), long_label, long_name, forward_pointer, lying_counts):
        reply = LOOP.run_until_complete(reply_to(HANDLER, packet, "127.0.0.1", "udp"))
        assert reply is not None and reply[3] & 0xF == dns.rcode.FORMERR, packet
    good = LOOP.run_until_complete(reply_to(HANDLER, VALID[0], "127.0.0.1", "udp"))
    assert dns.message.from_wire(good).answer[0][0].to_text() == "192.0.2.1"


def test_the_running_server_survives_a_stream_of_hostile_packets(sidecar):
    """Over real sockets: thousands of random and mutated packets over UDP, and lying TCP frames;
    afterwards the server still answers and has logged no traceback."""
    server = sidecar("--zonefile", str(ROOT / "examples"))
    rng = random.Random(7)
    packets = [mutate(rng.choice(VALID), [(rng.randrange(200), rng.randrange(256)) for _ in range(rng.randint(1, 6))],
                      rng.randrange(9)) for _ in range(SOCKET_PACKETS // 2)]
    packets += [rng.randbytes(rng.randrange(0, 600)) for _ in range(SOCKET_PACKETS // 2)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        for packet in packets:
            udp.sendto(packet, (server.host, server.port))
    for packet in packets[:200]:
        with contextlib.suppress(OSError), socket.create_connection((server.host, server.port), timeout=2) as tcp:
            tcp.sendall(struct.pack("!H", rng.randrange(65536)) + packet)  # a length that usually lies
    print(f"sent {len(packets)} hostile UDP packets and 200 lying TCP frames")
    reply = server.query("web.dev.test")
    assert reply.answer[0][0].to_text() == "192.0.2.10"
    assert server.proc.poll() is None
    assert "Traceback" not in server.log_text()
