"""Access policy and rate limiting over real sockets: a running sidecar's UDP rate limit, and one
listening on every address in a network namespace of its own."""

import contextlib
import socket
import subprocess
import sys

import dns.flags
import dns.message

from tests.helpers.netns import in_ns
from tests.helpers.process import Daemon, start_daemon, wait_for


def test_rate_limit_over_real_udp_slips_tc_and_drops_the_rest(sidecar):
    server = sidecar("--record", "web.test. 60 IN A 192.0.2.1", "--rate-limit", "5")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(1.0)
    try:
        for qid in range(40):
            sock.sendto(dns.message.make_query("web.test", "A", id=qid).to_wire(), (server.host, server.port))
        answered = slipped = 0
        with contextlib.suppress(TimeoutError):
            while True:
                reply = dns.message.from_wire(sock.recv(4096))
                if reply.flags & dns.flags.TC:
                    assert not reply.answer and reply.question[0].name.to_text() == "web.test."
                    slipped += 1
                else:
                    answered += 1
    finally:
        sock.close()
    assert 5 <= answered <= 10  # the burst, plus what refilled while the burst was sent
    assert slipped >= 12  # every second query over the rate
    assert answered + slipped < 40


def test_listening_on_all_addresses_is_not_an_open_resolver(namespace, tmp_path):
    """Over real sockets, in a namespace of our own: a client on a non-loopback address is
    REFUSED until --allow names its range; loopback is always served."""
    for address in ("192.0.2.1/32", "192.0.2.2/32"):  # a "LAN" address for the server and a client
        subprocess.run(in_ns(namespace, "ip", "addr", "add", address, "dev", "lo"), check=True)

    def serve(*extra: str) -> Daemon:
        log = tmp_path / f"sidecar{len(extra)}.log"
        argv = in_ns(namespace, sys.executable, "-m", "sidecar", "--no-docker", "--listen", "0.0.0.0:53",
                     "--record", "web.test. 60 IN A 192.0.2.10", "--upstream", "127.0.0.254:5", *extra)
        daemon = Daemon(start_daemon(argv, log), log)
        wait_for(lambda: "listening on" in daemon.log_text() or daemon.proc.poll() is not None, what="sidecar")
        assert daemon.proc.poll() is None, daemon.log_text()
        return daemon

    def rcode_from(source: str, server_address: str = "192.0.2.1") -> str:
        """dnspython, run inside the namespace, asking from `source`."""
        code = ("import dns.message, dns.query, dns.rcode; "
                f"q = dns.message.make_query('web.test', 'A'); "
                f"print(dns.rcode.to_text(dns.query.udp(q, '{server_address}', timeout=3, source='{source}').rcode()))")
        result = subprocess.run(in_ns(namespace, sys.executable, "-c", code), capture_output=True, text=True,
                                timeout=15)
        return result.stdout.strip() or result.stderr

    server = serve()
    try:
        assert rcode_from("192.0.2.2") == "REFUSED"
        assert rcode_from("127.0.0.1", "127.0.0.1") == "NOERROR"
    finally:
        server.stop()
    server = serve("--allow", "192.0.2.0/24")
    try:
        assert rcode_from("192.0.2.2") == "NOERROR"
    finally:
        server.stop()
