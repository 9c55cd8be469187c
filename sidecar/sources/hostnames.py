"""Pure: the host's own names (`--host-name`, default `host.docker.internal`) as records.

A container reaches the host at its network's gateway, so a client inside a Docker network gets
that network's gateway address; everyone else (the host view) gets `--host-address`, else
127.0.0.1."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from dnslib import QTYPE

from ..zone.records import ZoneRecord

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_HOST_NAMES = ("host.docker.internal.",)
LOOPBACK = "127.0.0.1"
ORIGIN = "--host-name"
TTL = 10


def _address(name: str, address: Address, view: str | None) -> ZoneRecord:
    return ZoneRecord(name, QTYPE.A if address.version == 4 else QTYPE.AAAA, TTL, address.packed, ORIGIN, view)


def host_name_records(names: Iterable[str], host_addresses: Iterable[str],
                      gateways: Mapping[str, tuple[Address, ...]]) -> tuple[ZoneRecord, ...]:
    """Each name in the host view and in every network whose gateway is known."""
    outside = [ipaddress.ip_address(a) for a in host_addresses] or [ipaddress.ip_address(LOOPBACK)]
    records: list[ZoneRecord] = []
    for name in names:
        records += [_address(name, address, None) for address in outside]
        for network in sorted(gateways):
            records += [_address(name, address, network) for address in gateways[network]]
    return tuple(records)
