"""The running server over real sockets, asked by real clients (dnspython, dig), relaying to a
real dnsmasq. Every record type, negative answers, flags, TCP, truncation and bad packets."""

import socket
import struct
import subprocess
import sys
import time

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from bench.daemons import free_port
from tests.helpers import ROOT
from tests.helpers.process import Daemon, query, start_daemon, wait_for

EXAMPLE_ZONE = ROOT / "examples" / "dev.test.zone"
BIG_TXT = "\n".join(f'big.local.test. 60 IN TXT "{i:02d}{"x" * 200}"' for i in range(10))


@pytest.fixture(scope="module")
def upstream_and_server(request, tmp_path_factory):
    """One dnsmasq upstream and one sidecar for the module (they are read-only here)."""
    logs = tmp_path_factory.mktemp("server")
    up_port = free_port("127.0.0.2")
    up = Daemon(start_daemon(["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts",
                              f"--port={up_port}", "--listen-address=127.0.0.2", "--bind-interfaces",
                              "--user=root", "--local-ttl=300", "--log-facility=-", "--pid-file=",
                              "--address=/upstream.test/192.0.2.1", "--host-record=target.upstream.test,192.0.2.2",
                              "--cname=alias.upstream.test,target.upstream.test"],
                             logs / "dnsmasq.log"), logs / "dnsmasq.log", "127.0.0.2", up_port)
    request.addfinalizer(up.stop)
    wait_for(lambda: query(up.host, up.port, "upstream.test", timeout=0.5), what="dnsmasq")
    records = logs / "records.zone"
    records.write_text(BIG_TXT + "\n")
    port = free_port()
    argv = [sys.executable, "-m", "sidecar", "serve", "--no-docker", "--listen", f"127.0.0.1:{port}",
            "--zonefile", str(EXAMPLE_ZONE), "--zonefile", str(records), "--upstream", f"127.0.0.2:{up_port}",
            "--record", "*.romcyber.com. 60 IN A 127.0.0.1",
            "--record", "out.local.test. 60 IN CNAME alias.upstream.test.",
            "--record", "5.2.0.192.in-addr.arpa. 60 IN PTR five.local.test."]
    server = Daemon(start_daemon(argv, logs / "sidecar.log"), logs / "sidecar.log", "127.0.0.1", port)
    request.addfinalizer(server.stop)
    wait_for(lambda: "listening on" in server.log_text() or server.proc.poll() is not None, what="sidecar")
    assert server.proc.poll() is None, server.log_text()
    return up, server


@pytest.fixture
def server(upstream_and_server):
    return upstream_and_server[1]


def texts(reply, section="answer"):
    return [(rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype), rr.to_text())
            for rrset in getattr(reply, section) for rr in rrset]


@pytest.mark.parametrize(("name", "rdtype", "expected"), [
    ("web.dev.test", "A", [("web.dev.test.", "A", "192.0.2.10")]),
    ("web.dev.test", "AAAA", [("web.dev.test.", "AAAA", "2001:db8::10")]),
    ("api.dev.test", "CNAME", [("api.dev.test.", "CNAME", "web.dev.test.")]),
    ("dev.test", "MX", [("dev.test.", "MX", "10 mail.dev.test.")]),
    ("dev.test", "TXT", [("dev.test.", "TXT", '"v=spf1 -all"')]),
    ("_http._tcp.dev.test", "SRV", [("_http._tcp.dev.test.", "SRV", "0 5 80 web.dev.test.")]),
    ("dev.test", "NS", [("dev.test.", "NS", "ns.dev.test.")]),
    ("dev.test", "SOA", [("dev.test.", "SOA", "ns.dev.test. admin.dev.test. 2026112301 3600 600 86400 60")]),
    ("dev.test", "CAA", [("dev.test.", "CAA", '0 issue "letsencrypt.org"')]),
    ("5.2.0.192.in-addr.arpa", "PTR", [("5.2.0.192.in-addr.arpa.", "PTR", "five.local.test.")]),
    ("x.y.apps.dev.test", "A", [("x.y.apps.dev.test.", "A", "192.0.2.20")]),
    ("api.dev.test", "A", [("api.dev.test.", "CNAME", "web.dev.test."), ("web.dev.test.", "A", "192.0.2.10")]),
])
def test_every_record_type_answered_locally(server, name, rdtype, expected):
    reply = server.query(name, rdtype)
    assert reply.rcode() == dns.rcode.NOERROR
    assert texts(reply) == expected
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RA


