"""The README's first promise, over real sockets: local override, owned zone, relayed name."""

from dns.rcode import NOERROR


def test_override_zone_and_relay(sidecar, dnsmasq):
    upstream = dnsmasq(args=["--address=/upstream.test/192.0.2.1"])
    server = sidecar("--zonefile", "examples/", "--record", "*.romcyber.com. 60 IN A 127.0.0.1",
                     "--upstream", f"{upstream.host}:{upstream.port}")
    reply = server.query("www.romcyber.com")
    assert reply.rcode() == NOERROR
    assert [r.to_text() for r in reply.answer[0]] == ["127.0.0.1"]
    reply = server.query("web.dev.test")
    assert [r.to_text() for r in reply.answer[0]] == ["192.0.2.10"]
    reply = server.query("upstream.test")
    assert [r.to_text() for r in reply.answer[0]] == ["192.0.2.1"]


def test_ipv6_listener_answers_over_udp_and_tcp(sidecar):
    server = sidecar("--record", "six.test. 60 IN AAAA 2001:db8::6", host="::1")
    for tcp in (False, True):
        reply = server.query("six.test", "AAAA", tcp=tcp)
        assert [r.to_text() for r in reply.answer[0]] == ["2001:db8::6"]
