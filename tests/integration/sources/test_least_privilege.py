"""Least privilege, proven on the wire: the sidecar talks to a real engine through a logging
unix-socket proxy, containers are started, stopped, renamed, connected to networks and the engine
restarted, and every HTTP request the sidecar sent is a bodiless GET (or HEAD) of a read endpoint.
The Docker socket is root on the host; a watcher that only ever reads is one that a read-only
socket proxy can front."""

from __future__ import annotations

import contextlib
import re
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.dockerd import docker_client_fixture, docker_engine_fixture  # noqa: F401 - fixtures
from tests.helpers.process import wait_for
from tests.helpers.swarm import swarm_engine_fixture  # noqa: F401 - fixture
from tests.integration.sources.test_docker import address, eventually, network, run, serve  # noqa: F401 - serve is a fixture
from tests.integration.sources.test_swarm import STACK, stack, swarm_client, task_addresses  # noqa: F401 - fixtures

API = r"(/v[\d.]+)?"
READ_ENDPOINTS = [re.compile(f"^{API}{path}(\\?.*)?$") for path in (
    r"/_ping", r"/version", r"/info", r"/events", r"/containers/json", r"/containers/[^/?]+/json",
    r"/networks", r"/networks/[^/?]+", r"/services", r"/tasks", r"/nodes")]


