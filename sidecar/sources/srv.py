"""Pure: a container's ports -> the SRV records that let a client find them by name.

Every exposed port gives `_<port>._<proto>.<name>`; the `dns-sidecar.srv` label adds named ones
(`http:80/tcp` gives `_http._tcp.<name>`). Inside a container network the target is the
container's own name (one SRV per replica) and its port; in the host view, the host's own name
(`--host-name`) and the published port, where the host reaches it (none when not published)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import QTYPE, SRV

from ..zone.records import ZoneRecord

SRV_LABEL = "dns-sidecar.srv"
PROTOCOLS = ("tcp", "udp", "sctp")
PRIORITY, WEIGHT = 0, 1
_SERVICE_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$")  # RFC 6335 service names
_WILDCARD_HOSTS = {"", "0.0.0.0", "::"}

Problem = Callable[[str, str, str], None]  # (where, value, reason)


@dataclass(frozen=True, slots=True)
class Service:
    """One port a container offers: `service` is the SRV's first label without its underscore."""

    service: str
    port: int
    protocol: str

    def owner(self, name: str) -> str:
        return f"_{self.service}._{self.protocol}.{name}"


def _port_spec(text: str) -> tuple[int, str]:
    """`80/tcp` -> (80, "tcp"); ValueError says why not."""
    port_text, sep, protocol = text.strip().lower().partition("/")
    if not sep or protocol not in PROTOCOLS:
        raise ValueError(f"expected PORT/{'|'.join(PROTOCOLS)}")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError("port must be 1..65535")
    return int(port_text), protocol


def services(exposed: Iterable[str], label: str | None, problem: Problem) -> list[Service]:
    """The exposed ports (`80/tcp` keys of Config.ExposedPorts), then the label's named ones
    (`NAME:PORT/PROTO`, comma-separated); a malformed item is reported and skipped alone."""
    found: list[Service] = []
    for spec in exposed:
        try:
            port, protocol = _port_spec(spec)
        except ValueError:
            continue  # the engine's own list: only protocols SRV has a name for
        found.append(Service(str(port), port, protocol))
    for item in (label or "").split(","):
        if not item.strip():
            continue
        service, sep, spec = item.strip().lower().partition(":")
        try:
            if not sep or not _SERVICE_RE.match(service):
                raise ValueError("expected NAME:PORT/PROTO with a service name of letters, digits and dashes")
            port, protocol = _port_spec(spec)
        except ValueError as exc:
            problem(f"label {SRV_LABEL}", item.strip(), str(exc))
            continue
        found.append(Service(service, port, protocol))
    return list(dict.fromkeys(found))


def published_ports(info: Mapping[str, Any]) -> dict[tuple[int, str], list[tuple[str, int]]]:
    """(container port, protocol) -> the (host address, host port) pairs it is published on."""
    ports = ((info.get("NetworkSettings") or {}).get("Ports")) or {}
    found: dict[tuple[int, str], list[tuple[str, int]]] = {}
    for spec, bindings in ports.items():
        try:
            key = _port_spec(spec)
        except ValueError:
            continue
        for binding in bindings or ():
            host_port = str(binding.get("HostPort") or "")
            if host_port.isdigit():
                found.setdefault(key, []).append((binding.get("HostIp") or "", int(host_port)))
    return found


def reachable_from_host(host_ip: str, host_addresses: Iterable[str]) -> bool:
    """Whether a binding answers at the address the host's own name gives in the host view."""
    if host_ip in _WILDCARD_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host_ip) in {ipaddress.ip_address(a) for a in host_addresses}
    except ValueError:
        return False


def srv_record(owner: str, port: int, target: str, ttl: int, origin: str, view: str | None,
               health: str | None) -> ZoneRecord:
    return ZoneRecord(owner, QTYPE.SRV, ttl, SRV(PRIORITY, WEIGHT, port, target), origin, view, health)
