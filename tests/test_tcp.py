"""TCP resource bounds and shutdown, over real sockets: idle connections give way to new ones at
the cap, a lying length prefix costs only its own connection, SIGTERM drains and exits 0."""

import signal
import socket
import struct
import time

import dns.message
import dns.rcode
from conftest import wait_for


def framed(name: str, qid: int = 1) -> bytes:
    message = dns.message.make_query(name, "A", id=qid).to_wire()
    return struct.pack("!H", len(message)) + message


def read_reply(sock: socket.socket) -> dns.message.Message:
    size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
    return dns.message.from_wire(sock.recv(size, socket.MSG_WAITALL))


def connect(server, timeout: float = 3.0) -> socket.socket:
    return socket.create_connection((server.host, server.port), timeout=timeout)


def test_silent_clients_cannot_lock_out_a_real_one(sidecar):
    server = sidecar("--record", "web.test. 60 IN A 192.0.2.1")
    silent = [connect(server) for _ in range(300)]  # more than the default cap of 256
    try:
        time.sleep(0.3)
        with connect(server) as real:
            real.sendall(framed("web.test"))
            assert read_reply(real).answer[0][0].to_text() == "192.0.2.1"
        closed = 0
        for sock in silent[:45]:  # 300 silent + 1 real over a cap of 256: the 45 oldest gave way
            sock.settimeout(1)
            try:
                closed += sock.recv(1) == b""
            except (ConnectionResetError, TimeoutError):
                closed += 1
        assert closed == 45
    finally:
        for sock in silent:
            sock.close()


def test_lying_length_prefix_costs_only_that_connection(sidecar):
    server = sidecar("--record", "web.test. 60 IN A 192.0.2.1")
    with connect(server) as liar:
        message = dns.message.make_query("web.test", "A").to_wire()
        liar.sendall(struct.pack("!H", len(message) + 100) + message)  # promises 100 bytes more than it sends
        with connect(server) as honest:
            honest.sendall(framed("web.test"))
            assert read_reply(honest).rcode() == dns.rcode.NOERROR


def test_garbage_over_tcp_closes_the_connection(sidecar):
    server = sidecar("--record", "web.test. 60 IN A 192.0.2.1")
    with connect(server) as sock:
        sock.sendall(struct.pack("!H", 4) + b"\x00\x01\x02\x03")
        sock.settimeout(3)
        assert sock.recv(10) == b""


def test_sigterm_drains_and_exits_zero(sidecar):
    server = sidecar("--record", "web.test. 60 IN A 192.0.2.1")
    idle = connect(server)
    busy = connect(server)
    busy.sendall(framed("web.test"))
    assert read_reply(busy).rcode() == dns.rcode.NOERROR
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(10) == 0  # an idle connection does not hold the exit
    wait_for(lambda: "stopping" in server.log_text(), what="stop logged")
    idle.close()
    busy.close()
