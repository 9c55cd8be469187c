"""Replies that leave from the address their query was sent to, on a socket bound to a wildcard
address: the query brings its destination (IP_PKTINFO / IPV6_PKTINFO), the reply names it as
its source. Otherwise the kernel picks the source the route prefers, and clients drop answers
from an address they did not ask."""

from __future__ import annotations

import socket
import struct

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Linux's value; Python does not export it
_IN_PKTINFO = struct.Struct("=I4s4s")  # ifindex, spec_dst (source to use), addr (where it was sent)
_IN6_PKTINFO = struct.Struct("=16sI")  # addr, ifindex
Ancillary = list[tuple[int, int, bytes]]


def reply_source(ancdata: Ancillary) -> Ancillary:
    """From a query's IP_PKTINFO/IPV6_PKTINFO, the ancillary data that makes the reply leave from
    the address the query was sent to (empty when the query brought none)."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
            _, _, destination = _IN_PKTINFO.unpack_from(data)
            return [(level, kind, _IN_PKTINFO.pack(0, destination, bytes(4)))]
        if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
            destination, _ = _IN6_PKTINFO.unpack_from(data)
            return [(level, kind, _IN6_PKTINFO.pack(destination, 0))]
    return []
