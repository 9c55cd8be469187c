"""Batched datagram I/O on real loopback sockets: what recvmmsg read is what was sent, senders
come out as recvfrom spells them, replies reach each sender from the address it asked, and a
datagram too large for a slot is refused rather than read cut."""

import socket
import struct
from collections.abc import Iterator

import pytest

from sidecar.net.batchio import AVAILABLE, CONTROL_SIZE, SLOT_SIZE, SLOTS, DatagramBatch
from sidecar.net.pktinfo import IP_PKTINFO

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="recvmmsg/sendmmsg are Linux system calls")


def udp(family: int, address: tuple) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind(address)
    return sock


def receive_all(batch: DatagramBatch, expected: int) -> int:
    """recvmmsg returns what has arrived; on loopback that is everything sent before it."""
    count = batch.receive()
    assert count == expected
    return count


def test_a_batch_reads_every_datagram_and_replies_to_each_sender():
    server = udp(socket.AF_INET, ("127.0.0.1", 0))
    server.setblocking(False)
    batch = DatagramBatch(server, destinations=False)
    assert batch.receive() == 0  # nothing waiting: no error, nothing read
    clients = [udp(socket.AF_INET, (f"127.0.0.{10 + i}", 0)) for i in range(3)]
    for i, client in enumerate(clients):
        client.sendto(b"query %d" % i, server.getsockname())
    count = receive_all(batch, 3)
    hosts, senders, datagrams = batch.hosts(), batch.senders(), batch.datagrams()
    assert sorted(hosts) == ["127.0.0.10", "127.0.0.11", "127.0.0.12"]
    batch.receive()  # the slots are read again (nothing waits): what was copied out must hold
    # replies in another order than their datagrams: each still reaches its own sender
    assert batch.send([(senders[i], None, b"reply to " + datagrams[i]) for i in reversed(range(count))]) == 0
    for i, client in enumerate(clients):
        client.settimeout(2)
        data, source = client.recvfrom(100)
        assert data == b"reply to query %d" % i
        assert source == server.getsockname()
    for sock in (server, *clients):
        sock.close()


@pytest.fixture
def loopback() -> Iterator[tuple[socket.socket, DatagramBatch, socket.socket]]:
    """A non-blocking server socket on 127.0.0.1 with its batch, and a client; closed after."""
    server = udp(socket.AF_INET, ("127.0.0.1", 0))
    server.setblocking(False)
    client = udp(socket.AF_INET, ("127.0.0.1", 0))
    client.settimeout(2)
    yield server, DatagramBatch(server, destinations=False), client
    server.close()
    client.close()


def test_more_replies_than_slots_all_go_out(loopback):
    server, batch, client = loopback
    client.sendto(b"one", server.getsockname())
    receive_all(batch, 1)
    sender = batch.senders()[0]
    assert batch.send([(sender, None, b"%d" % i) for i in range(SLOTS * 2 + 3)]) == 0
    assert [client.recv(100) for _ in range(SLOTS * 2 + 3)] == [b"%d" % i for i in range(SLOTS * 2 + 3)]


def test_slots_are_reused_and_a_full_batch_leaves_the_rest_for_the_next_read(loopback):
    server, batch, client = loopback
    for i in range(SLOTS + 5):
        client.sendto(b"%d" % i, server.getsockname())
    receive_all(batch, SLOTS)
    first = batch.datagrams()
    receive_all(batch, 5)
    second = batch.datagrams()
    assert first + second == [b"%d" % i for i in range(SLOTS + 5)]


def test_a_datagram_larger_than_a_slot_is_refused_not_cut(loopback):
    server, batch, client = loopback
    client.sendto(b"x" * (SLOT_SIZE + 1), server.getsockname())
    client.sendto(b"small", server.getsockname())
    receive_all(batch, 2)
    assert batch.datagrams() == [None, b"small"]
    assert batch.queries() is None  # a batch with a cut datagram is not answered in place


