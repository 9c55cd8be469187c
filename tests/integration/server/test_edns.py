"""EDNS (RFC 6891) and header handling, side by side with a real Knot DNS serving the same zone:
every probe (EDNS versions, unknown options and flags, the header's Z bit, opcodes, DO, CD, AD,
truncation, small buffer sizes) gets the same rcode, flags and OPT record from both, the second
time too (when the packet cache answers). Where the two may differ by design: we offer
recursion (RA) and copy CD as RFC 4035 3.1.6 says, where Knot, authoritative only, does neither;
and NOTIFY is not implemented here (NOTIMP) where Knot, a primary, refuses it (NOTAUTH)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import pytest

from tests.helpers.process import Daemon
from tests.helpers.servers import knot_serving, sidecars

ZONE = """$ORIGIN probe.test.
$TTL 300
@    SOA ns admin 1 3600 600 86400 60
@    NS  ns
ns   A   192.0.2.53
www  A   192.0.2.80
""" + "".join(f'big TXT "{"x" * 200}{i}"\n' for i in range(20))
# What a reply may differ in by design (see the module's docstring).
BY_DESIGN = dns.flags.RA | dns.flags.CD


def make(name: str = "www.probe.test", rdtype: str = "A", flags: int = 0, opcode: int = 0,
         **edns) -> Callable[[], dns.message.Message]:
    """A probe: a query built afresh each time it is sent."""

    def build() -> dns.message.Message:
        query = dns.message.make_query(name, rdtype, **edns)
        query.flags = query.flags & ~dns.flags.RD if flags < 0 else query.flags | flags
        query.set_opcode(opcode)
        return query

    return build


PROBES = {
    "no EDNS": make(use_edns=False),
    "EDNS 0": make(use_edns=0),
    "EDNS 1": make(use_edns=1),
    "EDNS 1 for a missing name": make("nx.probe.test", use_edns=1),
    "EDNS 255": make(use_edns=255),
    "EDNS 1 with DO": make(use_edns=1, want_dnssec=True),
    "EDNS 1 with an unknown option": make(use_edns=1, options=[dns.edns.GenericOption(65001, b"x")]),
    "EDNS 1 with an unknown flag": make(use_edns=1, ednsflags=0x4000),
    "unknown option": make(use_edns=0, options=[dns.edns.GenericOption(65001, b"x")]),
    "unknown flag": make(use_edns=0, ednsflags=0x4000),
    "unknown flags, every one": make(use_edns=0, ednsflags=0x7FFF),
    "cookie": make(use_edns=0, options=[dns.edns.GenericOption(10, b"12345678")]),
    "client subnet": make(use_edns=0, options=[dns.edns.ECSOption("192.0.2.0", 24)]),
    "DO": make(use_edns=0, want_dnssec=True),
    "Z bit": make(use_edns=0, flags=0x0040),
    "Z bit without EDNS": make(use_edns=False, flags=0x0040),
    "CD": make(use_edns=0, flags=dns.flags.CD),
    "AD": make(use_edns=0, flags=dns.flags.AD),
    "TC in the query": make(use_edns=0, flags=dns.flags.TC),
    "no RD": make(use_edns=0, flags=-1),
    "EDNS 1 with CD and Z": make(use_edns=1, flags=dns.flags.CD | 0x0040),
    "missing name": make("nx.probe.test", use_edns=0),
    "missing type": make("www.probe.test", "TXT", use_edns=0),
    "buffer below 512": make(use_edns=0, payload=100),
    "truncated, EDNS 512": make("big.probe.test", "TXT", use_edns=0, payload=512),
    "truncated, no EDNS": make("big.probe.test", "TXT", use_edns=False),
    "fits in 4096": make("big.probe.test", "TXT", use_edns=0, payload=4096),
    **{f"opcode {code}": make(opcode=code, use_edns=0) for code in (1, 2, 3, 6, 7, 15)},
    **{f"opcode {code} without EDNS": make(opcode=code, use_edns=False) for code in (1, 2, 6, 15)},
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[tuple[Daemon, Daemon]]:
    """Knot DNS and the sidecar, both serving ZONE."""
    directory = tmp_path_factory.mktemp("edns")
    (directory / "zones").mkdir()
    (directory / "zones" / "probe.test.zone").write_text(ZONE)
    with knot_serving(directory, "probe.test", ZONE, "www.probe.test") as knot, \
            sidecars(tmp_path_factory) as start:
        yield knot, start("--zonefile", directory / "zones")


def ask(server: Daemon, query: dns.message.Message) -> dns.message.Message:
    """One query over UDP; the reply as dnspython reads it (a truncated one included)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        sock.sendto(query.to_wire(), (server.host, server.port))
        data = sock.recv(65535)
    return dns.message.from_wire(data, ignore_trailing=True)


def shape(reply: dns.message.Message) -> dict:
    """What is compared: rcode (extended), flags but those differing by design, opcode, the OPT
    record (version, flags, payload, options), the question and how many records each section has."""
    return {"rcode": dns.rcode.to_text(reply.rcode()), "flags": dns.flags.to_text(reply.flags & ~BY_DESIGN),
            "opcode": dns.opcode.to_text(reply.opcode()), "edns": reply.edns, "ednsflags": hex(reply.ednsflags),
            "payload": reply.payload, "options": [(o.otype, o.to_wire()) for o in reply.options],
            "question": [str(q) for q in reply.question],
            "sections": (len(reply.answer), len(reply.authority), len(reply.additional))}


@pytest.mark.parametrize("probe", PROBES, ids=list(PROBES))
def test_same_rcode_flags_and_opt_as_knot(servers, probe):
    knot, ours = servers
    expected = shape(ask(knot, PROBES[probe]()))
    assert shape(ask(ours, PROBES[probe]())) == expected
    assert shape(ask(ours, PROBES[probe]())) == expected  # again: now from the packet cache


def test_edns1_after_edns0_is_never_answered_from_the_cache(servers):
    _, ours = servers
    assert ask(ours, make(use_edns=0)()).rcode() == dns.rcode.NOERROR
    reply = ask(ours, make(use_edns=1)())
    assert reply.rcode() == dns.rcode.BADVERS and reply.edns == 0 and not reply.answer


def test_where_we_differ_from_knot_by_design(servers):
    knot, ours = servers
    cd = make(use_edns=0, flags=dns.flags.CD)
    assert ask(ours, cd()).flags & dns.flags.CD and not ask(knot, cd()).flags & dns.flags.CD
    assert ask(ours, make()()).flags & dns.flags.RA and not ask(knot, make()()).flags & dns.flags.RA
    notify = make(opcode=dns.opcode.NOTIFY, use_edns=0)
    assert ask(ours, notify()).rcode() == dns.rcode.NOTIMP and ask(knot, notify()).rcode() == dns.rcode.NOTAUTH
    other = ask(ours, make(opcode=15, use_edns=0)())
    assert not other.flags & (dns.flags.AA | dns.flags.RA | dns.flags.AD | dns.flags.TC)
    update = ask(ours, make(opcode=dns.opcode.UPDATE, use_edns=0)())  # Knot's reply here no client reads
    assert update.rcode() == dns.rcode.NOTIMP and not update.question and dns.flags.to_text(update.flags) == "QR RD"
