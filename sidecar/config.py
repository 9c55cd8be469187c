"""The validated, frozen configuration. Every check that can fail names its flag, so the CLI can
say exactly which one was wrong."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from .errors import ConfigError, ZoneSyntaxError
from .net.endpoint import Endpoint, parse_endpoint
from .sources.hostnames import DEFAULT_HOST_NAMES
from .sources.labels import parse_dns_name
from .zone.parse import parse_record_line
from .zone.records import ZoneRecord, normalize_name
from .zone.zone import Fragment

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_WORKERS = 64
TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")


@dataclass(frozen=True)
class Config:
    listen: tuple[Endpoint, ...] = (Endpoint("127.0.0.1", 53),)
    zonefiles: tuple[Path, ...] = ()
    hosts: tuple[Path, ...] = ()
    records: tuple[ZoneRecord, ...] = ()
    upstreams: tuple[Endpoint, ...] = ()
    resolv_conf: Path = Path("/etc/resolv.conf")
    docker: bool = True
    docker_opt_in: bool = False
    domains: tuple[str, ...] = ("docker.",)
    label_domains: tuple[str, ...] = ()
    host_address: tuple[str, ...] = ()
    host_names: tuple[str, ...] = DEFAULT_HOST_NAMES
    views: tuple[tuple[str, Network], ...] = field(default=())
    forwards: tuple[tuple[str, tuple[Endpoint, ...]], ...] = ()
    timeout: float = 1.0
    cache_size: int = 10_000
    min_ttl: int = 0
    max_ttl: int = 86_400
    stale_ttl: int = 86_400
    poll_interval: float = 2.0
    log_level: str = "info"
    log_format: str = "text"
    log_queries: bool = False
    http: Endpoint | None = None
    http_token: str | None = None
    allow: tuple[Network, ...] = ()
    local_to_any: bool = False
    rate_limit: float = 0.0
    workers: int = 1
    fast_path: bool = True

    def flag_fragment(self) -> Fragment:
        """What the flags themselves contribute to the zone: --record lines and --view ranges."""
        views: dict[str, tuple[Network, ...]] = {}
        for name, network in self.views:
            views[name] = (*views.get(name, ()), network)
        return Fragment(self.records, views)


def listen_endpoints(values: list[str]) -> tuple[Endpoint, ...]:
    return tuple(_endpoint("--listen", v) for v in values)


def http_endpoint(value: str | None) -> Endpoint | None:
    """`--http ADDR:PORT`: where the health, metrics and records endpoints listen (off when unset)."""
    if value is None:
        return None
    has_port = "]:" in value if value.startswith("[") else value.count(":") == 1
    if not has_port:
        raise ConfigError("--http", f"expected ADDR:PORT (e.g. 127.0.0.1:9153), got {value!r}")
    return _endpoint("--http", value)


def http_token(value: str | None) -> str | None:
    """`--http-token`: the bearer token (RFC 6750 token characters) every endpoint but /healthz wants."""
    if value is not None and not TOKEN_RE.fullmatch(value):
        raise ConfigError("--http-token", "expected 1 or more of A-Z a-z 0-9 - . _ ~ + / (then any =)")
    return value


def upstream_endpoints(values: list[str]) -> tuple[Endpoint, ...]:
    return tuple(_endpoint("--upstream", v) for v in values)


def _endpoint(flag: str, value: str) -> Endpoint:
    try:
        return parse_endpoint(value)
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None


def existing_paths(flag: str, values: list[str]) -> tuple[Path, ...]:
    paths = tuple(Path(v) for v in values)
    for path in paths:
        if not path.exists():
            raise ConfigError(flag, f"{path} does not exist")
    return paths


def domain_names(values: list[str], flag: str = "--domain") -> tuple[str, ...]:
    try:
        names = tuple(normalize_name(v) for v in values)
    except ValueError as exc:
        raise ConfigError(flag, str(exc)) from None
    if "." in names:
        raise ConfigError(flag, "the root would take in every name; name a domain")
    return names


def host_addresses(values: list[str]) -> tuple[str, ...]:
    try:
        return tuple(str(ipaddress.ip_address(v)) for v in values)
    except ValueError as exc:
        raise ConfigError("--host-address", str(exc)) from None


def host_names(values: list[str]) -> tuple[str, ...]:
    """`--host-name NAME`: the names of the host itself (each network's gateway inside it)."""
    try:
        return tuple(dict.fromkeys(parse_dns_name(v, wildcard=False) for v in values))
    except ValueError as exc:
        raise ConfigError("--host-name", str(exc)) from None


def view_ranges(values: list[str]) -> tuple[tuple[str, Network], ...]:
    """`--view NAME=CIDR`: clients in CIDR get the answers meant for network NAME."""
    views = []
    for value in values:
        name, sep, cidr = value.partition("=")
        if not sep or not name:
            raise ConfigError("--view", f"expected NAME=CIDR, got {value!r}")
        try:
            views.append((name, ipaddress.ip_network(cidr, strict=False)))
        except ValueError as exc:
            raise ConfigError("--view", str(exc)) from None
    return tuple(views)


def record_lines(values: list[str]) -> tuple[ZoneRecord, ...]:
    records: list[ZoneRecord] = []
    for value in values:
        try:
            records.extend(parse_record_line(value))
        except ZoneSyntaxError as exc:
            raise ConfigError("--record", f"{exc.reason} in {value!r}") from None
    return tuple(records)


def allowed_networks(values: list[str]) -> tuple[Network, ...]:
    """`--allow CIDR`: clients served besides loopback and the networks the zone knows."""
    try:
        return tuple(ipaddress.ip_network(v, strict=False) for v in values)
    except ValueError as exc:
        raise ConfigError("--allow", str(exc)) from None


def forward_rules(values: list[str]) -> tuple[tuple[str, tuple[Endpoint, ...]], ...]:
    """`--forward DOMAIN=ADDR[:PORT][,ADDR...]`: that domain and its subdomains go to those upstreams."""
    rules = []
    for value in values:
        domain, sep, targets = value.partition("=")
        if not sep or not domain.strip() or not targets.strip():
            raise ConfigError("--forward", f"expected DOMAIN=ADDR[:PORT][,ADDR...], got {value!r}")
        try:
            name = normalize_name(domain.strip())
        except ValueError as exc:
            raise ConfigError("--forward", str(exc)) from None
        rules.append((name, tuple(_endpoint("--forward", t) for t in targets.split(","))))
    return tuple(rules)


def worker_count(value: int) -> int:
    """`--workers N`: processes serving the same ports."""
    if not 1 <= value <= MAX_WORKERS:
        raise ConfigError("--workers", f"must be from 1 to {MAX_WORKERS}, got {value}")
    return value


Number = TypeVar("Number", int, float)


def not_negative(flag: str, value: Number) -> Number:
    if value < 0:
        raise ConfigError(flag, f"must not be negative, got {value}")
    return value


def positive(flag: str, value: float, kind: type = float) -> float:
    if value <= 0:
        raise ConfigError(flag, f"must be above zero, got {value}")
    return kind(value)
