"""Swarm services and tasks as records, read from a manager's read-only API.

`swarm_records` is pure (the engine's answers in, one fragment out), so every naming rule is
tested with plain dicts; `SwarmFollower` keeps that fragment live from its own thread. The names,
views and how fast changes show are described in docs/swarm.md."""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from docker import APIClient
from docker.errors import DockerException
from requests.exceptions import RequestException

from ..zone.records import ZoneRecord
from ..zone.store import Store
from ..zone.zone import Fragment, Network
from .labels import ENABLE_LABEL, LabelReader, NameRules, address_record, claimed_names
from .srv import Service, srv_record

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

FRAGMENT_KEY = "swarm:services"
STACK_LABEL = "com.docker.stack.namespace"
TASK_SERVICE_LABEL = "com.docker.swarm.service.id"  # on every task's container: a swarm container event
POLL_INTERVAL = 1.0
SETTLING_POLL_INTERVAL = 0.1
FAILED_POLL_INTERVAL = 5.0
ANSWERED_TASK_STATES = {"running": None, "starting": "starting"}  # task state -> health it stands for
ON_THE_WAY = {"new", "pending", "assigned", "accepted", "preparing", "ready"}  # a task's states before starting
INCOMPLETE_ADDRESS = ("", "0.0.0.0", "::")  # what a node reports when it has not settled on one


@dataclass(frozen=True, slots=True)
class SwarmRecords:
    """The swarm's fragment, what was wrong with its labels, and how much it named."""

    fragment: Fragment = field(default_factory=Fragment)
    problems: tuple[str, ...] = ()
    services: int = 0
    tasks: int = 0
    settling: bool = False  # a task is about to run: read again soon


@dataclass(frozen=True, slots=True)
class _Task:
    node: str
    health: str | None
    addresses: Mapping[str, tuple[Address, ...]]  # network name -> the task's addresses there


def _overlay_networks(networks: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, tuple[Network, ...]]]:
    """Swarm-scoped networks by ID: (name, subnets). The ingress network is left out: it carries
    the routing mesh, and no client asks from it."""
    found: dict[str, tuple[str, tuple[Network, ...]]] = {}
    for net in networks:
        if net.get("Scope") != "swarm" or net.get("Ingress"):
            continue
        subnets = []
        for config in (net.get("IPAM") or {}).get("Config") or ():
            try:
                subnets.append(ipaddress.ip_network(config.get("Subnet") or "", strict=False))
            except ValueError:
                continue
        found[net["Id"]] = (net.get("Name") or net["Id"][:12], tuple(subnets))
    return found


def _address(text: str) -> Address | None:
    """`10.0.1.4/24` or `10.0.1.4` -> the address; None for anything else."""
    try:
        return ipaddress.ip_interface(text).ip
    except ValueError:
        return None


def _node_addresses(nodes: Iterable[Mapping[str, Any]]) -> dict[str, Address]:
    """Each ready node's address: `Status.Addr`, else its manager address's host part."""
    found: dict[str, Address] = {}
    for node in nodes:
        status = node.get("Status") or {}
        if status.get("State") != "ready":
            continue
        text = str(status.get("Addr") or "")
        if text in INCOMPLETE_ADDRESS:
            text = str((node.get("ManagerStatus") or {}).get("Addr") or "").rpartition(":")[0].strip("[]")
        address = _address(text)
        if address is not None:
            found[node["ID"]] = address
    return found


