"""Faults the other suites do not inject: the HTTP port held by someone else, and every upstream
dead at once and then back. The sidecar keeps answering what it can, says why, and recovers."""

from __future__ import annotations

import signal
import socket
import struct
import time

import dns.message
import dns.rcode

from bench.daemons import free_port
from tests.helpers import ROOT
from tests.helpers.process import wait_for


def test_http_port_taken_logs_why_and_dns_is_served(sidecar) -> None:
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        server = sidecar("--zonefile", ROOT / "examples", "--http", f"127.0.0.1:{port}")
        assert server.query("web.dev.test").answer[0][0].to_text() == "192.0.2.10"
        assert server.query("web.dev.test", tcp=True).answer[0][0].to_text() == "192.0.2.10"
        log = server.log_text()
        assert f"HTTP on 127.0.0.1:{port}: cannot listen: Address already in use" in log
        assert "Traceback" not in log
        assert server.proc.poll() is None


def test_every_upstream_dead_then_back(dnsmasq, sidecar) -> None:
    first = dnsmasq("127.0.0.2", ["--address=/gone.test/192.0.2.1"], ttl=0)
    second = dnsmasq("127.0.0.3", ["--address=/gone.test/192.0.2.1"], ttl=0)
    server = sidecar("--upstream", f"{first.host}:{first.port}", "--upstream", f"{second.host}:{second.port}",
                     "--stale-ttl", "0", "--timeout", "1")
    assert server.query("a.gone.test").answer[0][0].to_text() == "192.0.2.1"
    first.stop()
    second.stop()
    assert server.query("b.gone.test", timeout=5).rcode() == dns.rcode.SERVFAIL
    dnsmasq(first.host, ["--address=/gone.test/192.0.2.1"], ttl=0, port=first.port)
    dnsmasq(second.host, ["--address=/gone.test/192.0.2.1"], ttl=0, port=second.port)
    wait_for(lambda: server.query("c.gone.test", timeout=2).answer[0][0].to_text() == "192.0.2.1", timeout=10,
             what="answers again once the upstreams are back")
    assert "Traceback" not in server.log_text()


def test_a_failing_name_asked_over_and_over_is_logged_once_not_per_query(dnsmasq, sidecar) -> None:
    """Any client could otherwise write a warning line per query: the log is not an echo."""
    gone = dnsmasq("127.0.0.2")
    gone.stop()
    server = sidecar("--upstream", f"{gone.host}:{gone.port}", "--stale-ttl", "0")
    rcodes = {server.query("flood.test", timeout=5).rcode() for _ in range(100)}
    assert rcodes == {dns.rcode.SERVFAIL}
    warnings = [line for line in server.log_text().splitlines() if " WARNING " in line and "SERVFAIL for flood" in line]
    assert 1 <= len(warnings) <= 2, warnings  # once per failure window (5 s), however many queries
    assert "127.0.0.2" in warnings[0]


def test_sigterm_answers_the_tcp_query_in_flight_and_exits_zero_within_2_s(sidecar) -> None:
    """The query is provably in flight (the upstream, which never answers, has received it) when
    the signal lands; the client still gets its answer (SERVFAIL once the budget is spent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.5", 0))
        silent.settimeout(5)
        server = sidecar("--upstream", f"127.0.0.5:{silent.getsockname()[1]}", "--timeout", "0.8")
        with socket.create_connection((server.host, server.port), timeout=5) as client:
            wire = dns.message.make_query("in-flight.test", "A").to_wire()
            client.sendall(struct.pack("!H", len(wire)) + wire)
            silent.recvfrom(512)  # the sidecar asked upstream: the query is in flight
            sent = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            size = struct.unpack("!H", client.recv(2, socket.MSG_WAITALL))[0]
            reply = dns.message.from_wire(client.recv(size, socket.MSG_WAITALL))
        assert reply.rcode() == dns.rcode.SERVFAIL and reply.question[0].name.to_text() == "in-flight.test."
        assert server.proc.wait(5) == 0
        assert time.monotonic() - sent < 2.0, "the drain took longer than its bound"
