"""`addr[:port]` as flags and resolv.conf spell it, for listeners and upstreams alike."""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class Endpoint(NamedTuple):
    """A tuple, not a dataclass: endpoints key the per-upstream dicts and in-flight questions of
    the forwarding hot path, and a tuple hashes in C."""

    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_endpoint(text: str, default_port: int = 53) -> Endpoint:
    """`192.0.2.1`, `192.0.2.1:5353`, `::1`, `[::1]:5353`; raises ValueError with the reason."""
    text = text.strip()
    host, port = text, str(default_port)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"missing ']' in {text!r}")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"junk after ']' in {text!r}")
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"{host!r} is not an IP address") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"bad port {port!r}")
    return Endpoint(str(address), int(port))
