"""The Docker source: running containers become store fragments, kept live from the event stream.

One background thread owns the engine connection and re-inspects only the container an event
names, so a change costs one container's records, not a full re-list. Only read endpoints are
used, so the socket can be mounted read-only. Podman's Docker-compatible API is followed the same
way, and on a swarm manager the services and tasks too (`swarm.py`)."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from docker import APIClient
from docker.errors import APIError, DockerException, NotFound
from docker.types import CancellableStream
from docker.utils import kwargs_from_env
from requests.exceptions import RequestException

from ..config import Config
from ..zone.records import ZoneRecord
from ..zone.store import Store
from ..zone.zone import Fragment, Network
from .dockersocket import socket_problem
from .hostnames import Address, host_name_records
from .labels import ContainerRecords, NameRules, container_records
from .swarm import TASK_SERVICE_LABEL, SwarmFollower, swarm_role

log = logging.getLogger(__name__)

KEY_PREFIX = "docker:"
NETWORKS_KEY = KEY_PREFIX + "networks"  # every Docker network's subnets and the host's names, once
DEFAULT_SOCKET = "/var/run/docker.sock"
# The events that can change a container's names, addresses or health; everything else is ignored.
# Podman says `died` and `remove` where Docker says `die` and `destroy`; Docker's health events
# read `health_status: healthy` (its filter matches the prefix), Podman's `health_status`.
REMOVAL_EVENTS = ("destroy", "remove")
WATCHED_EVENTS = ("start", "die", "died", "stop", "rename", "connect", "disconnect", "health_status",
                  *REMOVAL_EVENTS)
SWARM_EVENT_TYPES = ("service", "node")  # asked for only in a swarm: Podman knows no such types
SWARM_EVENTS = ("create", "update", "remove")
GONE_MESSAGE = "no such container"  # how both engines word an inspect of a container being removed
FIRST_SYNC_WAIT = 5.0  # how long startup waits for the first list before serving without it
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0
API_TIMEOUT = 10.0
# Podman sends a health event before it saves the check's result: its inspect is read again, this
# often and at most this many times, until it holds that check.
HEALTH_RETRY_SECONDS = 0.05
HEALTH_RETRIES = 40


def docker_endpoint(env: Mapping[str, str]) -> str | None:
    """Where the engine should be: DOCKER_HOST, else the default socket when it exists."""
    host = env.get("DOCKER_HOST", "").strip()
    if host:
        return host
    return f"unix://{DEFAULT_SOCKET}" if os.path.exists(DEFAULT_SOCKET) else None


def docker_source(config: Config, store: Store, env: Mapping[str, str] | None = None) -> DockerSource | None:
    """The Docker source the flags and the machine ask for, or None; says which in one line."""
    if not config.docker:
        log.info("Docker source off (--no-docker)")
        return None
    env = dict(os.environ if env is None else env)
    url = docker_endpoint(env)
    if url is None:
        log.info("Docker source off: %s", socket_problem(f"unix://{DEFAULT_SOCKET}"))
        return None
    log.info("Docker source on: watching %s", url)
    rules = NameRules(config.domains, config.docker_opt_in, config.host_address, config.host_names,
                      config.label_domains)
    return DockerSource(store, rules, url, env)


def engine_name(version: Mapping[str, Any]) -> str:
    """`Podman 4.3.1` or `Docker 20.10.24`, from the engine's /version answer."""
    for component in version.get("Components") or ():
        if "podman" in str(component.get("Name", "")).lower():
            return f"Podman {component.get('Version', '?')}"
    return f"Docker {version.get('Version', '?')}"


def _event_container(event: Mapping[str, Any]) -> str | None:
    """The container an event is about (network events carry it as an attribute)."""
    actor = event.get("Actor") or {}
    if event.get("Type") == "network":
        return (actor.get("Attributes") or {}).get("container")
    return actor.get("ID") or event.get("id")


