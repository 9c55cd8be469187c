"""Who may read the HTTP window, and what its connections may cost: a stranger the DNS access
policy refuses gets 403 from a private network namespace, --http-token guards everything but
/healthz, and hundreds of idle connections hold no threads and are closed."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bench.daemons import free_port
from tests.helpers.netns import in_ns
from tests.helpers.process import Daemon, start_daemon, wait_for

TOKEN = "s3cret-Token_1~"


def get(endpoint: str, path: str, authorization: str | None = None) -> tuple[int, str, dict[str, str]]:
    """Status, body and headers of one GET (http.client: headers of our choosing)."""
    host, port = endpoint.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path, headers={"Authorization": authorization} if authorization else {})
        response = conn.getresponse()
        return response.status, response.read().decode(), dict(response.getheaders())
    finally:
        conn.close()


def threads(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads:")))


def test_a_stranger_refused_by_dns_gets_403_from_http_too(namespace, tmp_path):
    for address in ("192.0.2.1/32", "192.0.2.2/32"):  # a "LAN" address for the server and a client
        subprocess.run(in_ns(namespace, "ip", "addr", "add", address, "dev", "lo"), check=True)

    def serve(*extra: str) -> Daemon:
        log = tmp_path / f"sidecar{len(extra)}.log"
        argv = in_ns(namespace, sys.executable, "-m", "sidecar", "--no-docker", "--listen", "0.0.0.0:53",
                     "--http", "0.0.0.0:9153", "--record", "secret.test. 60 IN A 192.0.2.10",
                     "--upstream", "127.0.0.254:5", *extra)
        daemon = Daemon(start_daemon(argv, log), log)
        wait_for(lambda: "listening on" in daemon.log_text() or daemon.proc.poll() is not None, what="sidecar")
        assert daemon.proc.poll() is None, daemon.log_text()
        return daemon

    def read_all(source: str, server: str = "192.0.2.1") -> dict[str, list]:
        """Status and body of every endpoint, asked from `source` inside the namespace."""
        code = ("import http.client, json; out = {}\n"
                "for path in ('/', '/records', '/metrics', '/healthz'):\n"
                f"    c = http.client.HTTPConnection('{server}', 9153, timeout=5, source_address=('{source}', 0))\n"
                "    c.request('GET', path); r = c.getresponse(); out[path] = [r.status, r.read().decode()]\n"
                "print(json.dumps(out))")
        result = subprocess.run(in_ns(namespace, sys.executable, "-c", code), capture_output=True, text=True,
                                timeout=30)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    server = serve()
    try:
        stranger = read_all("192.0.2.2")
        assert stranger == {path: [403, "forbidden\n"] for path in ("/", "/records", "/metrics", "/healthz")}
        local = read_all("127.0.0.1", "127.0.0.1")
        assert {path: status for path, (status, _) in local.items()} == dict.fromkeys(local, 200)
        assert "secret.test." in local["/records"][1]
    finally:
        server.stop()
    server = serve("--allow", "192.0.2.0/24")
    try:
        assert "secret.test." in read_all("192.0.2.2")["/records"][1]
    finally:
        server.stop()


def test_the_token_guards_everything_but_healthz(sidecar):
    endpoint = f"127.0.0.1:{free_port()}"
    daemon = sidecar("--http", endpoint, env={"DNS_SIDECAR_HTTP_TOKEN": TOKEN})
    for path, found in (("/", 200), ("/records", 200), ("/metrics", 200), ("/nowhere", 404)):
        status, body, headers = get(endpoint, path)
        assert (status, body, headers["WWW-Authenticate"]) == (401, "a bearer token is required\n", "Bearer"), path
        assert get(endpoint, path, "Bearer wrong-token")[0] == 401
        assert get(endpoint, path, f"Basic {TOKEN}")[0] == 401
        assert get(endpoint, path, f"Bearer {TOKEN}x")[0] == 401
        assert get(endpoint, path, f"Bearer {TOKEN}")[0] == found
        assert get(endpoint, path, f"bearer {TOKEN}")[0] == found  # the scheme is case-insensitive
    assert get(endpoint, "/healthz")[:2] == (200, "ok\n")
    # The image's HEALTHCHECK (`dns-sidecar health` with DNS_SIDECAR_HTTP set) still passes.
    health = subprocess.run([sys.executable, "-m", "sidecar", "health", "--listen", f"{daemon.host}:{daemon.port}",
                             "--http", endpoint], capture_output=True, text=True, timeout=20, check=False)
    assert (health.returncode, health.stdout) == (0, "healthy\n"), health.stderr


@pytest.mark.slow
def test_idle_connections_hold_no_thread_and_are_closed(sidecar):
    endpoint = f"127.0.0.1:{free_port()}"
    daemon = sidecar("--http", endpoint)
    assert get(endpoint, "/healthz")[0] == 200  # the first reply starts a render thread
    before = threads(daemon.proc.pid)
    host, port = endpoint.rsplit(":", 1)
    idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(500)]
    try:
        assert get(endpoint, "/healthz")[0] == 200  # a real client still gets in, after all 500
        assert threads(daemon.proc.pid) <= before + 1  # at most the render pool's second thread
        closed = 0
        for sock in idle:  # the oldest at once (the cap), the rest when the idle timeout ends
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
        assert closed == 500
    finally:
        for sock in idle:
            sock.close()
