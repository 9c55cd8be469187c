"""Wiring and lifetimes: sources -> store -> chain -> listeners, signals, graceful stop.
No DNS rules live here."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Sequence

from .api import Resolver
from .config import Config
from .fastpath.fastpath import FastPath
from .fastpath.packetcache import PacketCache
from .net.endpoint import Endpoint
from .net.reuseport import share_port, spread_at_random
from .observe.collector import SidecarCollector
from .observe.http import HttpServer
from .observe.logs import QueryLog, configure_logging
from .observe.metrics import Metrics
from .observe.peers import FamiliesSocket, WorkerMetrics, socket_path
from .observe.status import Status
from .resolve.cache import AnswerCache
from .resolve.chain import Chain
from .resolve.conditional import ConditionalForwards
from .resolve.forward import Forwarder
from .resolve.local import LocalZone
from .resolve.upstreams import DefaultUpstreams, without_own
from .server.access import AccessPolicy, Clients
from .server.handler import QueryHandler
from .server.ratelimit import RateLimiter
from .server.tcp import TcpListener
from .server.udp import Responder, UdpListener
from .sources.docker import FIRST_SYNC_WAIT, DockerSource, docker_source
from .sources.files import FileSource
from .workers import Supervisor
from .zone.store import Store

log = logging.getLogger("sidecar")
# The event loop gives up the interpreter lock at every socket call and, while another thread
# builds a zone, waits this long to get it back each time (docs/speed.md).
SWITCH_INTERVAL_S = 0.0001
# Queries in flight die by reference counting; a low threshold sweeps a burst of them over and
# over for nothing (docs/speed.md).
YOUNG_GENERATION_THRESHOLD = 20_000


class Sidecar:
    """One running server. `await start()`, then `bound` lists the real addresses (a port of 0 in
    the config picks a free one, the same for UDP and TCP); `await stop()` drains and closes.
    Under --workers, `worker` is this one's index: all share the ports, worker 0 alone serves HTTP,
    and with --http the others hand it their metrics through sockets in `peers` (`sidecar.observe.peers`)."""

    def __init__(self, config: Config, resolvers: Sequence[Resolver] = (), worker: int = 0,
                 peers: str | None = None) -> None:
        self.config = config
        self.worker = worker
        self.store = Store()
        self.files = FileSource(self.store, config.zonefiles, config.hosts, config.poll_interval)
        self.upstreams = DefaultUpstreams(config.upstreams, config.resolv_conf, config.listen)
        cache = AnswerCache(config.cache_size, config.min_ttl, config.max_ttl, config.stale_ttl)
        forwards = [(domain, without_own(targets, config.listen, f"--forward {domain}"))
                    for domain, targets in config.forwards]
        self.forwarder = Forwarder(self.upstreams, cache, config.timeout, ConditionalForwards(forwards), config.listen)
        local = LocalZone(self.store)
        self.chain = Chain([*resolvers, local], self.forwarder)
        self.metrics = Metrics()
        self.handler = QueryHandler(self.store, self.chain, Clients(self.store, AccessPolicy(config.allow,
                                    config.local_to_any)), self.metrics,
                                    QueryLog() if config.log_queries else None, local)
        self.limiter = RateLimiter(config.rate_limit) if config.rate_limit else None
        fast, in_place = fast_path_mode(config)
        self.fast = FastPath(self.handler, self.store) if fast else None
        self.responder: Responder = self.fast or self.handler
        self._ready_batch = self.fast.ready_batch if self.fast is not None and in_place else None
        status = self.status()
        own = SidecarCollector(status)
        collector = WorkerMetrics(own, peers, config.workers) if peers and worker == 0 else own
        self.http = (HttpServer(config.http, status, collector, config.http_token)
                     if config.http and worker == 0 else None)
        self.families = FamiliesSocket(socket_path(peers, worker), own) if peers and worker > 0 else None
        self.docker: DockerSource | None = None
        self.bound: list[Endpoint] = []
        self._udp: list[UdpListener] = []
        self._tcp: list[asyncio.Server] = []
        self._tcp_listener = TcpListener(self.responder)

    def status(self) -> Status:
        """What observers read of this sidecar, live (`observe.status`)."""
        return Status(zone=lambda: self.store.zone,
                      allows=lambda client: self.handler.clients.policy.allows(client, self.store.zone),
                      bound=lambda: self.bound, metrics=self.metrics,
                      packets=self.fast.packets if self.fast is not None else PacketCache(),
                      answers=self.forwarder.cache, upstreams=self.upstreams,
                      upstream_dead=self.forwarder.health.is_dead, files=self.files, docker=lambda: self.docker)

    async def start(self) -> None:
        if self.http is not None:
            self._start_http()  # first, so /healthz can say what is still loading
        if self.families is not None:
            self.families.start()
        self.store.put("flags", self.config.flag_fragment())
        await asyncio.to_thread(self.files.load)
        self.files.start()
        self.docker = docker_source(self.config, self.store)
        if self.docker is not None:
            self.docker.start()
            await asyncio.to_thread(self.docker.wait_first_attempt, FIRST_SYNC_WAIT)
        if not self.upstreams():
            log.warning("no upstream resolver: names that are not local will get SERVFAIL")
        for endpoint in self.config.listen:
            await self._listen(endpoint)
        log.info("listening on %s (UDP and TCP%s); %d local records; upstreams: %s",
                 ", ".join(map(str, self.bound)),
                 f", worker {self.worker} of {self.config.workers}" if self.config.workers > 1 else "",
                 len(self.store.zone.records), ", ".join(map(str, self.upstreams())) or "none")

    def _start_http(self) -> None:
        """The HTTP window is a convenience: a port someone else holds is logged, and DNS is
        served all the same (names matter more than the page about them)."""
        try:
            self.http.start()
        except OSError as exc:
            log.error("HTTP on %s: cannot listen: %s; serving DNS without /healthz, /metrics and /records",
                      self.config.http, exc.strerror or exc)
            self.http = None

    async def _listen(self, endpoint: Endpoint) -> None:
        """UDP and TCP on one address and port. With port 0 the kernel picks a free UDP port,
        which TCP may hold elsewhere: then another is tried."""
        family = socket.AF_INET6 if ":" in endpoint.host else socket.AF_INET
        shared = self.config.workers > 1
        for _ in range(20 if endpoint.port == 0 else 1):
            udp = socket.socket(family, socket.SOCK_DGRAM)
            try:  # bound here, not by the loop, so a failure keeps its reason ("Address already in use")
                if shared:
                    share_port(udp)
                udp.bind((endpoint.host, endpoint.port))
                if shared:
                    self._spread(udp)
            except OSError as exc:
                udp.close()
                raise OSError(exc.errno, f"{endpoint} (UDP): {exc.strerror}") from None
            port = udp.getsockname()[1]
            try:
                server = await asyncio.start_server(self._tcp_listener.serve, endpoint.host, port,
                                                    family=family, reuse_address=True, reuse_port=shared)
                break
            except OSError as exc:
                udp.close()
                if endpoint.port != 0 or exc.errno != errno.EADDRINUSE:
                    raise OSError(exc.errno, f"{endpoint} (TCP): {exc.strerror}") from None
        listener = UdpListener(self.responder, udp, limiter=self.limiter, batched=self.fast is not None,
                               ready_batch=self._ready_batch)
        listener.start()
        self._udp.append(listener)
        self._tcp.append(server)
        self.bound.append(Endpoint(endpoint.host, port))

    def _spread(self, udp: socket.socket) -> None:
        try:
            spread_at_random(udp, self.config.workers)
        except OSError as exc:
            log.warning("workers get queries by client address and port, not at random: %s", exc.strerror or exc)

    async def stop(self) -> None:
        for server in self._tcp:
            server.close()
        await asyncio.gather(self._tcp_listener.drain(), *(u.drain() for u in self._udp))
        for listener in self._udp:
            listener.close()
        self.forwarder.close()
        await asyncio.to_thread(self.files.stop)
        if self.docker is not None:
            await asyncio.to_thread(self.docker.stop)
        if self.http is not None:
            self.http.stop()
        if self.families is not None:
            self.families.stop()

    def reload(self) -> None:
        """SIGHUP: re-read every watched file now, changed-looking or not."""
        log.info("reload requested")
        self.files.rescan(force=True)
        self.upstreams.refresh()


def fast_path_mode(config: Config) -> tuple[bool, bool]:
    """Whether the fast path answers in front of the handler (not with --no-fast-path), and
    whether it may answer a whole batch of datagrams in place: not under --rate-limit, where each
    datagram must pass the limiter first, nor with --log-queries, where each reply is logged."""
    return config.fast_path, config.fast_path and not config.rate_limit and not config.log_queries


async def _serve_until_signal(sidecar: Sidecar) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: loop.run_in_executor(None, sidecar.reload))
    await sidecar.start()
    await stop.wait()
    log.info("stopping")
    await sidecar.stop()


def _event_loop_runner():
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def run(config: Config, resolvers: Sequence[Resolver] = ()) -> int:
    """Serve until SIGTERM/SIGINT (one process, or a supervisor and --workers); the exit code."""
    configure_logging(config.log_level, config.log_format)
    if config.workers == 1:
        return _serve(config, resolvers, 0)
    log.info("starting %d workers on %s", config.workers, ", ".join(map(str, config.listen)))
    peers = _metrics_directory(config)
    try:
        return Supervisor(config.workers, lambda worker: _serve(config, resolvers, worker, True, peers)).run()
    finally:
        if peers is not None:
            shutil.rmtree(peers, ignore_errors=True)


def _metrics_directory(config: Config) -> str | None:
    """Where workers 1 to N-1 hand worker 0 their metrics, made 0700 before any worker exists.
    None without --http, or when no temporary directory can be made (a read-only root file
    system with no tmpfs): then /metrics counts worker 0's share only, and the log says so."""
    if not config.http:
        return None
    try:
        return tempfile.mkdtemp(prefix="dns-sidecar-workers-")
    except OSError as exc:
        log.warning("no directory for the workers' metrics (%s): /metrics counts worker 0's queries only", exc)
        return None


def _serve(config: Config, resolvers: Sequence[Resolver], worker: int, tagged: bool = False,
           peers: str | None = None) -> int:
    if tagged:
        configure_logging(config.log_level, config.log_format, worker)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *gc.get_threshold()[1:])
    try:
        _event_loop_runner()(_serve_until_signal(Sidecar(config, resolvers, worker, peers)))
    except OSError as exc:
        log.error("cannot listen: %s", exc)
        return 1
    return 0

