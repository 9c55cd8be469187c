"""The window into a running sidecar (`--http ADDR:PORT`): /healthz, /metrics, /records and a
small self-refreshing page.

It runs on its own thread with the standard library's HTTP server, so a slow scrape never
holds up the event loop that answers DNS. Every handler only reads: the zone is immutable and
replaced whole, and the counters are plain integers."""

from __future__ import annotations

import html
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from .endpoint import Endpoint
from .metrics import docker_connected, registry_for
from .records import type_name

if TYPE_CHECKING:
    from .app import Sidecar

log = logging.getLogger(__name__)
REFRESH_SECONDS = 5


def health_problems(sidecar: Sidecar) -> list[str]:
    """Why the sidecar is not ready yet; empty when listeners are up and every source has loaded
    once. A Docker source that lost its connection after loading keeps serving its last records,
    so only one that never loaded counts."""
    problems = []
    if not sidecar.bound:
        problems.append("DNS listeners not up yet")
    if sidecar.docker is not None and sidecar.docker.resyncs == 0:
        problems.append(f"Docker source has not listed the containers of {sidecar.docker.base_url} yet")
    return problems


def records_json(sidecar: Sidecar) -> list[dict]:
    """Every record of the live zone with where it came from, in a stable order."""
    rows = [{"name": r.name, "type": type_name(r.rtype), "value": r.text, "ttl": r.ttl, "view": r.view,
             "origin": r.origin, "health": r.health} for r in sidecar.store.zone.records]
    rows.sort(key=lambda row: (row["name"], row["type"], row["view"] or "", row["value"]))
    return rows


def counters(sidecar: Sidecar) -> list[tuple[str, str]]:
    """The handful of figures the page shows above the table."""
    zone = sidecar.store.zone
    by_rcode = sidecar.metrics.totals_by_rcode(sidecar.handler.packets.hits)
    connected = docker_connected(sidecar)
    rows = [
        ("queries", str(sum(by_rcode.values()))),
        *((f"queries {rcode}", str(count)) for rcode, count in sorted(by_rcode.items())),
        ("packet cache hits", str(sidecar.handler.packets.total_hits())),
        ("answer cache hits", str(sidecar.forwarder.cache.hits)),
        ("records", str(len(zone.records))),
        ("zone swaps", str(zone.generation)),
        ("file reloads", str(sidecar.files.reloads)),
        ("file reload errors", str(sidecar.files.errors)),
        ("upstreams", ", ".join(map(str, sidecar.upstreams())) or "none"),
    ]
    if connected is not None:
        rows.append(("docker", "connected" if connected else "disconnected"))
    return rows


def page(sidecar: Sidecar) -> str:
    """The records table and the counters as plain HTML that reloads itself (no script)."""
    esc = html.escape
    problems = health_problems(sidecar)
    status = "healthy" if not problems else "not ready: " + "; ".join(problems)
    counter_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in counters(sidecar))
    record_rows = "".join(
        "<tr>" + "".join(f"<td>{esc(str(row[col] if row[col] is not None else ''))}</td>"
                         for col in ("name", "type", "value", "ttl", "view", "origin")) + "</tr>"
        for row in records_json(sidecar))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>dns-sidecar</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1.5em; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; font-family: monospace; }}
thead th {{ background: #eee; }}
#status {{ font-weight: bold; }}
</style></head>
<body>
<h1>dns-sidecar</h1>
<p id="status">{esc(status)}</p>
<table id="counters"><tbody>{counter_rows}</tbody></table>
<table id="records">
<thead><tr><th>name</th><th>type</th><th>value</th><th>TTL</th><th>view</th><th>from</th></tr></thead>
<tbody>{record_rows}</tbody>
</table>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        sidecar = self.server.sidecar
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            problems = health_problems(sidecar)
            self._send(503 if problems else 200, "text/plain; charset=utf-8",
                       ("\n".join(problems) if problems else "ok") + "\n")
        elif path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path == "/records":
            self._send(200, "application/json", json.dumps(records_json(sidecar), indent=1) + "\n")
        elif path == "/":
            self._send(200, "text/html; charset=utf-8", page(sidecar))
        else:
            self._send(404, "text/plain; charset=utf-8", "not found: try /, /healthz, /metrics or /records\n")

    def _send(self, status: int, content_type: str, body: str | bytes) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("http %s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: Endpoint, sidecar: Sidecar) -> None:
        if ":" in endpoint.host:
            self.address_family = socket.AF_INET6
        super().__init__((endpoint.host, endpoint.port), _Handler)
        self.sidecar = sidecar
        self.registry = registry_for(sidecar.collector)


class HttpServer:
    """`start()` binds (port 0 picks a free one, see `bound`) and serves from a daemon thread."""

    def __init__(self, endpoint: Endpoint, sidecar: Sidecar) -> None:
        self._endpoint = endpoint
        self._sidecar = sidecar
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.bound: Endpoint | None = None

    def start(self) -> None:
        self._server = _Server(self._endpoint, self._sidecar)
        self.bound = Endpoint(self._endpoint.host, self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)
        self._thread.start()
        log.info("HTTP on http://%s/ (/healthz, /metrics, /records)", self.bound)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
