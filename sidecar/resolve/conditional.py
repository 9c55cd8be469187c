"""Conditional forwarding: `--forward corp.example=10.1.2.3,10.1.2.4` sends a domain and its
subdomains to their own upstreams (a VPN's zones, `consul.`); the most specific domain wins."""

from __future__ import annotations

from collections.abc import Sequence

from ..net.endpoint import Endpoint

Rule = tuple[str, tuple[Endpoint, ...]]


class ConditionalForwards:
    def __init__(self, rules: Sequence[Rule]) -> None:
        self._by_domain: dict[str, tuple[Endpoint, ...]] = {}
        for domain, upstreams in rules:
            self._by_domain[domain] = self._by_domain.get(domain, ()) + tuple(upstreams)

    def __bool__(self) -> bool:
        return bool(self._by_domain)

    def upstreams_for(self, qname: str) -> tuple[Endpoint, ...] | None:
        """The upstreams of the longest domain that is `qname` or one of its parents, None when no
        rule covers it. `qname` is normalized (lower-case, trailing dot)."""
        if not self._by_domain:
            return None
        name = qname
        while True:
            found = self._by_domain.get(name)
            if found is not None:
                return found
            if name == ".":
                return None
            name = name.split(".", 1)[1] or "."
