"""`dns-sidecar host-setup --root DIR`: the files a host's resolver needs, checked one by one."""

from __future__ import annotations

from pathlib import Path

import pytest

from sidecar.cli import main

ZONE = """$ORIGIN dev.test.
@    IN SOA ns.dev.test. admin.dev.test. 1 3600 600 86400 60
ns   IN A   192.0.2.1
web  IN A   192.0.2.10
"""
DOMAINS = ["apps.example", "dev.test", "docker", "printer.lan.example"]


@pytest.fixture
def sources(tmp_path: Path) -> list[str]:
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "dev.test.zone").write_text(ZONE)
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n192.0.2.30 printer.lan.example\n")
    return ["--zonefile", str(zones), "--hosts", str(hosts),
            "--record", "*.apps.example. 60 IN A 198.51.100.5",
            "--record", "deep.web.dev.test. 60 IN A 192.0.2.11"]  # inside dev.test: routed already


def run(root: Path, *args: str) -> int:
    return main(["host-setup", "--root", str(root), *args], env={})


def files_under(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_systemd_resolved_drop_in(tmp_path, sources, capsys) -> None:
    root = tmp_path / "root"
    (root / "run/systemd/resolve").mkdir(parents=True)
    assert run(root, *sources, "--apply") == 0
    assert files_under(root) == {"etc/systemd/resolved.conf.d/dns-sidecar.conf": (
        "# Written by dns-sidecar host-setup: send these domains to the sidecar only.\n"
        "[Resolve]\nDNS=127.0.0.1\nDomains=~apps.example ~dev.test ~docker ~printer.lan.example\n")}
    out = capsys.readouterr().out
    assert "systemctl restart systemd-resolved" in out
    assert f"wrote {root}/etc/systemd/resolved.conf.d/dns-sidecar.conf (systemd-resolved)" in out


def test_macos_resolver_files_one_per_domain(tmp_path, sources) -> None:
    root = tmp_path / "root"
    assert run(root, *sources, "--target", "macos", "--listen", "127.0.0.1:5300", "--apply") == 0
    assert files_under(root) == {f"etc/resolver/{d}": "nameserver 127.0.0.1\nport 5300\n" for d in DOMAINS}


def test_networkmanager_dnsmasq_snippet(tmp_path, sources) -> None:
    root = tmp_path / "root"
    (root / "etc/NetworkManager").mkdir(parents=True)
    assert run(root, *sources, "--domain", "docker", "--domain", "stack.internal", "--listen", "127.0.0.2:53",
               "--apply") == 0
    assert files_under(root) == {
        "etc/NetworkManager/dnsmasq.d/dns-sidecar.conf": "server=/apps.example/127.0.0.2#53\n"
        "server=/dev.test/127.0.0.2#53\nserver=/docker/127.0.0.2#53\nserver=/printer.lan.example/127.0.0.2#53\n"
        "server=/stack.internal/127.0.0.2#53\n",
        "etc/NetworkManager/conf.d/dns-sidecar.conf": "# NetworkManager runs its own dnsmasq, which reads "
        "dnsmasq.d/\n[main]\ndns=dnsmasq\n"}


def test_without_apply_it_prints_and_writes_nothing(tmp_path, capsys) -> None:
    root = tmp_path / "root"
    (root / "run/systemd/resolve").mkdir(parents=True)
    assert run(root, "--listen", "127.0.0.1:5300") == 0
    out = capsys.readouterr().out
    assert "# /etc/systemd/resolved.conf.d/dns-sidecar.conf (systemd-resolved)\n" in out
    assert "DNS=127.0.0.1:5300\nDomains=~docker\n" in out
    assert "write them with --apply" in out
    assert files_under(root) == {}


def test_unknown_host_gets_every_target_printed(tmp_path, capsys) -> None:
    assert run(tmp_path / "empty") == 0
    out = capsys.readouterr().out
    for path in ("/etc/systemd/resolved.conf.d/dns-sidecar.conf", "/etc/resolver/docker",
                 "/etc/NetworkManager/dnsmasq.d/dns-sidecar.conf"):
        assert f"# {path} " in out


@pytest.mark.parametrize("listen", ["0.0.0.0:53", "127.0.0.53:53", "[::]:53"])
def test_port_53_conflict_with_systemd_resolved_is_refused_with_advice(tmp_path, capsys, listen) -> None:
    root = tmp_path / "root"
    (root / "run/systemd/resolve").mkdir(parents=True)
    assert run(root, "--listen", listen, "--apply") == 1
    err = capsys.readouterr().err
    assert "systemd-resolved's stub listener holds port 53 on 127.0.0.53" in err
    assert "Listen on 127.0.0.1:53 instead" in err
    assert files_under(root) == {}


def test_every_address_without_resolved_is_reached_over_loopback(tmp_path) -> None:
    root = tmp_path / "root"
    assert run(root, "--listen", "0.0.0.0:53", "--target", "macos", "--apply") == 0
    assert files_under(root) == {"etc/resolver/docker": "nameserver 127.0.0.1\nport 53\n"}
