"""The plug-in API through the runnable example: a resolver function answers, another forwards
to its own upstream, and everything else still goes through the zone and the default upstream."""

import asyncio
import logging
import sys

import dns.message
import dns.query
import dns.rcode

from bench.daemons import free_port
from sidecar.api import Forward
from sidecar.app import Sidecar
from sidecar.config import Config
from sidecar.net.endpoint import Endpoint
from sidecar.server.responder import reply_to
from tests.helpers import ROOT
from tests.helpers.process import Daemon, start_daemon, wait_for


def test_example_plugin_answers_forwards_and_falls_through(dnsmasq, tmp_path):
    corp = dnsmasq(host="127.0.0.3", args=["--address=/corp.test/198.51.100.7"])
    default = dnsmasq(host="127.0.0.2", args=["--address=/upstream.test/192.0.2.1",
                                               "--address=/corp.test/192.0.2.99"])
    port = free_port()
    argv = [sys.executable, str(ROOT / "examples" / "plugin.py"), "--listen", f"127.0.0.1:{port}", "--no-docker",
            "--corp-resolver", f"{corp.host}:{corp.port}", "--upstream", f"{default.host}:{default.port}",
            "--record", "local.test. 60 IN A 192.0.2.5"]
    server = Daemon(start_daemon(argv, tmp_path / "plugin.log"), tmp_path / "plugin.log", port=port)
    try:
        wait_for(lambda: "listening on" in server.log_text() or server.proc.poll() is not None, what="plugin server")
        assert server.proc.poll() is None, server.log_text()
        reply = server.query("whoami.test", "TXT")
        assert [r.to_text() for r in reply.answer[0]] == ['"127.0.0.1"']
        assert server.query("vpn.corp.test").answer[0][0].to_text() == "198.51.100.7"  # not the default's .99
        assert server.query("local.test").answer[0][0].to_text() == "192.0.2.5"
        assert server.query("upstream.test").answer[0][0].to_text() == "192.0.2.1"
    finally:
        server.stop()


def test_a_failing_plugin_costs_one_servfail_and_is_logged(caplog):
    def broken(query):
        raise RuntimeError("plug-in bug")

    async def ask() -> int:
        config = Config(listen=(Endpoint("127.0.0.1", 0),), docker=False, upstreams=(Endpoint("127.0.0.254"),))
        server = Sidecar(config, [broken])
        await server.start()
        try:
            data = dns.message.make_query("any.test", "A").to_wire()
            return dns.message.from_wire(await reply_to(server.responder, data, "127.0.0.1", "udp")).rcode()
        finally:
            await server.stop()

    with caplog.at_level(logging.ERROR):
        assert asyncio.run(ask()) == dns.rcode.SERVFAIL
    assert "resolver failed on any.test. A" in caplog.text
    assert "RuntimeError: plug-in bug" in caplog.text


def test_a_plugin_forwarding_to_this_sidecar_itself_is_not_a_loop(dnsmasq, caplog):
    upstream = dnsmasq(host="127.0.0.2", args=["--address=/corp.test/198.51.100.7"])
    port = free_port()
    own = f"127.0.0.1:{port}"

    def loop_back(query):
        if query.name.endswith("corp.test."):
            return Forward(upstreams=(own, f"{upstream.host}:{upstream.port}"))  # ours skipped, the other asked
        return Forward(upstreams=(own,))  # nothing left: SERVFAIL, not a query to ourselves

    async def ask() -> tuple[list[str], int, int]:
        config = Config(listen=(Endpoint("127.0.0.1", port),), docker=False, upstreams=(Endpoint("127.0.0.254"),))
        server = Sidecar(config, [loop_back])
        await server.start()
        try:
            corp = await asyncio.to_thread(dns.query.udp, dns.message.make_query("vpn.corp.test", "A"), "127.0.0.1",
                                           port=port, timeout=5)
            other = await asyncio.to_thread(dns.query.udp, dns.message.make_query("else.test", "A"), "127.0.0.1",
                                            port=port, timeout=5)
            return [rr.to_text() for rrset in corp.answer for rr in rrset], other.rcode(), \
                sum(server.metrics.queries.values())
        finally:
            await server.stop()

    with caplog.at_level(logging.WARNING):
        corp, other, answered = asyncio.run(ask())
    assert corp == ["198.51.100.7"]
    assert other == dns.rcode.SERVFAIL
    assert answered == 2  # had either been sent to us, we would have answered more
    assert f"a plug-in's Forward: upstream {own} is this sidecar itself; skipped" in caplog.text
    assert f"a plug-in's Forward: every upstream ({own}) is this sidecar itself" in caplog.text
