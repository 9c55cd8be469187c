"""Presentation formats BIND reads that dnspython has no class for, registered with dnspython
(which then parses and packs them like its own): the RFC 1035 mailbox types MB, MG, MR and
MINFO, TALINK and TA. Each has the wire form of a type dnspython knows."""

from __future__ import annotations

import dns.rdata
import dns.rdataclass
import dns.rdatatype
from dns.rdtypes.ANY.RP import RP
from dns.rdtypes.dsbase import DSBase
from dns.rdtypes.nsbase import NSBase


class MB(NSBase):
    """RFC 1035 3.3.3: one mailbox host name."""


class MG(NSBase):
    """RFC 1035 3.3.6: one mail group member."""


class MR(NSBase):
    """RFC 1035 3.3.8: one renamed mailbox."""


class MINFO(RP):
    """RFC 1035 3.3.7: the responsible and the error mailbox, two names as RP has."""


class TALINK(RP):
    """The previous and next name of a trust anchor history, two names as RP has."""


class TA(DSBase):
    """A DNSSEC trust anchor, in DS form."""


_TYPES: dict[int, type[dns.rdata.Rdata]] = {7: MB, 8: MG, 9: MR, 14: MINFO, 58: TALINK, 32768: TA}


def register() -> None:
    """Teach dnspython these types for class IN (a second call finds them known)."""
    for code, cls in _TYPES.items():
        if dns.rdata.get_rdata_class(dns.rdataclass.IN, code) is dns.rdata.GenericRdata:
            dns.rdata.register_type(cls, code, cls.__name__)
