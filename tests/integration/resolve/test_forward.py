"""Forwarding end to end: the sidecar as a subprocess in front of real dnsmasq upstreams on
127.0.0.x that fixtures kill and restart. Time limits are loose (failover under 3 s); exact
figures belong to bench/."""

from __future__ import annotations

import itertools
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.rcode
import dns.rdatatype
import pytest

from bench.daemons import free_port
from tests.helpers.process import Daemon, wait_for

_names = itertools.count()


def fresh(domain: str) -> str:
    """A name never asked before, so no cache can answer it."""
    return f"n{next(_names)}-{time.monotonic_ns()}.{domain}"


def address(reply) -> str:
    assert reply.rcode() == dns.rcode.NOERROR, reply
    return reply.answer[0][0].address


def upstream_arg(daemon: Daemon) -> str:
    return f"{daemon.host}:{daemon.port}"


@pytest.fixture
def silent(request) -> Iterator[str]:
    """An upstream that receives queries and never answers (no ICMP either): a timeout."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.5", 0))
    yield f"127.0.0.5:{sock.getsockname()[1]}"
    sock.close()


def test_failover_when_first_upstream_dies_and_back_when_it_returns(dnsmasq, sidecar) -> None:
    first = dnsmasq("127.0.0.2", ["--address=/fail.test/192.0.2.1"])
    second = dnsmasq("127.0.0.3", ["--address=/fail.test/192.0.2.2"])
    server = sidecar("--upstream", upstream_arg(first), "--upstream", upstream_arg(second))
    assert address(server.query(fresh("fail.test"))) == "192.0.2.1"
    first.stop()
    started = time.monotonic()
    assert address(server.query(fresh("fail.test"))) == "192.0.2.2"
    assert time.monotonic() - started < 3
    assert address(server.query(fresh("fail.test"))) == "192.0.2.2"
    wait_for(lambda: "is not answering" in server.log_text(), what="the dead upstream logged")
    dnsmasq(first.host, ["--address=/fail.test/192.0.2.1"], port=first.port)
    wait_for(lambda: address(server.query(fresh("fail.test"))) == "192.0.2.1", timeout=8,
             what="the first upstream used again once the probe sees it")
    assert "answers again" in server.log_text()


def test_silent_upstream_times_out_and_is_then_skipped(dnsmasq, sidecar, silent) -> None:
    live = dnsmasq("127.0.0.3", ["--address=/quiet.test/192.0.2.3"])
    server = sidecar("--upstream", silent, "--upstream", upstream_arg(live), "--timeout", "1")
    started = time.monotonic()
    assert address(server.query(fresh("quiet.test"))) == "192.0.2.3"
    assert time.monotonic() - started < 3
    started = time.monotonic()
    assert address(server.query(fresh("quiet.test"))) == "192.0.2.3"
    assert time.monotonic() - started < 0.9  # under the timeout: the silent one was not asked
    assert f"upstream {silent} is not answering (timeout)" in server.log_text()


def test_all_upstreams_dead_gives_servfail_soon(dnsmasq, sidecar, silent) -> None:
    gone = dnsmasq("127.0.0.2", ["--address=/dead.test/192.0.2.1"])
    gone.stop()
    server = sidecar("--upstream", upstream_arg(gone), "--upstream", silent)
    for _ in range(2):
        started = time.monotonic()
        reply = server.query(fresh("dead.test"), timeout=5)
        assert reply.rcode() == dns.rcode.SERVFAIL
        assert time.monotonic() - started < 3


def test_serve_stale_after_every_upstream_is_killed(dnsmasq, sidecar) -> None:
    upstream = dnsmasq("127.0.0.2", ["--address=/stale.test/192.0.2.7"], ttl=1)
    server = sidecar("--upstream", upstream_arg(upstream))
    strict = sidecar("--upstream", upstream_arg(upstream), "--stale-ttl", "0")
    for s in (server, strict):
        reply = s.query("www.stale.test")
        assert address(reply) == "192.0.2.7" and reply.answer[0].ttl <= 1
    upstream.stop()
    time.sleep(1.5)
    reply = server.query("www.stale.test")
    assert address(reply) == "192.0.2.7"
    assert reply.answer[0].ttl == 30
    assert "serving stale www.stale.test. A" in server.log_text()
    assert strict.query("www.stale.test").rcode() == dns.rcode.SERVFAIL


def test_ttl_counts_down_in_cached_answers(dnsmasq, sidecar) -> None:
    upstream = dnsmasq("127.0.0.2", ["--address=/ttl.test/192.0.2.8"], ttl=300)
    server = sidecar("--upstream", upstream_arg(upstream))
    assert server.query("www.ttl.test").answer[0].ttl == 300
    upstream.stop()  # from here on only the cache can answer
    time.sleep(2.1)
    ttl = server.query("www.ttl.test").answer[0].ttl
    assert 290 <= ttl <= 298


def test_max_ttl_caps_what_clients_see(dnsmasq, sidecar) -> None:
    upstream = dnsmasq("127.0.0.2", ["--address=/cap.test/192.0.2.9"], ttl=3600)
    server = sidecar("--upstream", upstream_arg(upstream), "--max-ttl", "60")
    assert server.query("www.cap.test").answer[0].ttl == 60


def test_conditional_forwarding_most_specific_wins(dnsmasq, sidecar) -> None:
    default = dnsmasq("127.0.0.2", ["--address=/test/192.0.2.1"])
    corp = dnsmasq("127.0.0.3", ["--address=/test/192.0.2.2"])
    lab = dnsmasq("127.0.0.4", ["--address=/test/192.0.2.3"])
    server = sidecar("--upstream", upstream_arg(default),
                     "--forward", f"corp.test={upstream_arg(corp)}",
                     "--forward", f"Lab.Corp.Test.={upstream_arg(lab)},{upstream_arg(corp)}")
    assert address(server.query("www.other.test")) == "192.0.2.1"
    assert address(server.query("corp.test")) == "192.0.2.2"
    assert address(server.query("www.corp.test")) == "192.0.2.2"
    assert address(server.query("db.lab.corp.test")) == "192.0.2.3"
    assert address(server.query("notcorp.test")) == "192.0.2.1"


def test_forward_rule_env_var_takes_newline_separated_rules(dnsmasq, sidecar) -> None:
    default = dnsmasq("127.0.0.2", ["--address=/test/192.0.2.1"])
    corp = dnsmasq("127.0.0.3", ["--address=/test/192.0.2.2"])
    server = sidecar("--upstream", upstream_arg(default),
                     env={"DNS_SIDECAR_FORWARD": f"corp.test={upstream_arg(corp)},{upstream_arg(default)}\n"
                                                 f"lab.test={upstream_arg(default)}"})
    assert address(server.query("www.corp.test")) == "192.0.2.2"


def test_bad_forward_flag_exits_2_naming_it(sidecar) -> None:
    server = sidecar("--forward", "corp.test", ready=False)
    assert server.proc.wait(10) == 2
    assert "--forward: expected DOMAIN=ADDR[:PORT][,ADDR...]" in server.log_text()


def test_resolv_conf_change_is_picked_up(dnsmasq, sidecar, tmp_path: Path) -> None:
    first = dnsmasq("127.0.0.2", ["--address=/conf.test/192.0.2.1"])
    second = dnsmasq("127.0.0.3", ["--address=/conf.test/192.0.2.2"])
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {upstream_arg(first)}\n")
    server = sidecar("--resolv-conf", conf)
    assert address(server.query(fresh("conf.test"))) == "192.0.2.1"
    conf.write_text(f"# rewritten by a VPN client\nnameserver {upstream_arg(second)}\n")
    wait_for(lambda: address(server.query(fresh("conf.test"))) == "192.0.2.2", timeout=8,
             what="the new resolv.conf used")
    assert f"upstreams from {conf}: {upstream_arg(second)}" in server.log_text()


def test_loop_guard_resolv_conf_pointing_at_ourselves(sidecar, tmp_path: Path) -> None:
    own = f"127.0.0.1:{free_port()}"
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"nameserver {own}\n")
    server = sidecar("--listen", own, "--resolv-conf", conf)
    log = server.log_text()
    assert f"every upstream ({own}) is this sidecar itself" in log
    started = time.monotonic()
    assert server.query("www.loop.test").rcode() == dns.rcode.SERVFAIL
    assert time.monotonic() - started < 2


def big_txt_strings() -> list[str]:
    return [f"{i:02d}" + chr(ord("a") + i) * 240 for i in range(8)]


def test_large_answer_truncated_over_udp_and_complete_over_tcp(dnsmasq, sidecar) -> None:
    strings = big_txt_strings()  # ~2 kB: over our 1232-byte EDNS size towards dnsmasq, too
    upstream = dnsmasq("127.0.0.2", ["--txt-record=big.test," + ",".join(strings)])
    assert upstream.query("big.test", "TXT", use_edns=0, payload=1232).flags & dns.flags.TC  # needs TCP
    server = sidecar("--upstream", upstream_arg(upstream))
    udp = server.query("big.test", "TXT")
    assert udp.flags & dns.flags.TC and not udp.answer
    tcp = server.query("big.test", "TXT", tcp=True)
    assert tcp.rcode() == dns.rcode.NOERROR
    assert [s.decode() for s in tcp.answer[0][0].strings] == strings


def test_upstream_refused_and_servfail_move_to_the_next(dnsmasq, sidecar) -> None:
    refusing = dnsmasq("127.0.0.2", [])  # no data and nowhere to forward: REFUSED
    good = dnsmasq("127.0.0.3", ["--address=/next.test/192.0.2.4"])
    server = sidecar("--upstream", upstream_arg(refusing), "--upstream", upstream_arg(good))
    assert refusing.query("www.next.test").rcode() == dns.rcode.REFUSED
    assert address(server.query("www.next.test")) == "192.0.2.4"
