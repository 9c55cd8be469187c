"""The zonefile, hosts and --record parsers: every accepted form, and every error located."""

import dns.rdata
import pytest
from dnslib import QTYPE
from hypothesis import given, settings
from hypothesis import strategies as st

from sidecar.errors import ZoneSyntaxError
from sidecar.zone.parse import parse_hosts, parse_record_line, parse_ttl, parse_zone

ZONE = """\
$ORIGIN dev.test.
$TTL 1h
@ IN SOA ns1 admin ( 1 3600   ; serial refresh
        600 86400 60 )        ; retry expire minimum
  IN NS ns1
ns1 A 192.0.2.53
Web 60 IN A 192.0.2.1
    AAAA 2001:db8::1
txt TXT "hello world" "semi;colon" "quote\\"d"
*.wild CNAME web
mx MX 10 mail.example.org.
_http._tcp SRV 0 5 80 web
caa CAA 0 issue "letsencrypt.org"
1.2.0.192.in-addr.arpa. PTR web
"""


def test_every_supported_form():
    warnings: list[str] = []
    records = parse_zone(ZONE, "dev.zone", warnings=warnings)
    got = [(r.name, QTYPE[r.rtype], r.ttl, r.text, r.origin) for r in records]
    assert got == [
        ("dev.test.", "SOA", 3600, "ns1.dev.test. admin.dev.test. 1 3600 600 86400 60", "dev.zone:3"),
        ("dev.test.", "NS", 3600, "ns1.dev.test.", "dev.zone:5"),
        ("ns1.dev.test.", "A", 3600, "192.0.2.53", "dev.zone:6"),
        ("web.dev.test.", "A", 60, "192.0.2.1", "dev.zone:7"),
        ("web.dev.test.", "AAAA", 3600, "2001:db8::1", "dev.zone:8"),
        ("txt.dev.test.", "TXT", 3600, '"hello world" "semi;colon" "quote\\"d"', "dev.zone:9"),
        ("*.wild.dev.test.", "CNAME", 3600, "web.dev.test.", "dev.zone:10"),
        ("mx.dev.test.", "MX", 3600, "10 mail.example.org.", "dev.zone:11"),
        ("_http._tcp.dev.test.", "SRV", 3600, "0 5 80 web.dev.test.", "dev.zone:12"),
        ("caa.dev.test.", "CAA", 3600, '0 issue "letsencrypt.org"', "dev.zone:13"),
    ]
    assert records[5].wire == b"\x0bhello world\x0asemi;colon\x07quote\"d"
    assert warnings == ["dev.zone:14: ignoring out-of-zone data (1.2.0.192.in-addr.arpa.)"]


def test_origin_from_caller_when_file_has_none():
    (record,) = parse_zone("www A 192.0.2.7", "x.zone", origin="example.test")
    assert record.name == "www.example.test."


@pytest.mark.parametrize(("text", "line", "reason"), [
    ("web A 1.2.3", 1, "bad A data '1.2.3'"),
    ("web A 192.0.2.1 5", 1, "bad A data '192.0.2.1 5'"),
    ("web AAAA 192.0.2.1", 1, "bad AAAA data"),
    ("\n\nweb 99999999999 A 192.0.2.1", 3, "TTL 99999999999 is over 2^31-1"),
    ("web 5x A 192.0.2.1", 1, "bad TTL '5x'"),
    ("web FOO x", 1, "unknown RR type 'FOO'"),
    ("$INCLUDE other.zone", 1, "$INCLUDE is not allowed here"),
    ("$FOO x", 1, "unknown $ directive $FOO"),
    ("web MX ten mail", 1, "bad MX data"),
    ("web CH A 192.0.2.1", 1, "class 'CH' != zone class 'IN'"),
    ("a..b A 192.0.2.1", 1, "bad name 'a..b'"),
    ("x" * 64 + " A 192.0.2.1", 1, "bad name"),
    ("web A", 1, "bad A data ''"),
    ("web", 1, "missing record type"),
    ('t TXT "open', 1, "unterminated quoted string"),
    ("@ SOA ns admin ( 1 2 3\n 4 5", 2, "opened on line 1 never closed"),
    ("web A 192.0.2.1 )", 1, "')' without '('"),
    ("  A 192.0.2.1", 1, "record without an owner name"),
    ("web SRV 0 5 80", 1, "bad SRV data '0 5 80'"),
])
def test_errors_name_file_and_line(text, line, reason):
    with pytest.raises(ZoneSyntaxError) as caught:
        parse_zone(text, "bad.zone", origin="o.test")
    assert caught.value.where == "bad.zone"
    assert caught.value.line == line
    assert reason in caught.value.reason
    assert str(caught.value).startswith(f"bad.zone:{line}: ")


def test_relative_name_needs_an_origin():
    with pytest.raises(ZoneSyntaxError, match="relative name 'web' without \\$ORIGIN"):
        parse_record_line("web 60 IN A 192.0.2.1")


