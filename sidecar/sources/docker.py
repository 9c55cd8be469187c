"""The Docker source: running containers become store fragments, kept live from the event stream.

One background thread owns the engine connection. It opens the event stream first, then lists
and inspects every running container (so nothing that happens in between is lost), then follows
the events, re-inspecting only the container an event names: the zone rebuild costs one
container's records, not a full re-list. Only read endpoints are used (version, list, inspect,
events), so the socket can be mounted read-only.

When the engine is missing at start, the other sources keep serving; the first failure is logged
once and connecting is retried with backoff. When the engine goes away, the last known names keep
answering; on return everything is listed again and replaces what we had (a full resync: no
event is trusted to have been seen while away)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from docker import APIClient
from docker.errors import APIError, DockerException, NotFound
from docker.types import CancellableStream
from docker.utils import kwargs_from_env
from requests.exceptions import RequestException

from ..config import Config
from ..records import ZoneRecord
from ..store import Store
from ..zone import Fragment, Network
from .dockersocket import socket_problem
from .labels import NameRules, container_records

log = logging.getLogger(__name__)

KEY_PREFIX = "docker:"
NETWORKS_KEY = KEY_PREFIX + "networks"  # every Docker network's subnets, once (container keys are ids)
DEFAULT_SOCKET = "/var/run/docker.sock"
# The events that can change a container's names or addresses; everything else is ignored.
WATCHED_EVENTS = ("start", "die", "stop", "destroy", "rename", "connect", "disconnect")
FIRST_SYNC_WAIT = 5.0  # how long startup waits for the first list before serving without it
FIRST_BACKOFF = 0.25
MAX_BACKOFF = 5.0
API_TIMEOUT = 10.0


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
    return DockerSource(store, NameRules(config.domains, config.docker_opt_in, config.host_address), url, env)


def _event_container(event: Mapping[str, Any]) -> str | None:
    """The container an event is about (network events carry it as an attribute)."""
    actor = event.get("Actor") or {}
    if event.get("Type") == "network":
        return (actor.get("Attributes") or {}).get("container")
    return actor.get("ID") or event.get("id")


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
        self.connected = False
        self.resyncs = 0

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

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
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
        stream = client.events(decode=True, filters={"type": ["container", "network"],
                                                     "event": list(WATCHED_EVENTS)})
        with self._stream_lock:
            if self._stopping.is_set():
                stream.close()
                return
            self._stream = stream
        count = self.resync(client)
        self.connected = True
        self._first_attempt.set()
        log.info("Docker engine at %s: %d running containers named; following events", self.base_url, count)
        for event in stream:
            if self._stopping.is_set():
                return
            self._on_event(client, event)

    # -- turning engine state into fragments -------------------------------------------------

    def resync(self, client: APIClient) -> int:
        """List and inspect every running container; replace all Docker fragments in one swap."""
        fragments: dict[str, Fragment] = {}
        self._networks = {}
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
            fragment = self._records(info)
            if fragment.records:
                fragments[KEY_PREFIX + info["Id"]] = Fragment(fragment.records)
                log.info("%s: named %s", fragment.records[0].origin, _names(fragment.records))
                self._learn_networks(fragment)
        self._held = set(fragments)
        self._store.put_many({**fragments, NETWORKS_KEY: Fragment(views=dict(self._networks))},
                             replace_prefix=KEY_PREFIX)
        self.resyncs += 1
        return len(fragments)

    def _on_event(self, client: APIClient, event: Mapping[str, Any]) -> None:
        container = _event_container(event)
        if not container:
            return
        log.debug("Docker event %s %s for %s", event.get("Type"), event.get("Action"), container[:12])
        try:
            info = None if event.get("Action") == "destroy" else self._inspect(client, container)
        except APIError as exc:
            log.warning("cannot inspect container %s: %s; its names stay as they were", container[:12],
                        exc.explanation or exc)
            return
        fragment = self._records(info) if info is not None else Fragment()
        key = KEY_PREFIX + (info["Id"] if info is not None else container)
        if fragment.records:
            stored = Fragment(fragment.records)
            before = self._store.fragment(key)
            if before != stored:
                changes = {key: stored}
                if self._learn_networks(fragment):
                    changes[NETWORKS_KEY] = Fragment(views=dict(self._networks))
                self._store.put_many(changes)  # one rebuild, even when a network is new
                self._held.add(key)
                log.info("%s: %s %s", fragment.records[0].origin, "names updated:" if before else "added:",
                         _names(fragment.records))
        elif key in self._held:
            gone = self._store.fragment(key)
            self._store.remove(key)
            self._held.discard(key)
            if gone is not None and gone.records:
                log.info("%s: removed, with %s", gone.records[0].origin, _names(gone.records))
        if event.get("Action") == "destroy":
            self._problems.pop(container, None)

    def _inspect(self, client: APIClient, container: str) -> dict[str, Any] | None:
        try:
            return client.inspect_container(container)
        except NotFound:
            return None

    def _records(self, info: Mapping[str, Any]) -> Fragment:
        """The container's records and view networks (which go to the one networks fragment)."""
        result = container_records(info, self._rules)
        if self._problems.get(info["Id"]) != result.problems:  # each problem once per container
            self._problems[info["Id"]] = result.problems
            for problem in result.problems:
                log.warning("%s", problem)
        return result.fragment

    def _learn_networks(self, fragment: Fragment) -> bool:
        """Add a container's networks to the shared view list (each subnet once, so the zone's
        client placement does not grow with the number of containers); True when it grew. A
        network that goes away stays listed until the next resync: a view with no records is inert."""
        grew = False
        for name, subnets in fragment.views.items():
            known = self._networks.get(name, ())
            new = tuple(net for net in subnets if net not in known)
            if new:
                self._networks[name] = known + new
                grew = True
        return grew
