"""`dns-sidecar host-setup`: route only the sidecar's domains to it from the host's own resolver,
and leave every other name where it went before. Covers systemd-resolved (a drop-in with `DNS=`
and routing-only `Domains=~name`), macOS (one `/etc/resolver/<domain>` per domain) and
NetworkManager's dnsmasq (`server=/<domain>/<addr>#<port>`). The files are printed, or written
with `--apply` (under `--root`, to check them); nothing is restarted: the commands are printed."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Config
from ..net.endpoint import Endpoint
from ..sources.files import FileSource
from ..zone.records import is_subdomain
from ..zone.store import Store
from .health import reachable

TARGETS = ("systemd-resolved", "macos", "networkmanager")
RESOLVED_STUBS = {"127.0.0.53", "127.0.0.54"}
WILDCARDS = {"0.0.0.0", "::"}
REVERSE = ("in-addr.arpa.", "ip6.arpa.")


@dataclass(frozen=True)
class PlannedFile:
    path: str  # absolute, as on the real host
    content: str
    target: str


@dataclass(frozen=True)
class Plan:
    files: tuple[PlannedFile, ...]
    then: tuple[str, ...]  # commands the user runs afterwards


def routed_domains(config: Config) -> list[str]:
    """The domains to send to the sidecar: the container domains, the origins of loaded zonefiles,
    and the names `--record` and hosts files override (a wildcard's parent). Names inside another
    routed domain are dropped, and so are reverse names and single-label names that were not
    asked for by --domain (routing `localhost` or 127.in-addr.arpa away would break the host)."""
    store = Store()
    store.put("flags", config.flag_fragment())
    FileSource(store, config.zonefiles, config.hosts).load()
    zone = store.zone
    wanted = set(config.domains) | set(zone.soa_by_origin)
    for record in zone.records:
        name = record.name[2:] if record.name.startswith("*.") else record.name
        if name.endswith(REVERSE):
            continue
        if name.count(".") > 1 and not any(is_subdomain(name, origin) for origin in zone.soa_by_origin):
            wanted.add(name)
    kept = [d for d in wanted if not any(d != other and is_subdomain(d, other) for other in wanted)]
    return sorted(d.rstrip(".") for d in kept if d != ".")


def _server(endpoint: Endpoint) -> str:
    return str(endpoint) if endpoint.port != 53 else endpoint.host


def plan(domains: Sequence[str], endpoint: Endpoint, targets: Iterable[str]) -> Plan:
    files: list[PlannedFile] = []
    then: list[str] = []
    for target in targets:
        if target == "systemd-resolved":
            content = ("# Written by dns-sidecar host-setup: send these domains to the sidecar only.\n"
                       f"[Resolve]\nDNS={_server(endpoint)}\nDomains={' '.join('~' + d for d in domains)}\n")
            files.append(PlannedFile("/etc/systemd/resolved.conf.d/dns-sidecar.conf", content, target))
            then.append("systemctl restart systemd-resolved")
        elif target == "macos":
            for domain in domains:
                files.append(PlannedFile(f"/etc/resolver/{domain}",
                                         f"nameserver {endpoint.host}\nport {endpoint.port}\n", target))
        elif target == "networkmanager":
            server = f"{endpoint.host}#{endpoint.port}"
            files.append(PlannedFile("/etc/NetworkManager/dnsmasq.d/dns-sidecar.conf",
                                     "".join(f"server=/{d}/{server}\n" for d in domains), target))
            files.append(PlannedFile("/etc/NetworkManager/conf.d/dns-sidecar.conf",
                                     "# NetworkManager runs its own dnsmasq, which reads dnsmasq.d/\n"
                                     "[main]\ndns=dnsmasq\n", target))
            then.append("nmcli general reload")
    return Plan(tuple(files), tuple(then))


def detect_targets(root: Path) -> list[str]:
    """The resolvers this host seems to run; all three when none is recognized."""
    found = []
    if (root / "run/systemd/resolve").is_dir():
        found.append("systemd-resolved")
    if (root / "etc/resolver").is_dir() or (sys.platform == "darwin" and root == Path("/")):
        found.append("macos")
    if (root / "etc/NetworkManager").is_dir() and "systemd-resolved" not in found:
        found.append("networkmanager")
    return found or list(TARGETS)


def port_conflict(root: Path, endpoint: Endpoint) -> str | None:
    """systemd-resolved's stub already holds port 53 on 127.0.0.53: a sidecar on every address
    (or on the stub's own address) cannot bind it, and pointing resolved at itself would loop."""
    if endpoint.port != 53 or not (root / "run/systemd/resolve").is_dir():
        return None
    if endpoint.host in WILDCARDS | RESOLVED_STUBS:
        return (f"systemd-resolved's stub listener holds port 53 on 127.0.0.53, so the sidecar cannot use "
                f"{endpoint}. Listen on 127.0.0.1:53 instead (in compose: publish \"127.0.0.1:53:53/udp\" "
                "and \"127.0.0.1:53:53/tcp\"), then run host-setup again with --listen 127.0.0.1:53. "
                "Turning the stub off (DNSStubListener=no) would hand every lookup on this host to "
                "the sidecar; that is not what host-setup does.")
    return None


def run_host_setup(config: Config, targets: Sequence[str], root: Path, apply: bool) -> int:
    endpoint = config.listen[0]
    conflict = port_conflict(root, endpoint)
    if conflict:
        print(f"dns-sidecar host-setup: {conflict}", file=sys.stderr)
        return 1
    endpoint = reachable(endpoint)  # a sidecar on every address is reached over loopback
    domains = routed_domains(config)
    result = plan(domains, endpoint, targets or detect_targets(root))
    print(f"# Routing {', '.join(domains)} to {endpoint}; every other name stays with the host's resolver.")
    for planned in result.files:
        if apply:
            path = root / planned.path.lstrip("/")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(planned.content)
            print(f"wrote {path} ({planned.target})")
        else:
            print(f"\n# {planned.path} ({planned.target})\n{planned.content}", end="")
    if result.then:
        print(f"\n# then: {'; '.join(result.then)}" if apply else f"\n# write them with --apply, then: "
              f"{'; '.join(result.then)}")
    return 0
