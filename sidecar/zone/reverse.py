"""Reverse-lookup names (in-addr.arpa, ip6.arpa) for an address, computed once per record."""

from __future__ import annotations

import ipaddress


def ptr_name(address: ipaddress.IPv4Address | ipaddress.IPv6Address | str) -> str:
    """The normalized PTR owner name for an address."""
    return ipaddress.ip_address(address).reverse_pointer + "."