def _has_healthcheck(service: Mapping[str, Any]) -> bool:
    test = ((service["Spec"].get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Healthcheck") or {}
    return bool(test.get("Test")) and test["Test"][0] != "NONE"


def _settling(task: Mapping[str, Any], service: Mapping[str, Any]) -> bool:
    """Whether a task meant to run is about to: on its way, or starting without a healthcheck
    (which lasts only until the engine says so)."""
    state = (task.get("Status") or {}).get("State")
    return task.get("DesiredState") == "running" and (
        state in ON_THE_WAY or (state == "starting" and not _has_healthcheck(service)))


def _running_tasks(tasks: Iterable[Mapping[str, Any]], services: Mapping[str, Mapping[str, Any]],
                   networks: Mapping[str, tuple[str, tuple[Network, ...]]]) -> tuple[dict[str, list[_Task]], bool]:
    """Service ID -> its tasks meant to run and running (or starting: waiting for a healthcheck,
    answered only while no replica is healthy, by the zone's health rule); and whether any task
    is settling."""
    found: dict[str, list[_Task]] = {}
    settling = False
    for task in sorted(tasks, key=lambda t: (t.get("Slot") or 0, t.get("NodeID") or "", t.get("ID") or "")):
        state = (task.get("Status") or {}).get("State")
        service = services.get(task.get("ServiceID", ""))
        if service is None:
            continue
        settling = settling or _settling(task, service)
        if task.get("DesiredState") != "running" or state not in ANSWERED_TASK_STATES:
            continue
        health = ANSWERED_TASK_STATES[state] or ("healthy" if _has_healthcheck(service) else None)
        addresses: dict[str, tuple[Address, ...]] = {}
        for attachment in task.get("NetworksAttachments") or ():
            net = networks.get((attachment.get("Network") or {}).get("ID", ""))
            found_here = tuple(a for a in map(_address, attachment.get("Addresses") or ()) if a is not None)
            if net is not None and found_here:
                addresses[net[0]] = found_here
        found.setdefault(service["ID"], []).append(_Task(task.get("NodeID", ""), health, addresses))
    return found, settling


def _own_names(name: str, stack: str | None, reader: LabelReader, domains: Sequence[str]) -> list[str]:
    """`<service-name>.<domain>`, and `<service>.<stack>.<domain>` for a stack's service (whose
    own name is `<stack>_<service>`)."""
    relative = [("service name", name)]
    if stack and name.startswith(stack + "_") and len(name) > len(stack) + 1:
        relative.append((f"label {STACK_LABEL}", f"{name[len(stack) + 1:]}.{stack}"))
    return reader.in_domains(relative, domains)


def _published(service: Mapping[str, Any]) -> list[tuple[int, str, int, str]]:
    """(target port, protocol, published port, publish mode) of each published port."""
    ports = (service.get("Endpoint") or {}).get("Ports") or ()
    return [(int(p["TargetPort"]), str(p.get("Protocol") or "tcp"), int(p["PublishedPort"]),
             str(p.get("PublishMode") or "ingress")) for p in ports if p.get("PublishedPort") and p.get("TargetPort")]


def _host_view(published: Sequence[tuple[int, str, int, str]], tasks: Sequence[_Task],
               nodes: Mapping[str, Address], rules: NameRules) -> list[Address]:
    """Where the host reaches a service: nowhere without published ports; else --host-address,
    else every node for the routing mesh (`ingress` mode), or the nodes running a task (`host`)."""
    if not published:
        return []
    if rules.host_address:
        return [ipaddress.ip_address(a) for a in rules.host_address]
    mesh = any(mode == "ingress" for *_, mode in published)
    running_on = {task.node for task in tasks}
    return sorted({address for node, address in nodes.items() if mesh or node in running_on},
                  key=lambda address: (address.version, int(address)))


def _service_records(service: Mapping[str, Any], tasks: Sequence[_Task], networks: Mapping[str, tuple[str, Any]],
                     nodes: Mapping[str, Address], rules: NameRules) -> tuple[list[ZoneRecord], list[str]]:
    """One service's records (its names per overlay view and in the host view, its tasks', its
    SRV), and what was wrong with its labels."""
    spec = service["Spec"]
    name = str(spec.get("Name") or service["ID"][:12])
    labels = spec.get("Labels") or {}
    reader = LabelReader(name, labels, (), rules.policy, kind="service")
    enabled = reader.flag(ENABLE_LABEL)
    if enabled is False or (rules.opt_in and enabled is not True):
        return [], reader.problems
    own = _own_names(name, labels.get(STACK_LABEL), reader, rules.domains)
    names = list(dict.fromkeys(own + claimed_names(reader, [])))
    ttl, origin = reader.ttl(), f"service {name}"
    records: list[ZoneRecord] = []

    def add(owners: Iterable[str], address: Address, view: str | None, health: str | None = None) -> None:
        records.extend(address_record(owner, address, ttl, origin, view, health) for owner in owners)

    endpoint = service.get("Endpoint") or {}
    mode = (endpoint.get("Spec") or spec.get("EndpointSpec") or {}).get("Mode") or "vip"
    views: list[str] = []
    vips = (endpoint.get("VirtualIPs") or ()) if mode == "vip" else ()
    for vip in vips:
        net, address = networks.get(vip.get("NetworkID", "")), _address(str(vip.get("Addr") or ""))
        if net is not None and address is not None:
            add(names, address, net[0])
            views.append(net[0])
    for task in tasks:
        for view, addresses in task.addresses.items():
            for address in addresses:
                add([f"tasks.{owner}" for owner in own], address, view, task.health)
                if mode != "vip":
                    add(names, address, view, task.health)
            views.append(view)

    published = _published(service)
    for address in _host_view(published, tasks, nodes, rules):
        add(names, address, None)
    target = own[0] if own else None
    for port, protocol, public, _mode in published if target else ():
        for owner in names:
            if owner.startswith("*."):
                continue
            srv_owner = Service(str(port), port, protocol).owner(owner)
            records.append(srv_record(srv_owner, public, target, ttl, origin, None, None))
            records += [srv_record(srv_owner, port, target, ttl, origin, view, None) for view in dict.fromkeys(views)]
    return records, reader.problems


def swarm_records(services: Sequence[Mapping[str, Any]], tasks: Iterable[Mapping[str, Any]],
                  nodes: Iterable[Mapping[str, Any]], networks: Iterable[Mapping[str, Any]],
                  rules: NameRules) -> SwarmRecords:
    """Every service's and running task's records, and the overlay networks as views.

    A service is `<service-name>.<domain>` and, in a stack, `<service>.<stack>.<domain>`; `tasks.`
    names its running tasks. In an overlay view a `vip` service answers its virtual IP and a
    `dnsrr` service its tasks; the host view gets only services with published ports."""
    overlays = _overlay_networks(networks)
    by_id = {service["ID"]: service for service in services}
    running, settling = _running_tasks(tasks, by_id, overlays)
    node_addresses = _node_addresses(nodes)
    records: list[ZoneRecord] = []
    problems: list[str] = []
    for service in sorted(services, key=lambda s: str(s["Spec"].get("Name"))):
        found, wrong = _service_records(service, running.get(service["ID"], ()), overlays, node_addresses, rules)
        records += found
        problems += wrong
    views = {name: subnets for name, subnets in overlays.values() if subnets}
    return SwarmRecords(Fragment(tuple(records), views, yields=True), tuple(problems), len(services),
                        sum(map(len, running.values())), settling)


def swarm_role(info: Mapping[str, Any]) -> str | None:
    """`manager` or `worker` from the engine's /info, or None outside a swarm."""
    swarm = info.get("Swarm") or {}
    if swarm.get("LocalNodeState") != "active":
        return None
    return "manager" if swarm.get("ControlAvailable") else "worker"


class SwarmFollower:
    """Keeps the swarm's fragment in the store from its own thread while the engine manages a
    swarm: re-read every `interval`, and at once when woken. Tasks have no events, hence the
    polling; while a task is on its way to running, it re-reads every `SETTLING_POLL_INTERVAL`.
    A failing read (the node left the swarm, was demoted, the engine is away) is logged once and
    keeps the last names; the next good read replaces them all."""

    def __init__(self, store: Store, rules: NameRules, connect: Callable[[], APIClient],
                 interval: float = POLL_INTERVAL) -> None:
        self._store = store
        self._rules = rules
        self._connect = connect
        self._interval = interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._told_worker = False
        self._failing = False
        self._problems: set[str] = set()

    def follow(self, info: Mapping[str, Any], where: str) -> None:
        """Called on each (re)connection to the engine with its /info: start following a manager;
        on a worker, say once that only its own containers are served."""
        role = swarm_role(info)
        if role == "worker" and not self._told_worker:
            self._told_worker = True
            log.warning("%s is a swarm worker: services and tasks are known to managers only; serving this "
                        "node's containers (to name services, point DOCKER_HOST at a manager: docs/swarm.md)", where)
        if role != "manager":
            return
        if self._thread is None:
            log.info("%s manages a swarm: following its services and tasks", where)
            self._thread = threading.Thread(target=self._run, name="swarm-poll", daemon=True)
            self._thread.start()
        self.wake()

    @property
    def following(self) -> bool:
        """Whether this engine was found managing a swarm (and so is read)."""
        return self._thread is not None

    def wake(self) -> None:
        """Read at once: the Docker source calls this on service and node events, and on events
        of a swarm task's container."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        client: APIClient | None = None
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                client = client or self._connect()
                wait = SETTLING_POLL_INTERVAL if self.read(client).settling else self._interval
            except (DockerException, RequestException, OSError) as exc:
                if not self._failing:
                    self._failing = True
                    log.warning("cannot read the swarm (%s); its last names keep serving; retrying", exc)
                else:
                    log.debug("still cannot read the swarm: %s", exc)
                if client is not None:
                    client.close()
                client, wait = None, FAILED_POLL_INTERVAL
            self._wake.wait(wait)
        if client is not None:
            client.close()

    def read(self, client: APIClient) -> SwarmRecords:
        """One read of the swarm; the store changes only when the records do."""
        result = swarm_records(client.services(), client.tasks(filters={"desired-state": "running"}),
                               client.nodes(), client.networks(), self._rules)
        if self._failing:
            self._failing = False
            log.info("the swarm answers again: its names are read afresh")
        for problem in result.problems:
            if problem not in self._problems:
                self._problems.add(problem)
                log.warning("%s", problem)
        if self._store.fragment(FRAGMENT_KEY) != result.fragment:
            self._store.put(FRAGMENT_KEY, result.fragment)
            log.info("swarm: %d services, %d running tasks named", result.services, result.tasks)
        return result