def shutdown(*socks: socket.socket) -> None:
    """End both directions of a relayed pair; the other pump then sees end of file."""
    for sock in socks:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class LoggingProxy:
    """Accepts on its own unix socket, relays each connection to the engine's socket byte for byte,
    and parses the client's side as HTTP/1.1 requests: (method, target, body length) each."""

    def __init__(self, engine_socket: Path, directory: Path) -> None:
        self.engine_socket = engine_socket
        self.path = directory / "proxy.sock"
        self.url = f"unix://{self.path}"
        self.requests: list[tuple[str, str, int]] = []
        self.unparsed: list[bytes] = []
        self._lock = threading.Lock()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(self.path))
        self._listener.listen(64)
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.engine_socket))
            except OSError:  # the engine is down: the client sees a refused connection, as without us
                client.close()
                upstream.close()
                continue
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            shutdown(source, sink)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Relay the client's bytes while cutting them into requests: a head up to the blank line,
        then a body of Content-Length bytes (a chunked body is logged as unparsed)."""
        buffer = b""
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
                buffer += data
                while (end := buffer.find(b"\r\n\r\n")) >= 0:
                    head = buffer[:end].decode("latin-1").split("\r\n")
                    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
                    if "chunked" in headers.get("transfer-encoding", ""):
                        self.unparsed.append(buffer)
                        buffer = b""
                        break
                    length = int(headers.get("content-length", "0"))
                    if len(buffer) < end + 4 + length:
                        break
                    method, target, _ = [*head[0].split(" "), "", ""][:3]
                    with self._lock:
                        self.requests.append((method, target, length))
                    buffer = buffer[end + 4 + length:]
        except OSError:
            pass
        finally:
            if buffer:
                self.unparsed.append(buffer)
            shutdown(client, upstream)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._open:
                sock.close()


def logging_proxy(engine_socket: Path) -> Iterator[LoggingProxy]:
    directory = Path(tempfile.mkdtemp(prefix="dns-sidecar-proxy-"))  # short: unix socket paths are limited
    proxy = LoggingProxy(engine_socket, directory)
    yield proxy
    proxy.close()
    proxy.path.unlink(missing_ok=True)
    directory.rmdir()


@pytest.fixture
def proxy(docker_engine) -> Iterator[LoggingProxy]:
    yield from logging_proxy(docker_engine.socket)


@pytest.fixture
def swarm_proxy(swarm_engine) -> Iterator[LoggingProxy]:
    yield from logging_proxy(swarm_engine.socket)


def is_read(method: str, target: str, body: int) -> bool:
    return method in ("GET", "HEAD") and body == 0 and any(p.match(target) for p in READ_ENDPOINTS)


def test_read_endpoint_rules_tell_reads_from_writes() -> None:
    assert is_read("GET", "/v1.41/containers/abc123/json", 0)
    assert is_read("GET", "/v1.41/events?filters=%7B%7D", 0)
    assert is_read("GET", "/_ping", 0)
    assert not is_read("POST", "/v1.41/containers/abc123/stop", 0)
    assert not is_read("GET", "/v1.41/containers/abc123/logs", 0)
    assert not is_read("GET", "/v1.41/containers/abc123/archive?path=/", 0)
    assert not is_read("DELETE", "/v1.41/containers/abc123", 0)
    assert not is_read("GET", "/v1.41/containers/json", 12)
    assert is_read("GET", "/v1.41/tasks?filters=%7B%7D", 0)
    assert not is_read("POST", "/v1.41/services/create", 0)
    assert not is_read("POST", "/v1.41/services/abc/update?version=12", 0)
    assert not is_read("GET", "/v1.41/services/abc/logs", 0)
    assert not is_read("DELETE", "/v1.41/nodes/abc", 0)


@pytest.mark.docker
def test_the_sidecar_only_reads_from_the_docker_api(serve, proxy, docker_engine, docker_client) -> None:  # noqa: F811
    server = serve(engine=proxy)
    wait_for(lambda: any("/events" in target for _, target, _ in proxy.requests), what="the event stream opened")
    net = network(docker_client, "lp_net")
    web = run(docker_client, "lp-web", {"dns-sidecar.names": "web.lp.test"}, "lp_net")
    eventually(server, "web.lp.test", [address(web, "lp_net")])
    web.stop()
    eventually(server, "web.lp.test", [])
    web.start()
    web.reload()
    eventually(server, "lp-web.docker", [address(web, "lp_net")])
    web.rename("lp-renamed")
    eventually(server, "lp-renamed.docker", [address(web, "lp_net")])
    other = network(docker_client, "lp_other")
    other.connect(web)
    web.reload()
    net.disconnect(web)
    web.reload()
    eventually(server, "lp-renamed.docker", [address(web, "lp_other")])

    before = len(proxy.requests)
    docker_engine.stop(keep_containers=True)
    wait_for(lambda: "lost the Docker engine" in server.log_text(), what="the engine loss logged")
    docker_engine.start()
    wait_for(lambda: len([t for _, t, _ in proxy.requests[before:] if "/events" in t]) >= 1, timeout=30,
             what="the event stream reopened after the engine restart")
    eventually(server, "lp-renamed.docker", [address(web, "lp_other")])

    requests = list(proxy.requests)
    assert len(requests) >= 8, requests
    assert {target.split("?")[0].split("/", 2)[-1] for _, target, _ in requests} >= {
        "containers/json", "events"}, requests
    print("requests:", sorted({(m, re.sub(r"[0-9a-f]{64}", "<id>", t.split("?")[0])) for m, t, _ in requests}))
    writes = [r for r in requests if not is_read(*r)]
    assert writes == [], f"the sidecar sent more than reads: {writes}"
    assert proxy.unparsed == [], proxy.unparsed


@pytest.mark.docker
def test_the_sidecar_only_reads_from_a_swarm_manager(sidecar, tmp_path, swarm_proxy, swarm_engine,
                                                     swarm_client, stack) -> None:  # noqa: F811
    empty = tmp_path / "resolv.conf"
    empty.write_text("")
    server = sidecar("--resolv-conf", str(empty), docker=True, env={"DOCKER_HOST": swarm_proxy.url})
    wait_for(lambda: "swarm: " in server.log_text(), what="the swarm's first read")
    swarm_engine.cli("service", "scale", "--detach", f"{STACK}_db=3")
    wait_for(lambda: len(task_addresses(swarm_client, "db", "running")) == 3, timeout=30, what="db scaled up")
    swarm_engine.cli("service", "rm", f"{STACK}_db")
    wait_for(lambda: "swarm: 1 services" in server.log_text(), what="the removal read")

    requests = list(swarm_proxy.requests)
    assert {target.split("?")[0].split("/", 2)[-1] for _, target, _ in requests} >= {
        "info", "events", "services", "tasks", "nodes", "networks"}, requests
    writes = [r for r in requests if not is_read(*r)]
    assert writes == [], f"the sidecar sent more than reads: {writes}"
    assert swarm_proxy.unparsed == [], swarm_proxy.unparsed
