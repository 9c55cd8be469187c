"""Which names a container may claim: the one rule every container name passes through.

A container is anyone who can start one, not the operator. Its names (its own, its labels, the
peers' labels and env var, hostname.domainname) are answered only when they lie under the
`--domain` domains, under a name reserved for private use (RFC 6761 `test`, `example`,
`invalid`; ICANN's `internal`; RFC 8375 `home.arpa`), or under a `--label-domain` the operator
added. Even there, `localhost` (RFC 6761: always loopback), a bare top-level domain, a public
suffix, and a wildcard directly over a public suffix (`*.com`, `*.co.uk`, `*.test`) are refused.
Public suffixes come from the Public Suffix List bundled by the `publicsuffixlist` package (both
its ICANN and private sections; a top-level domain the list does not name is a suffix too).
The operator's own data (`--record`, hosts files, zonefiles) never passes through here."""

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