def health_is_current(info: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether a container's inspect holds the health check an event reports. Docker names the new
    status in the event's action (`health_status: healthy`) after saving it; Podman's event says
    only `health_status` and comes first, so its inspect is current once its health log holds a
    check that ended at or after the event."""
    if ":" in str(event.get("Action") or "") or not event.get("timeNano"):
        return True
    happened = event["timeNano"] / 1e9
    checks = ((info.get("State") or {}).get("Health") or {}).get("Log") or []
    return any(_seconds(check.get("End")) >= happened for check in checks)


def _seconds(stamp: object) -> float:
    """An RFC 3339 time as the engines write it (nanoseconds, `Z`; UTC when it names no zone) in
    seconds since the epoch; 0 when it cannot be read."""
    found = _RFC3339.match(str(stamp or ""))
    if found is None:
        return 0.0
    whole = datetime.fromisoformat(found["whole"] + (found["zone"] or "Z"))
    return whole.timestamp() + float("0" + (found["fraction"] or ""))


_RFC3339 = re.compile(r"(?P<whole>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?P<fraction>\.\d+)?(?P<zone>Z|[+-]\d\d:\d\d)?$")


def _names(records: Sequence[ZoneRecord]) -> str:
    """The distinct names a container's records give, for one readable log line."""
    names = sorted({rec.name for rec in records if not rec.name.endswith(".arpa.")})
    return ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")


class DockerSource:
    """Follows one engine from a daemon thread; `start()`, then `stop()`."""

    def __init__(self, store: Store, rules: NameRules, base_url: str, env: Mapping[str, str] | None = None,
                 max_backoff: float = MAX_BACKOFF) -> None:
        self._store = store
        self._rules = rules
        self.base_url = base_url
        self._env = dict(os.environ if env is None else env)
        self._max_backoff = max_backoff
        self._stopping = threading.Event()
        self._first_attempt = threading.Event()
        self._stream: CancellableStream | None = None
        self._stream_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._problems: dict[str, tuple[str, ...]] = {}
        self._held: set[str] = set()  # keys of the containers we have records for
        self._networks: dict[str, tuple[Network, ...]] = {}  # network name -> subnets seen
        self._gateways: dict[str, tuple[Address, ...]] = {}  # network name -> its gateways seen
        self.connected = False
        self.resyncs = 0
        self.swarm = SwarmFollower(store, rules, self._connect)

    # -- lifetime -------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="docker-events", daemon=True)
        self._thread.start()

    def wait_first_attempt(self, timeout: float) -> bool:
        """True once the first connection attempt is over (synced, or failed and retrying)."""
        return self._first_attempt.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()  # wakes the thread blocked reading the event stream
            except (OSError, AttributeError, DockerException) as exc:
                log.debug("closing the Docker event stream: %s", exc)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.swarm.stop()

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        """Connect, follow, reconnect. A missing engine is logged once and retried with backoff;
        while it is away the other sources serve and its last known names keep answering."""
        delay = FIRST_BACKOFF
        reported = False
        while not self._stopping.is_set():
            try:
                client = self._connect()
            except (DockerException, RequestException, OSError) as exc:
                if not reported:
                    log.warning("no Docker engine at %s (%s); serving the other sources and retrying",
                                self.base_url, socket_problem(self.base_url) or exc)
                    reported = True
                else:
                    log.debug("Docker engine at %s still unreachable: %s", self.base_url, exc)
                self._first_attempt.set()
                self._stopping.wait(delay)
                delay = min(delay * 2, self._max_backoff)
                continue
            reason = "the event stream ended"
            try:
                self._follow(client)
            except (DockerException, RequestException, OSError) as exc:
                reason = str(exc)
            except Exception:  # the watcher must outlive any one failure: reconnect and resync
                log.exception("Docker source failed")
                reason = "an internal error"
            finally:
                client.close()
                self._first_attempt.set()  # startup waits for this, whatever happened
            if self.connected:  # it worked for a while: retry soon; a failure at once backs off
                delay = FIRST_BACKOFF
            self.connected = False
            if not self._stopping.is_set():
                log.warning("lost the Docker engine at %s (%s); the last names of %d containers keep serving; "
                            "reconnecting", self.base_url, reason, len(self._held))
                reported = True
                self._stopping.wait(delay)
                delay = min(delay * 2, self._max_backoff)

    def _connect(self) -> APIClient:
        kwargs = kwargs_from_env(environment=self._env)
        kwargs["base_url"] = self.base_url
        return APIClient(version="auto", timeout=API_TIMEOUT, **kwargs)  # asks the engine its version

    def _follow(self, client: APIClient) -> None:
        """Open the event stream, then list every container (so nothing that happens in between is
        lost), then re-inspect the container each event names."""
        info = client.info()
        in_swarm = swarm_role(info) is not None
        stream = client.events(decode=True, filters={
            "type": ["container", "network", *(SWARM_EVENT_TYPES if in_swarm else ())],
            "event": [*WATCHED_EVENTS, *(SWARM_EVENTS if in_swarm else ())]})
        with self._stream_lock:
            if self._stopping.is_set():
                stream.close()
                return
            self._stream = stream
        count = self.resync(client)
        self.connected = True
        self._first_attempt.set()
        log.info("%s at %s: %d running containers named; following events", engine_name(client.version()),
                 self.base_url, count)
        self.swarm.follow(info, self.base_url)
        for event in stream:
            if self._stopping.is_set():
                return
            self._on_event(client, event)

    # -- turning engine state into fragments -------------------------------------------------

    def resync(self, client: APIClient) -> int:
        """List and inspect every running container; replace all Docker fragments in one swap. Done
        on every (re)connection: no event is trusted to have been seen while the engine was away."""
        fragments: dict[str, Fragment] = {}
        self._networks, self._gateways = {}, {}
        listed = client.containers()
        for gone in set(self._problems) - {summary["Id"] for summary in listed}:
            del self._problems[gone]
        for summary in listed:
            try:
                info = self._inspect(client, summary["Id"])
            except APIError as exc:
                log.warning("cannot inspect container %s: %s; it gets no names until its next event",
                            summary["Id"][:12], exc.explanation or exc)
                continue
            if info is None:
                continue
            result = self._records(info)
            if result.fragment.records:
                fragments[KEY_PREFIX + info["Id"]] = replace(result.fragment, views={})
                log.info("%s: named %s", result.fragment.records[0].origin, _names(result.fragment.records))
                self._learn_networks(result)
        self._held = set(fragments)
        self._store.put_many({**fragments, NETWORKS_KEY: self._networks_fragment()}, replace_prefix=KEY_PREFIX)
        self.resyncs += 1
        return len(fragments)

    def _on_event(self, client: APIClient, event: Mapping[str, Any]) -> None:
        attributes = (event.get("Actor") or {}).get("Attributes") or {}
        if event.get("Type") in SWARM_EVENT_TYPES or TASK_SERVICE_LABEL in attributes:
            self.swarm.wake()  # tasks have no events of their own: the swarm is read again
            if event.get("Type") != "container":
                return
        container = _event_container(event)
        if not container:
            return
        action = str(event.get("Action") or "")
        log.debug("Docker event %s %s for %s", event.get("Type"), action, container[:12])
        removed = action in REMOVAL_EVENTS
        try:
            info = None if removed else self._inspect(client, container)
            for _ in range(HEALTH_RETRIES):
                if info is None or not action.startswith("health_status") or health_is_current(info, event):
                    break
                time.sleep(HEALTH_RETRY_SECONDS)
                info = self._inspect(client, container)
        except APIError as exc:
            log.warning("cannot inspect container %s: %s; its names stay as they were", container[:12],
                        exc.explanation or exc)
            return
        result = self._records(info) if info is not None else None
        fragment = result.fragment if result is not None else Fragment()
        key = KEY_PREFIX + (info["Id"] if info is not None else container)
        if result is not None and fragment.records:
            stored = replace(fragment, views={})
            before = self._store.fragment(key)
            if before != stored:
                changes = {key: stored}
                if self._learn_networks(result):
                    changes[NETWORKS_KEY] = self._networks_fragment()
                self._store.put_many(changes)  # one rebuild, even when a network is new
                self._held.add(key)
                if action.startswith("health_status") and before is not None:
                    log.info("%s: health %s", fragment.records[0].origin, fragment.records[0].health or "unchecked")
                else:
                    log.info("%s: %s %s", fragment.records[0].origin, "names updated:" if before else "added:",
                             _names(fragment.records))
        elif key in self._held:
            gone = self._store.fragment(key)
            self._store.remove(key)
            self._held.discard(key)
            if gone is not None and gone.records:
                log.info("%s: removed, with %s", gone.records[0].origin, _names(gone.records))
        if removed:
            self._problems.pop(container, None)

    def _inspect(self, client: APIClient, container: str) -> dict[str, Any] | None:
        """The container's inspect data; None when it is gone (or going: Podman may answer a
        removal in progress with an error that says so rather than a 404)."""
        try:
            return client.inspect_container(container)
        except NotFound:
            return None
        except APIError as exc:
            if GONE_MESSAGE in str(exc.explanation or exc).lower():
                return None
            raise

    def _records(self, info: Mapping[str, Any]) -> ContainerRecords:
        """The container's records, view networks and gateways (the last two go to the one
        networks fragment)."""
        result = container_records(info, self._rules)
        if self._problems.get(info["Id"]) != result.problems:  # each problem once per container
            self._problems[info["Id"]] = result.problems
            for problem in result.problems:
                log.warning("%s", problem)
        return result

    def _learn_networks(self, result: ContainerRecords) -> bool:
        """Add a container's networks and their gateways to the shared lists (each once, so the
        zone's client placement does not grow with the number of containers); True when they
        grew. A network that goes away stays listed until the next resync: a view with no
        records is inert."""
        grew = False
        for known_by_name, found in ((self._networks, result.fragment.views), (self._gateways, result.gateways)):
            for name, values in found.items():
                known = known_by_name.get(name, ())
                new = tuple(value for value in values if value not in known)
                if new:
                    known_by_name[name] = known + new
                    grew = True
        return grew

    def _networks_fragment(self) -> Fragment:
        """Every network's subnets, and the host's names answered per network at its gateway."""
        records = host_name_records(self._rules.host_names, self._rules.host_address, self._gateways)
        return Fragment(records, dict(self._networks), yields=True)
