"""Which names a container may claim: the one rule every container name passes through.

A container is anyone who can start one, not the operator, so its names are answered only under
the domains the operator chose or those reserved for private use, and never `localhost`, a public
suffix or a wildcard over one (docs/security-edges.md). The operator's own data (`--record`,
hosts files, zonefiles) never passes through here."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from publicsuffixlist import PublicSuffixList

from ..zone.records import is_subdomain

PRIVATE_USE = ("test.", "example.", "invalid.", "internal.", "home.arpa.")
LOOPBACK = "localhost."


@cache
def _public_suffixes() -> PublicSuffixList:
    """The bundled list, parsed once per process."""
    return PublicSuffixList()


class NamePolicy:
    """`refusal(name)` says why a container may not claim `name` (normalized, absolute), or None."""

    def __init__(self, domains: Iterable[str], label_domains: Iterable[str] = ()) -> None:
        self.allowed = tuple(dict.fromkeys((*domains, *PRIVATE_USE, *label_domains)))

    def refusal(self, name: str) -> str | None:
        """Allowed: names under `--domain`, `PRIVATE_USE` (RFC 6761, ICANN's `internal`, RFC 8375)
        and `--label-domain`. Refused even there: `localhost`, a bare top-level domain, a public
        suffix and a wildcard directly over one. Public suffixes are those of the Public Suffix List
        bundled by `publicsuffixlist` (ICANN and private sections; an unlisted top-level domain too)."""
        if is_subdomain(name, LOOPBACK):
            return "localhost is loopback's alone"
        if name.count(".") < 2:
            return "a bare top-level domain"
        if not any(is_subdomain(name, zone) for zone in self.allowed):
            return f"not under a domain containers may claim ({', '.join(self.allowed)})"
        public = _public_suffixes()
        if name.startswith("*."):
            parent = name[2:]
            return f"a wildcard over the public suffix {parent}" if public.is_public(parent[:-1]) else None
        return "a public suffix" if public.is_public(name[:-1]) else None
