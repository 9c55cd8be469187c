"""Pure: one container's `docker inspect` data -> the records and view networks it contributes.

No Docker SDK and no I/O here, so every naming rule is tested with plain dicts. A bad label value,
alias or name is reported as a problem (naming the container) and skipped; its other names still
count. The split horizon is in the records' `view`: one set of addresses per Docker network the
container is on, and one with `view=None` for everyone else (the host view)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dnslib import PTR, QTYPE

from ..zone.records import ZoneRecord, normalize_name
from ..zone.reverse import ptr_name
from ..zone.zone import Fragment, Network
from .hostnames import DEFAULT_HOST_NAMES, LOOPBACK
from .name_policy import NamePolicy
from .srv import SRV_LABEL, Service, published_ports, reachable_from_host, services, srv_record

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_TTL = 10  # short: a container's address changes whenever it is recreated
MAX_TTL = 2**31 - 1
ENABLE_LABEL = "dns-sidecar.enable"
NAMES_LABEL = "dns-sidecar.names"
TTL_LABEL = "dns-sidecar.ttl"
HOST_ADDRESS_LABEL = "dns-sidecar.host-address"
NETWORK_LABEL = "dns-sidecar.network"
HEALTH_LABEL = "dns-sidecar.health"
HEALTH_STATES = ("healthy", "unhealthy", "starting")
NO_HEALTHCHECK = ("", "none")  # Docker says "none", Podman an empty string
# Labels of other Docker DNS tools, read so existing compose files work unchanged.
PEER_NAME_LABELS = ("com.dnsdock.alias", "coredns.dockerdiscovery.host")
PEER_NAME_ENV = "HOSTNAMES"  # dns-proxy-server
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_PROJECT = "com.docker.compose.project"

_LABEL_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class NameRules:
    """The flags that shape container names: `--domain`, `--docker-opt-in`, `--host-address`,
    `--host-name` (the first is the host-view target of published ports' SRV records) and
    `--label-domain`; `policy` is the name policy they make."""

    domains: tuple[str, ...] = ("docker.",)
    opt_in: bool = False
    host_address: tuple[str, ...] = ()
    host_names: tuple[str, ...] = DEFAULT_HOST_NAMES
    label_domains: tuple[str, ...] = ()
    policy: NamePolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policy", NamePolicy(self.domains, self.label_domains))


@dataclass(frozen=True, slots=True)
class Attachment:
    """One network a container is on: its addresses there, the subnets they lie in, the
    network's gateways (where a container reaches the host) and the container's aliases there."""

    network: str
    addresses: tuple[Address, ...]
    subnets: tuple[Network, ...]
    gateways: tuple[Address, ...] = ()
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ContainerRecords:
    """The result for one container: what goes into the store, and what was wrong with it."""

    container: str
    fragment: Fragment = field(default_factory=Fragment)
    problems: tuple[str, ...] = ()
    gateways: Mapping[str, tuple[Address, ...]] = field(default_factory=dict)


def parse_dns_name(raw: str, wildcard: bool = True) -> str:
    """Validate and normalize one absolute name (`*.` first label allowed); ValueError says why."""
    text = raw.strip()
    if not text:
        raise ValueError("empty name")
    name = normalize_name(text)
    if len(name) > 254:
        raise ValueError("longer than 253 characters")
    labels = name[:-1].split(".")
    for index, label in enumerate(labels):
        if label == "*" and index == 0 and wildcard and len(labels) > 1:
            continue
        if not label:
            raise ValueError("empty label")
        if not _LABEL_RE.match(label):
            raise ValueError(f"bad label {label!r}")
    return name


def attachments(info: Mapping[str, Any]) -> list[Attachment]:
    """The networks where the container has an address, in network-name order. Aliases are the
    network's `Aliases` and `DNSNames` (Docker 25+), without the short container ID the engine
    adds to both (an artifact, not a name anyone chose)."""
    networks = ((info.get("NetworkSettings") or {}).get("Networks")) or {}
    short_id = str(info.get("Id", ""))[:12]
    found: list[Attachment] = []
    for network in sorted(networks):
        settings = networks[network] or {}
        addresses: list[Address] = []
        subnets: list[Network] = []
        for addr_key, len_key in (("IPAddress", "IPPrefixLen"), ("GlobalIPv6Address", "GlobalIPv6PrefixLen")):
            address = settings.get(addr_key)
            if not address:
                continue
            interface = ipaddress.ip_interface(f"{address}/{settings.get(len_key) or 0}")
            addresses.append(interface.ip)
            if settings.get(len_key):
                subnets.append(interface.network)
        gateways = []
        for key in ("Gateway", "IPv6Gateway"):
            try:
                gateways.append(ipaddress.ip_address(settings.get(key) or ""))
            except ValueError:
                continue
        aliases = [str(alias) for alias in (settings.get("Aliases") or []) + (settings.get("DNSNames") or [])
                   if str(alias) != short_id]
        if addresses:
            found.append(Attachment(network, tuple(addresses), tuple(subnets), tuple(gateways),
                                    tuple(dict.fromkeys(aliases))))
    return found


class LabelReader:
    """Reads the labels and env of one container (or of another `kind` of object with labels, a
    Swarm service), collecting problems instead of raising."""

    def __init__(self, container: str, labels: Mapping[str, str], env: Iterable[str], policy: NamePolicy,
                 kind: str = "container") -> None:
        self.container = container
        self.kind = kind
        self.labels = labels
        self.env = dict(item.split("=", 1) for item in env if "=" in item)
        self.policy = policy
        self.problems: list[str] = []

    def problem(self, where: str, value: str, reason: str) -> None:
        self.problems.append(f"{self.kind} {self.container}: {where}={value!r}: {reason}; skipped")

    def claim(self, where: str, value: str, wildcard: bool = True) -> str | None:
        """The name `value` spells when it is well formed and the name policy lets this
        container have it; otherwise None, with the reason reported."""
        try:
            name = parse_dns_name(value, wildcard)
        except ValueError as exc:
            self.problem(where, value, str(exc))
            return None
        refusal = self.policy.refusal(name)
        if refusal is not None:
            self.problem(where, value, f"refused: {refusal}")
            return None
        return name

    def flag(self, label: str) -> bool | None:
        raw = self.labels.get(label)
        if raw is None:
            return None
        if raw.strip().lower() in _TRUE:
            return True
        if raw.strip().lower() in _FALSE:
            return False
        self.problem(f"label {label}", raw, "expected true or false")
        return None

    def in_domains(self, relative: Iterable[tuple[str, str]], domains: Iterable[str]) -> list[str]:
        """Each (where, relative name) under each domain, claimed as any other name: one that is
        no valid DNS name or that the name policy refuses is reported and skipped."""
        claimed = (self.claim(where, f"{value}.{domain}", wildcard=False) for where, value in relative
                   for domain in domains)
        return [name for name in claimed if name is not None]

    def ttl(self) -> int:
        raw = self.labels.get(TTL_LABEL)
        if raw is None:
            return DEFAULT_TTL
        try:
            ttl = int(raw.strip())
        except ValueError:
            ttl = -1
        if not 0 <= ttl <= MAX_TTL:
            self.problem(f"label {TTL_LABEL}", raw, f"expected seconds (0..{MAX_TTL})")
            return DEFAULT_TTL
        return ttl

    def name_list(self, where: str, raw: str | None) -> list[str]:
        """Comma-separated absolute names; each bad one is reported and skipped alone."""
        claimed = (self.claim(where, item.strip()) for item in (raw or "").split(",") if item.strip())
        return [name for name in claimed if name is not None]

    def health(self, state: Mapping[str, Any]) -> str | None:
        """The healthcheck status records carry; None without a healthcheck or when opted out."""
        opt_out = self.labels.get(HEALTH_LABEL)
        if opt_out is not None:
            if opt_out.strip().lower() == "ignore":
                return None
            self.problem(f"label {HEALTH_LABEL}", opt_out, "expected ignore")
        status = str((state.get("Health") or {}).get("Status") or "")
        if status in NO_HEALTHCHECK:
            return None
        if status not in HEALTH_STATES:
            self.problem("health status", status, f"expected one of {', '.join(HEALTH_STATES)}; answered as unchecked")
            return None
        return status

    def addresses(self, label: str) -> list[Address]:
        found: list[Address] = []
        for item in (self.labels.get(label) or "").split(","):
            if not item.strip():
                continue
            try:
                found.append(ipaddress.ip_address(item.strip()))
            except ValueError:
                self.problem(f"label {label}", item.strip(), "not an IP address")
        return found


def _own_names(info: Mapping[str, Any], reader: LabelReader, domains: tuple[str, ...]) -> list[str]:
    """`<container>.<domain>`, `<service>.<project>.<domain>`, `<hostname>.<domainname>`."""
    config = info.get("Config") or {}
    labels = reader.labels
    relative: list[tuple[str, str]] = [("container name", reader.container)]
    if labels.get(COMPOSE_SERVICE) and labels.get(COMPOSE_PROJECT):
        relative.append(("compose labels", f"{labels[COMPOSE_SERVICE]}.{labels[COMPOSE_PROJECT]}"))
    names = reader.in_domains(relative, domains)
    if config.get("Domainname") and config.get("Hostname"):
        fqdn = reader.claim("hostname.domainname", f"{config['Hostname']}.{config['Domainname']}", wildcard=False)
        names += [fqdn] if fqdn is not None else []
    return names


def claimed_names(reader: LabelReader, nets: list[Attachment]) -> list[str]:
    """Every name the container claims for itself, in every view: its labels' names, other
    tools' labels and env, and network aliases with dots. One place, so one policy can judge them."""
    names = reader.name_list(f"label {NAMES_LABEL}", reader.labels.get(NAMES_LABEL))
    for label in PEER_NAME_LABELS:
        names += reader.name_list(f"label {label}", reader.labels.get(label))
    names += reader.name_list(f"env {PEER_NAME_ENV}", reader.env.get(PEER_NAME_ENV))
    for att in nets:
        for alias in att.aliases:
            if "." in alias.strip().rstrip("."):
                names += reader.name_list(f"alias on network {att.network}", alias)
    return names


def _scoped_names(reader: LabelReader, att: Attachment, domains: tuple[str, ...]) -> list[str]:
    """A network's single-label aliases (`db`, and the service name compose gives every replica),
    answered inside that network only, as Docker's own DNS does: `db.` and `db.<domain>`."""
    names: list[str] = []
    for alias in att.aliases:
        label = alias.strip().rstrip(".").lower()
        if "." in label:
            continue
        if not _LABEL_RE.match(label):
            reader.problem(f"alias on network {att.network}", alias, "not a valid DNS label")
            continue
        names += [f"{label}.", *(f"{label}.{domain}" for domain in domains)]
    return names


def _host_view(reader: LabelReader, rules: NameRules, nets: list[Attachment]) -> tuple[Address, ...]:
    """The addresses clients outside the container's networks get: the label, else
    --host-address, else the labelled network, else the first network by name. Never random."""
    labelled = reader.addresses(HOST_ADDRESS_LABEL)
    if labelled:
        return tuple(labelled)
    if rules.host_address:
        return tuple(ipaddress.ip_address(a) for a in rules.host_address)
    wanted = reader.labels.get(NETWORK_LABEL)
    if wanted is not None:
        chosen = next((att for att in nets if att.network == wanted.strip()), None)
        if chosen is not None:
            return chosen.addresses
        reader.problem(f"label {NETWORK_LABEL}", wanted, "the container has no address on that network")
    return nets[0].addresses if nets else ()


def address_record(name: str, address: Address, ttl: int, origin: str, view: str | None,
                    health: str | None = None) -> ZoneRecord:
    """In wire form, as zonefile addresses are (see `ZoneRecord.data`), so equal records compare equal."""
    return ZoneRecord(name, QTYPE.A if address.version == 4 else QTYPE.AAAA, ttl, address.packed, origin, view,
                      health)


@dataclass(frozen=True, slots=True)
class _Naming:
    """What one container's records are made from, once read."""

    names: list[str]  # answered in every view
    scoped: dict[str, list[str]]  # network -> names answered there only
    nets: list[Attachment]
    host: tuple[Address, ...]
    ttl: int
    origin: str
    health: str | None


def _srv_target(container: str, rules: NameRules) -> str | None:
    """The name that is this replica alone inside its networks: `<container>.<first domain>`."""
    try:
        return parse_dns_name(f"{container}.{rules.domains[0]}", wildcard=False)
    except ValueError:
        return None


def _srv_records(info: Mapping[str, Any], reader: LabelReader, rules: NameRules, naming: _Naming,
                 own: str | None) -> list[ZoneRecord]:
    """Per service, in each network the container's own name as target with the container port,
    and in the host view the host's name with each published port the host reaches there."""
    exposed = ((info.get("Config") or {}).get("ExposedPorts")) or {}
    offered = services(exposed, reader.labels.get(SRV_LABEL), reader.problem)
    if not offered:
        return []
    published = published_ports(info)
    host_addresses = rules.host_address or (LOOPBACK,)
    records: list[ZoneRecord] = []

    def add(service: Service, name: str, view: str | None, port: int, target: str) -> None:
        records.append(srv_record(service.owner(name), port, target, naming.ttl, naming.origin, view, naming.health))

    for service in offered:
        bindings = published.get((service.port, service.protocol), ())
        host_ports = dict.fromkeys(port for ip, port in bindings if reachable_from_host(ip, host_addresses))
        for name in naming.names:
            if name.startswith("*."):
                continue
            for port in host_ports if rules.host_names else ():
                add(service, name, None, port, rules.host_names[0])
            for att in naming.nets if own else ():
                add(service, name, att.network, service.port, own)
        for network, scoped in naming.scoped.items():
            for name in scoped if own else ():
                add(service, name, network, service.port, own)
    return records


def container_records(info: Mapping[str, Any], rules: NameRules) -> ContainerRecords:
    """Everything one container contributes; an empty fragment when it is stopped or opted out.
    Each name answers, in a network's view, the container's addresses there, and in the host view
    those `_host_view` chooses."""
    container = (info.get("Name") or "").lstrip("/") or str(info.get("Id", "?"))[:12]
    config = info.get("Config") or {}
    reader = LabelReader(container, config.get("Labels") or {}, config.get("Env") or (), rules.policy)
    enabled = reader.flag(ENABLE_LABEL)
    running = bool((info.get("State") or {}).get("Running"))
    if not running or enabled is False or (rules.opt_in and enabled is not True):
        return ContainerRecords(container, problems=tuple(reader.problems))

    nets = attachments(info)
    own = _own_names(info, reader, rules.domains)
    naming = _Naming(names=list(dict.fromkeys(own + claimed_names(reader, nets))),
                     scoped={att.network: list(dict.fromkeys(_scoped_names(reader, att, rules.domains)))
                             for att in nets},
                     nets=nets, host=_host_view(reader, rules, nets), ttl=reader.ttl(),
                     origin=f"container {container}", health=reader.health(info.get("State") or {}))
    ttl, origin, health = naming.ttl, naming.origin, naming.health
    records: list[ZoneRecord] = []
    for name in naming.names:
        records += [address_record(name, address, ttl, origin, None, health) for address in naming.host]
        for att in nets:
            records += [address_record(name, address, ttl, origin, att.network, health) for address in att.addresses]
    for att in nets:
        for name in naming.scoped[att.network]:
            records += [address_record(name, address, ttl, origin, att.network, health) for address in att.addresses]
    targets = [name for name in naming.names if not name.startswith("*.")]
    for att in nets:
        for address in att.addresses:
            records += [ZoneRecord(ptr_name(address), QTYPE.PTR, ttl, PTR(t), origin) for t in targets]
    records += _srv_records(info, reader, rules, naming, _srv_target(container, rules))
    views = {att.network: att.subnets for att in nets if att.subnets}
    gateways = {att.network: att.gateways for att in nets if att.gateways}
    return ContainerRecords(container, Fragment(tuple(records), views, yields=True), tuple(reader.problems),
                            gateways)
