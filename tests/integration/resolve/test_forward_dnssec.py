"""A signed zone served by a real Knot DNS on loopback, behind the sidecar: RRSIGs reach a DO
client untouched (they still validate against the zone's DNSKEY), a client without DO gets none,
and negative answers are cached for the SOA minimum (RFC 2308)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.dnssec
import dns.flags
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from tests.helpers.process import Daemon, query
from tests.helpers.servers import knot_serving

ZONE = """$ORIGIN signed.test.
$TTL 300
@    IN SOA ns.signed.test. admin.signed.test. 1 3600 600 86400 60
@    IN NS  ns.signed.test.
ns   IN A   192.0.2.53
www  IN A   192.0.2.80
alias IN CNAME www
"""


@pytest.fixture
def knot(tmp_path: Path) -> Iterator[Daemon]:
    """knotd serving signed.test on 127.0.0.4, signing it itself at start (automatic DNSSEC)."""
    with knot_serving(tmp_path, "signed.test", ZONE, "www.signed.test", signing=True) as daemon:
        yield daemon


def rrsets(reply, rdtype: str) -> list:
    return [r for r in reply.answer if r.rdtype == dns.rdatatype.from_text(rdtype)]


def test_dnssec_records_pass_through_and_validate(knot, sidecar) -> None:
    server = sidecar("--forward", f"signed.test={knot.host}:{knot.port}")
    reply = server.query("www.signed.test", want_dnssec=True)
    assert reply.rcode() == dns.rcode.NOERROR
    assert reply.ednsflags & dns.flags.DO
    (a_set,) = rrsets(reply, "A")
    (sig_set,) = rrsets(reply, "RRSIG")
    keys = server.query("signed.test", "DNSKEY", want_dnssec=True, tcp=True)
    (key_set,) = rrsets(keys, "DNSKEY")
    dns.dnssec.validate(a_set, sig_set, {dns.name.from_text("signed.test."): key_set})

    plain = server.query("www.signed.test")
    assert rrsets(plain, "A") and not rrsets(plain, "RRSIG")


def test_negative_answers_cached_for_the_soa_minimum(knot, sidecar) -> None:
    server = sidecar("--forward", f"signed.test={knot.host}:{knot.port}")
    nx = server.query("missing.signed.test")
    nodata = server.query("www.signed.test", "AAAA")
    assert nx.rcode() == dns.rcode.NXDOMAIN and nodata.rcode() == dns.rcode.NOERROR and not nodata.answer
    for reply in (nx, nodata):
        (soa,) = [r for r in reply.authority if r.rdtype == dns.rdatatype.SOA]
        assert 0 < soa.ttl <= 60  # the SOA minimum, not the zone's 300 s TTL
    knot.stop()  # only the cache can answer from here on
    again = server.query("missing.signed.test")
    assert again.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in again.authority] == [dns.rdatatype.SOA]
    assert again.authority[0].ttl <= 60
    assert server.query("www.signed.test", "AAAA").rcode() == dns.rcode.NOERROR


def test_negative_proofs_and_cname_chains_pass_whole(knot, sidecar) -> None:
    """The scrubber keeps what a real signed zone sends: an NXDOMAIN's and a NODATA's SOA, NSEC
    records and their RRSIGs, and a CNAME chain with its signatures, as Knot sends them."""
    server = sidecar("--forward", f"signed.test={knot.host}:{knot.port}")
    for name, rdtype in (("missing.signed.test", "A"), ("www.signed.test", "TXT"), ("alias.signed.test", "A")):
        direct = query(knot.host, knot.port, name, rdtype, want_dnssec=True)
        relayed = server.query(name, rdtype, want_dnssec=True)
        assert relayed.rcode() == direct.rcode()
        for section in ("answer", "authority"):
            assert sorted(map(str, getattr(relayed, section))) == sorted(map(str, getattr(direct, section)))
        assert any(r.rdtype == dns.rdatatype.RRSIG for r in relayed.authority or relayed.answer)
