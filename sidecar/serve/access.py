"""Who may ask. Not an open resolver, even when listening on 0.0.0.0: by default only loopback
clients and clients inside the networks the zone knows (Docker networks the sidecar sees,
`--view` ranges) are served; `--allow CIDR` adds more. Everyone else is REFUSED, or with
`--local-to-any` gets answers for local names only (never the forwarder)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

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
