"""The window into a running sidecar (`--http ADDR:PORT`): /healthz, /metrics, /records and a
small self-refreshing page. It runs on its own threads (`httpd`), so a slow scrape never holds up
the event loop. Only clients the DNS access policy serves are answered; with --http-token,
everything but /healthz also wants that bearer token. Handlers only read the sidecar's `Status`
(an immutable zone, plain integer counts), so they take no lock."""

from __future__ import annotations

import hmac
import html
import json
import logging
from functools import partial

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ..dns.names import type_name
from ..net.endpoint import Endpoint
from .collector import registry_for
from .httpd import BoundedHttpServer, Request, Response
from .status import Status

log = logging.getLogger(__name__)
REFRESH_SECONDS = 5


def health_problems(status: Status) -> list[str]:
    """Why the sidecar is not ready yet; empty when listeners are up and every source has loaded
    once. A Docker source that lost its connection after loading keeps serving its last records,
    so only one that never loaded counts."""
    problems = []
    if not status.bound():
        problems.append("DNS listeners not up yet")
    docker = status.docker()
    if docker is not None and docker.resyncs == 0:
        problems.append(f"Docker source has not listed the containers of {docker.base_url} yet")
    return problems


def records_json(status: Status) -> list[dict]:
    """Every record of the live zone with where it came from, in a stable order."""
    rows = [{"name": r.name, "type": type_name(r.rtype), "value": r.text, "ttl": r.ttl, "view": r.view,
             "origin": r.origin, "health": r.health} for r in status.zone().records]
    rows.sort(key=lambda row: (row["name"], row["type"], row["view"] or "", row["value"]))
    return rows


def counters(status: Status) -> list[tuple[str, str]]:
    """The handful of figures the page shows above the table."""
    zone = status.zone()
    by_rcode = status.metrics.totals_by_rcode(status.packets.hits)
    connected = status.docker_connected()
    rows = [
        ("queries", str(sum(by_rcode.values()))),
        *((f"queries {rcode}", str(count)) for rcode, count in sorted(by_rcode.items())),
        ("packet cache hits", str(status.packets.total_hits())),
        ("answer cache hits", str(status.answers.hits)),
        ("records", str(len(zone.records))),
        ("zone swaps", str(zone.generation)),
        ("file reloads", str(status.files.reloads)),
        ("file reload errors", str(status.files.errors)),
        ("upstreams", ", ".join(map(str, status.upstreams())) or "none"),
    ]
    if connected is not None:
        rows.append(("docker", "connected" if connected else "disconnected"))
    return rows


def page(status: Status) -> str:
    """The records table and the counters as plain HTML that reloads itself (no script)."""
    esc = html.escape
    problems = health_problems(status)
    state = "healthy" if not problems else "not ready: " + "; ".join(problems)
    counter_rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in counters(status))
    record_rows = "".join(
        "<tr>" + "".join(f"<td>{esc(str(row[col] if row[col] is not None else ''))}</td>"
                         for col in ("name", "type", "value", "ttl", "view", "origin")) + "</tr>"
        for row in records_json(status))
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
<p id="status">{esc(state)}</p>
<table id="counters"><tbody>{counter_rows}</tbody></table>
<table id="records">
<thead><tr><th>name</th><th>type</th><th>value</th><th>TTL</th><th>view</th><th>from</th></tr></thead>
<tbody>{record_rows}</tbody>
</table>
</body></html>
"""


BEARER = "bearer "
OPEN_PATHS = ("/healthz",)  # what a trusted client gets without the token: readiness, nothing more


def respond(status: Status, registry: CollectorRegistry, token: str | None, request: Request) -> Response:
    """The reply to one request: 403 for a client the access policy refuses, 401 without the
    token (when one is set) everywhere but /healthz, else the endpoint's content."""
    if not request.trusted:
        return Response(403, b"forbidden\n")
    if request.method not in ("GET", "HEAD"):
        return Response(405, b"only GET and HEAD\n", headers=(("Allow", "GET, HEAD"),))
    if token is not None and request.path not in OPEN_PATHS and not _bears(request, token):
        return Response(401, b"a bearer token is required\n", headers=(("WWW-Authenticate", "Bearer"),))
    if request.path == "/healthz":
        problems = health_problems(status)
        return Response(503 if problems else 200, (("\n".join(problems) if problems else "ok") + "\n").encode())
    if request.path == "/metrics":
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)
    if request.path == "/records":
        return Response(200, (json.dumps(records_json(status), indent=1) + "\n").encode(), "application/json")
    if request.path == "/":
        return Response(200, page(status).encode(), "text/html; charset=utf-8")
    return Response(404, b"not found: try /, /healthz, /metrics or /records\n")


def _bears(request: Request, token: str) -> bool:
    """The request's `Authorization: Bearer` credential is the token (compared in constant time)."""
    given = request.headers.get("authorization", "")
    if given[:len(BEARER)].lower() != BEARER:
        return False
    return hmac.compare_digest(given[len(BEARER):].strip().encode(), token.encode())


class HttpServer:
    """The window on a `BoundedHttpServer`: clients trusted as the DNS access policy trusts them,
    /metrics from `collector`. `start()` binds (port 0 picks a free one, see `bound`)."""

    def __init__(self, endpoint: Endpoint, status: Status, collector: Collector, token: str | None = None) -> None:
        self._server = BoundedHttpServer(endpoint, partial(respond, status, registry_for(collector), token),
                                         status.allows)
        self.bound: Endpoint | None = None

    def start(self) -> None:
        self._server.start()
        self.bound = self._server.bound
        log.info("HTTP on http://%s/ (/healthz, /metrics, /records)", self.bound)

    def stop(self) -> None:
        self._server.stop()