def test_ipv6_senders_are_spelled_as_recvfrom_spells_them():
    try:
        server = udp(socket.AF_INET6, ("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    server.setblocking(False)
    batch = DatagramBatch(server, destinations=False)
    client = udp(socket.AF_INET6, ("::1", 0))
    client.sendto(b"six", server.getsockname())
    receive_all(batch, 1)
    assert batch.hosts() == ["::1"]
    assert batch.send([(batch.senders()[0], None, b"answer")]) == 0
    client.settimeout(2)
    assert client.recvfrom(100) == (b"answer", server.getsockname())
    server.close()
    client.close()


def test_on_a_wildcard_socket_each_reply_leaves_from_the_address_its_query_was_sent_to():
    server = udp(socket.AF_INET, ("0.0.0.0", 0))
    server.setblocking(False)
    server.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    port = server.getsockname()[1]
    batch = DatagramBatch(server, destinations=True)
    client = udp(socket.AF_INET, ("127.0.0.1", 0))
    for last in (7, 8):
        client.sendto(b"to .%d" % last, (f"127.0.0.{last}", port))
    count = receive_all(batch, 2)
    sources = [batch.reply_source(i) for i in range(count)]
    assert all(sources)  # each destination came with its datagram
    assert batch.send(list(zip(batch.senders(), sources, batch.datagrams(), strict=True))) == 0
    client.settimeout(2)
    replies = dict(client.recvfrom(100) for _ in range(2))
    assert replies == {b"to .7": ("127.0.0.7", port), b"to .8": ("127.0.0.8", port)}
    server.close()
    client.close()


def test_replies_written_in_place_reach_their_senders_and_the_rest_stays_as_it_came():
    server = udp(socket.AF_INET, ("127.0.0.1", 0))
    server.setblocking(False)
    batch = DatagramBatch(server, destinations=False)
    clients = [udp(socket.AF_INET, (f"127.0.0.{20 + i}", 0)) for i in range(4)]
    for i, client in enumerate(clients):
        client.settimeout(2)
        client.sendto(b"%02dquery %d" % (i, i), server.getsockname())
    receive_all(batch, 4)
    assert batch.queries() == [b"query %d" % i for i in range(4)]  # all but the first two bytes
    tails = [b" answered in place, a reply longer than its query", None, b" short", None]
    unanswered, dropped = batch.reply_in_place(tails)
    assert (unanswered, dropped) == ([1, 3], 0)
    assert clients[0].recvfrom(100) == (b"00" + tails[0], server.getsockname())
    assert clients[2].recvfrom(100) == (b"02" + tails[2], server.getsockname())
    # the datagrams left unanswered are read as they came, and answered the usual way
    datagrams, senders = batch.datagrams(), batch.senders()
    assert [datagrams[i] for i in unanswered] == [b"01query 1", b"03query 3"]
    assert batch.send([(senders[i], None, b"later " + datagrams[i]) for i in unanswered]) == 0
    assert [clients[i].recv(100) for i in unanswered] == [b"later 01query 1", b"later 03query 3"]
    # the slots hold full datagrams again: none is cut to the length of the reply written there
    clients[2].sendto(b"x" * 1000, server.getsockname())
    receive_all(batch, 1)
    assert batch.datagrams() == [b"x" * 1000]
    for sock in (server, *clients):
        sock.close()


def test_a_batch_answered_in_place_whole_goes_out_and_one_with_none_sends_nothing(loopback):
    server, batch, client = loopback
    for i in range(SLOTS):
        client.sendto(b"%02d?" % (i % 100), server.getsockname())
    receive_all(batch, SLOTS)
    assert batch.reply_in_place([b"!"] * SLOTS) == ([], 0)
    assert [client.recv(100) for _ in range(SLOTS)] == [b"%02d!" % (i % 100) for i in range(SLOTS)]
    client.sendto(b"01?", server.getsockname())
    receive_all(batch, 1)
    assert batch.reply_in_place([None]) == ([0], 0)
    client.settimeout(0.2)
    with pytest.raises(TimeoutError):
        client.recv(100)


def sent_control(batch: DatagramBatch, i: int) -> tuple[int, int, bytes]:
    """Slot `i`'s control message as it stands in the receive ring (its level, type and data)."""
    start = i * CONTROL_SIZE
    length, level, kind = struct.unpack_from("@Nii", batch._in.controls, start)
    return level, kind, bytes(batch._in.controls[start + 16 : start + length])


def wildcard(family: int) -> tuple[socket.socket, DatagramBatch]:
    server = udp(family, ("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
    server.setblocking(False)
    if family == socket.AF_INET6:
        server.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    else:
        server.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    return server, DatagramBatch(server, destinations=True)


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6], ids=["ipv4", "ipv6-dual-stack"])
def test_on_a_wildcard_socket_replies_in_place_leave_from_the_address_each_query_was_sent_to(family):
    """IPv4 queries to two loopback addresses; on an IPv6 socket they arrive v4-mapped, with
    IPV6_PKTINFO. The one left unanswered keeps the destination it came with."""
    try:
        server, batch = wildcard(family)
    except OSError:
        pytest.skip("no IPv6")
    port = server.getsockname()[1]
    client = udp(socket.AF_INET, ("127.0.0.1", 0))
    client.settimeout(2)
    for last in (7, 8, 9):
        client.sendto(b"%02d" % last, (f"127.0.0.{last}", port))
    receive_all(batch, 3)
    assert batch.reply_in_place([b" from .7", None, b" from .9"]) == ([1], 0)
    assert dict(client.recvfrom(100) for _ in range(2)) == {b"07 from .7": ("127.0.0.7", port),
                                                             b"09 from .9": ("127.0.0.9", port)}
    # What the kernel was given, which loopback alone cannot tell apart from what it wrote: the
    # interface the query came in on is not imposed on its reply, so the routing table decides.
    for i, sent_to in ((0, 7), (2, 9)):
        level, kind, data = sent_control(batch, i)
        if family == socket.AF_INET:
            assert (level, kind) == (socket.IPPROTO_IP, IP_PKTINFO)
            assert data[:8] == bytes(4) + socket.inet_aton(f"127.0.0.{sent_to}")  # no ifindex; source
        else:
            assert (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_PKTINFO)
            assert data[:20] == socket.inet_pton(socket.AF_INET6, f"::ffff:127.0.0.{sent_to}") + bytes(4)
    assert batch.send([(batch.senders()[1], batch.reply_source(1), b"08 later")]) == 0
    assert client.recvfrom(100) == (b"08 later", ("127.0.0.8", port))
    server.close()
    client.close()