def test_owned_zone_answers_with_aa_and_nxdomain_carries_soa(server):
    assert server.query("web.dev.test").flags & dns.flags.AA
    reply = server.query("missing.dev.test")
    assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA and not reply.answer
    assert texts(reply, "authority") == [("dev.test.", "SOA",
                                          "ns.dev.test. admin.dev.test. 2026112301 3600 600 86400 60")]
    assert reply.authority[0].ttl == 60


def test_nodata_carries_soa(server):
    reply = server.query("mail.dev.test", "AAAA")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert [t[1] for t in texts(reply, "authority")] == ["SOA"]


def test_question_case_is_echoed(server):
    for name in ("WeB.DeV.TeSt", "web.dev.test", "WEB.DEV.TEST"):  # the second and third hit the packet cache
        reply = server.query(name)
        assert reply.question[0].name.to_text() == name + "."
        assert reply.answer[0].name.to_text() == name + "."


def test_override_answers_and_its_siblings_are_relayed(server):
    assert texts(server.query("dev.romcyber.com")) == [("dev.romcyber.com.", "A", "127.0.0.1")]
    assert not server.query("dev.romcyber.com").flags & dns.flags.AA
    relayed = server.query("upstream.test")
    assert texts(relayed) == [("upstream.test.", "A", "192.0.2.1")]
    assert not relayed.flags & dns.flags.AA


def test_local_cname_to_upstream_name_is_completed_upstream(server):
    reply = server.query("out.local.test")
    assert texts(reply) == [("out.local.test.", "CNAME", "alias.upstream.test."),
                            ("alias.upstream.test.", "CNAME", "target.upstream.test."),
                            ("target.upstream.test.", "A", "192.0.2.2")]


def test_forwarded_ttl_counts_down_from_the_cache(server):
    first = server.query("upstream.test")
    assert first.answer[0].ttl <= 300
    time.sleep(1.1)
    second = server.query("upstream.test")
    assert second.answer[0].ttl < first.answer[0].ttl


def test_tcp_with_several_queries_on_one_connection(server):
    with socket.create_connection((server.host, server.port), timeout=3) as sock:
        for name in ("web.dev.test", "upstream.test", "missing.dev.test"):
            wire = dns.message.make_query(name, "A").to_wire()
            sock.sendall(struct.pack("!H", len(wire)) + wire)
        replies = []
        for _ in range(3):
            size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
            replies.append(dns.message.from_wire(sock.recv(size, socket.MSG_WAITALL)))
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    assert texts(replies[0]) == [("web.dev.test.", "A", "192.0.2.10")]


def test_large_answer_truncated_over_udp_and_whole_over_tcp(server):
    small = server.query("big.local.test", "TXT", use_edns=False)
    assert small.flags & dns.flags.TC and not small.answer
    sized = server.query("big.local.test", "TXT", use_edns=0, payload=4096)
    assert sized.flags & dns.flags.TC  # 10 x 200 bytes is over our 1232-byte UDP ceiling
    full = server.query("big.local.test", "TXT", tcp=True)
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 10


def test_dig_retries_truncated_answer_over_tcp(server):
    out = subprocess.run(["dig", "+noedns", f"@{server.host}", "-p", str(server.port), "big.local.test", "TXT"],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    assert "Truncated, retrying in TCP mode" in out
    assert sum(line.startswith("big.local.test.") for line in out.splitlines()) == 10


def test_dig_sees_answer_flags_and_edns(server):
    out = subprocess.run(["dig", f"@{server.host}", "-p", str(server.port), "web.dev.test"], capture_output=True,
                         text=True, timeout=20, check=True).stdout
    assert "status: NOERROR" in out and "flags: qr aa rd ra;" in out
    assert "udp: 1232" in out
    assert "192.0.2.10" in out


def raw_exchange(server, payload: bytes, timeout: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (server.host, server.port))
        try:
            return sock.recv(4096)
        except TimeoutError:
            return None


def test_malformed_query_gets_formerr_and_garbage_gets_silence(server):
    bad = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05abc"  # question cut short
    reply = raw_exchange(server, bad)
    assert reply is not None and reply[:2] == b"\xab\xcd" and reply[3] & 0xF == dns.rcode.FORMERR
    assert raw_exchange(server, b"\x00\x01garbage", timeout=0.5) is None
    update = b"\x00\x07\x28\x00" + bytes(8)
    assert raw_exchange(server, update)[3] & 0xF == dns.rcode.NOTIMP
    assert texts(server.query("web.dev.test")) == [("web.dev.test.", "A", "192.0.2.10")]  # still serving


def test_non_in_class_is_refused(server):
    reply = query(server.host, server.port, "version.bind", "TXT", rdclass="CH")
    assert reply.rcode() == dns.rcode.REFUSED
