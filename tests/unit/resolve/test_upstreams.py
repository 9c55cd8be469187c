"""Upstream discovery: resolv.conf re-read on change, the systemd-resolved stub rule, the loop
guard, and conditional forwarding's most-specific match."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from sidecar.net.endpoint import Endpoint
from sidecar.resolve.conditional import ConditionalForwards
from sidecar.resolve.upstreams import DefaultUpstreams, is_own


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def write(path: Path, text: str) -> None:
    path.write_text(text)
    stamp = path.stat().st_mtime_ns + 1_000_000  # a new mtime even within one clock tick
    os.utime(path, ns=(stamp, stamp))


def test_resolv_conf_change_is_picked_up(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    write(conf, "# a comment\nsearch example.test\nnameserver 192.0.2.1\nnameserver 2001:db8::1\n")
    clock = Clock()
    upstreams = DefaultUpstreams((), conf, (), clock)
    assert upstreams() == (Endpoint("192.0.2.1"), Endpoint("2001:db8::1"))
    write(conf, "nameserver 198.51.100.7\n")
    assert upstreams() == (Endpoint("192.0.2.1"), Endpoint("2001:db8::1"))  # checked once a second
    clock.now += 1
    assert upstreams() == (Endpoint("198.51.100.7"),)


def test_systemd_stub_is_replaced_by_resolved_own_servers(tmp_path: Path) -> None:
    conf, real = tmp_path / "resolv.conf", tmp_path / "systemd-resolv.conf"
    write(conf, "nameserver 127.0.0.53\noptions edns0 trust-ad\n")
    write(real, "nameserver 192.0.2.9\n")
    assert DefaultUpstreams((), conf, (), Clock(), real)() == (Endpoint("192.0.2.9"),)
    write(conf, "nameserver 127.0.0.53\nnameserver 192.0.2.2\n")  # not only the stub: as written
    assert DefaultUpstreams((), conf, (), Clock(), real)() == (Endpoint("127.0.0.53"), Endpoint("192.0.2.2"))


def test_systemd_stub_kept_when_resolved_file_is_missing(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    write(conf, "nameserver 127.0.0.53\n")
    assert DefaultUpstreams((), conf, (), Clock(), tmp_path / "absent")() == (Endpoint("127.0.0.53"),)


def test_loop_guard_drops_our_own_address_and_says_so(tmp_path: Path, caplog) -> None:
    conf = tmp_path / "resolv.conf"
    write(conf, "nameserver 127.0.0.1\n")
    with caplog.at_level(logging.ERROR):
        upstreams = DefaultUpstreams((), conf, (Endpoint("127.0.0.1", 53),), Clock())
    assert upstreams() == ()
    assert "every upstream (127.0.0.1:53) is this sidecar itself" in caplog.text
    assert "SERVFAIL" in caplog.text


def test_loop_guard_keeps_the_others(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    write(conf, "nameserver 127.0.0.1\nnameserver 192.0.2.1\n")
    assert DefaultUpstreams((), conf, (Endpoint("127.0.0.1", 53),), Clock())() == (Endpoint("192.0.2.1"),)


def test_wildcard_listener_owns_local_addresses_but_not_dockers_resolver() -> None:
    own = (Endpoint("0.0.0.0", 53),)
    assert is_own(Endpoint("127.0.0.1", 53), own)
    assert not is_own(Endpoint("127.0.0.1", 5353), own)
    assert not is_own(Endpoint("127.0.0.11", 53), own)
    assert not is_own(Endpoint("192.0.2.1", 53), own)  # not an address of this machine
    assert not is_own(Endpoint("::1", 53), own)  # another family


def test_fixed_upstreams_pass_the_loop_guard_too(tmp_path: Path) -> None:
    fixed = (Endpoint("127.0.0.1", 5300), Endpoint("127.0.0.2", 5300))
    upstreams = DefaultUpstreams(fixed, tmp_path / "absent", (Endpoint("127.0.0.1", 5300),), Clock())
    assert upstreams() == (Endpoint("127.0.0.2", 5300),)


def test_conditional_forwarding_most_specific_domain_wins() -> None:
    corp, lab, consul = Endpoint("192.0.2.10"), Endpoint("192.0.2.20"), Endpoint("127.0.0.1", 8600)
    rules = ConditionalForwards([("corp.test.", (corp,)), ("lab.corp.test.", (lab,)), ("consul.", (consul,))])
    assert rules.upstreams_for("corp.test.") == (corp,)
    assert rules.upstreams_for("www.corp.test.") == (corp,)
    assert rules.upstreams_for("db.lab.corp.test.") == (lab,)
    assert rules.upstreams_for("web.service.consul.") == (consul,)
    assert rules.upstreams_for("notcorp.test.") is None
    assert rules.upstreams_for("example.") is None
    assert ConditionalForwards([(".", (corp,))]).upstreams_for("anything.test.") == (corp,)
