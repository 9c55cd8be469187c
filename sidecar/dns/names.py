"""Names of DNS codes for logs, metrics and pages: the mnemonic where one exists, else the
generic RFC 3597 form."""

from __future__ import annotations

from dnslib import QTYPE, RCODE


def type_name(rtype: int) -> str:
    return QTYPE.get(rtype, f"TYPE{rtype}")


def rcode_name(rcode: int) -> str:
    return str(RCODE.get(rcode, f"RCODE{rcode}"))
