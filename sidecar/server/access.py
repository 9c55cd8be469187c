"""Who may ask. Not an open resolver, even when listening on 0.0.0.0: by default only loopback
clients and clients inside the networks the zone knows (Docker networks the sidecar sees,
`--view` ranges) are served; `--allow CIDR` adds more. Everyone else is REFUSED, or with
`--local-to-any` gets answers for local names only (never the forwarder). A client served is
placed in its views (the split horizon) here too."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from ..zone.store import Store
from ..zone.zone import Network, Zone


class AccessPolicy:
    def __init__(self, allow: Sequence[Network] = (), local_to_any: bool = False) -> None:
        self.allow = tuple(allow)
        self.local_to_any = local_to_any

    def allows(self, client: str, zone: Zone) -> bool:
        try:
            address = ipaddress.ip_address(client.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_loopback:
            return True
        if any(address.version == net.version and address in net for net in self.allow):
            return True
        return bool(zone.views_of(str(address)))


@dataclass(frozen=True, slots=True)
class Placement:
    """Where the split horizon puts a client the policy serves: its views (the networks it asks
    from, most specific first; none for the host view) and those as packet-cache key bytes."""

    views: tuple[str, ...]
    key: bytes


class Clients:
    """Each client's `Placement`, or None when the access policy refuses it: worked out once per
    client address and zone (a zone swap may add or drop networks), at most `MAX_KNOWN` at once."""

    MAX_KNOWN = 65_536

    def __init__(self, store: Store, policy: AccessPolicy) -> None:
        self._store = store
        self.policy = policy
        self._known: dict[str, Placement | None] = {}
        self.generation = -1  # the zone generation `_known` holds placements in

    def place(self, client: str) -> Placement | None:
        zone = self._store.zone
        if zone.generation != self.generation or len(self._known) >= self.MAX_KNOWN:
            self._known.clear()
            self.generation = zone.generation
        found = self._known.get(client, _UNSEEN)
        if found is _UNSEEN:
            found = None
            if self.policy.allows(client, zone):
                views = zone.views_of(client)
                found = Placement(views, ",".join(views).encode())
            self._known[client] = found
        return found


_UNSEEN = Placement((), b"?unseen")
