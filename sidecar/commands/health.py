"""`dns-sidecar health`: is the server that runs beside me answering? (The image's HEALTHCHECK.)

It asks one CHAOS-class question over UDP. The server refuses every non-IN class itself, before
any resolver or upstream is involved, so a reply proves the listener and the query path are
alive without sending anything past the sidecar. With `--http`, /healthz must also say 200
(listeners up and every source loaded once)."""

from __future__ import annotations

import secrets
import socket
import sys
import urllib.error
import urllib.request

from dnslib import CLASS, QTYPE, DNSError, DNSQuestion, DNSRecord

from ..net.endpoint import Endpoint

_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def reachable(endpoint: Endpoint) -> Endpoint:
    """A server listening on every address is asked over loopback."""
    return Endpoint(_WILDCARDS.get(endpoint.host, endpoint.host), endpoint.port)


def dns_answers(endpoint: Endpoint, timeout: float) -> str | None:
    """None when the server answered our question; else why not."""
    target = reachable(endpoint)
    request = DNSRecord(q=DNSQuestion("health.dns-sidecar.", QTYPE.TXT, CLASS.CH))
    request.header.id = secrets.randbelow(65536)
    family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect((target.host, target.port))
            sock.send(request.pack())
            while True:
                reply = DNSRecord.parse(sock.recv(4096))
                if reply.header.id == request.header.id and reply.header.qr:
                    return None
        except TimeoutError:
            return f"no DNS reply from {target} within {timeout:g}s"
        except OSError as exc:
            return f"DNS query to {target} failed: {exc.strerror or exc}"
        except DNSError as exc:
            return f"unreadable DNS reply from {target}: {exc}"


def http_healthy(endpoint: Endpoint, timeout: float) -> str | None:
    """None when /healthz says 200; else its reason."""
    target = reachable(endpoint)
    url = f"http://{target}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return f"{url}: {exc.code} {exc.read().decode(errors='replace').strip()}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{url}: {getattr(exc, 'reason', exc)}"


def run_health(listen: Endpoint, http: Endpoint | None, timeout: float) -> int:
    problem = dns_answers(listen, timeout) or (http_healthy(http, timeout) if http else None)
    if problem:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    print("healthy")
    return 0