def test_record_line_is_one_absolute_record():
    (record,) = parse_record_line("*.romcyber.com. 60 IN A 127.0.0.1")
    assert (record.name, record.rtype, record.ttl, record.origin) == ("*.romcyber.com.", QTYPE.A, 60, "--record:1")


@pytest.mark.parametrize(("text", "seconds"), [("300", 300), ("1h", 3600), ("1h30m", 5400), ("2W", 1209600)])
def test_ttl_units(text, seconds):
    assert parse_ttl(text) == seconds


def test_hosts_file_gives_addresses_and_ptr():
    records = parse_hosts("# comment\n192.0.2.1 a.test b  # tail\n2001:db8::2 six.test\n\n", "hosts")
    got = {(r.name, QTYPE[r.rtype], str(r.rdata)) for r in records}
    assert got == {
        ("a.test.", "A", "192.0.2.1"), ("b.", "A", "192.0.2.1"),
        ("1.2.0.192.in-addr.arpa.", "PTR", "a.test."),
        ("six.test.", "AAAA", "2001:db8::2"),
        ("2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR", "six.test."),
    }


@pytest.mark.parametrize(("text", "reason"), [("192.0.2.999 x.test", "bad address"),
                                              ("192.0.2.1", "at least one name")])
def test_hosts_errors(text, reason):
    with pytest.raises(ZoneSyntaxError, match=reason):
        parse_hosts(text, "hosts")


_ADDRESSES = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
                       st.ip_addresses(v=6).map(lambda a: a.exploded.upper()))


def _edited(text: str, at: int, char: str, drop: bool) -> str:
    """An address with one character put in or taken out: nearly right, the hard cases."""
    at %= len(text) + 1
    return text[:at] + text[at + 1:] if drop else text[:at] + char + text[at:]


_NEARLY = st.builds(_edited, _ADDRESSES, st.integers(0, 60), st.sampled_from(list("0123456789aAfFgx:.%")),
                    st.booleans())


@settings(max_examples=3000, deadline=None)
@given(rdtype=st.sampled_from(["A", "AAAA"]), text=st.one_of(
    _ADDRESSES, _NEARLY, st.text(alphabet="0123456789abcdefABCDEF:.x", max_size=45)))
def test_the_address_road_reads_what_dnspython_reads(rdtype, text):
    """Addresses skip dnspython for speed (`inet_pton`): they must be accepted and refused
    exactly as dnspython accepts and refuses them, into the same bytes."""
    try:
        expected = dns.rdata.from_text("IN", rdtype, text).to_wire()
    except Exception:
        expected = None
    try:
        (record,) = parse_zone(f"x 60 {rdtype} {text}", "z", origin="t.test") if text.strip() else [None]
        got = record.wire if record else None
    except ZoneSyntaxError:
        got = None
    assert got == expected


@pytest.mark.parametrize(("line", "name", "wire"), [
    (r"\065bc A 192.0.2.1", "abc.t.test.", b"\xc0\x00\x02\x01"),
    (r"a\.b A 192.0.2.1", "a\\.b.t.test.", b"\xc0\x00\x02\x01"),
    (r"a\ b A 192.0.2.1", "a\\032b.t.test.", b"\xc0\x00\x02\x01"),
    ("café A 192.0.2.1", "caf\\195\\169.t.test.", b"\xc0\x00\x02\x01"),
    (r'x TXT "\255" "caf\195\169"', "x.t.test.", b"\x01\xff\x05caf\xc3\xa9"),
    ('x TXT "café"', "x.t.test.", b"\x05caf\xc3\xa9"),
    (r"x TXT \# 4 03616263", "x.t.test.", b"\x03abc"),
    (r"x TYPE123 \# 2 0A0B", "x.t.test.", b"\x0a\x0b"),
    ("x HTTPS 1 . port=443 alpn=h2", "x.t.test.", b"\x00\x01\x00\x00\x01\x00\x03\x02h2\x00\x03\x00\x02\x01\xbb"),
])
def test_names_and_strings_read_as_bind_reads_them(line, name, wire):
    (record,) = parse_zone(line, "z", origin="t.test", default_ttl=60)
    assert (record.name, record.wire) == (name, wire)


def test_generate_takes_offsets_widths_and_bases():
    records = parse_zone("$GENERATE 10-11 h${1,4,x} PTR n${-10,2,d}.x.\n$GENERATE 4095-4095 r${0,0,n} A 192.0.2.1\n"
                         "$GENERATE 18-18 ${0,6,n}rev PTR host.\n$GENERATE 255-255 abs${0,4,N} A 192.0.2.1",
                         "z", origin="t.test", default_ttl=60)
    assert [(r.name, r.text) for r in records] == [
        ("h000b.t.test.", "n00.x."), ("h000c.t.test.", "n01.x."), ("rf.f.f.t.test.", "192.0.2.1"),
        ("2.1.0.rev.t.test.", "host."), ("absf.f.", "192.0.2.1")]  # an even width ends in a dot: absolute
