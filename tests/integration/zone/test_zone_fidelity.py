"""Zonefiles read as BIND 9 reads them. Every zone under tests/data/zones/ is loaded by BIND's own
`named-compilezone -s full` and by us: the same records (owner, type, TTL, rdata in canonical
form), and the same warnings for what BIND changes or skips (TTLs made one per RRset,
out-of-zone data). Then a running sidecar serves it, and every (name, type) BIND lists is asked
over the wire with dnspython and must come back as BIND has it. Every file under
tests/data/zones/broken/ is refused by both, at the same line, and by `dns-sidecar check` as
`named-checkzone` refuses it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import dns.message
import dns.name
import dns.query
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest

from sidecar.errors import ZoneSyntaxError
from sidecar.sources.files import parse_file
from tests.helpers import ROOT
from tests.helpers.process import wait_for

ZONES = ROOT / "tests" / "data" / "zones"
BROKEN = ZONES / "broken"
# The origin of each zone whose file is not named after it (the others: `<origin>.zone`).
ORIGINS = {
    "bind-genzone.zone": "example", "bind-https.zone": "https.example", "bind-naptr.zone": "naptr.example",
    "nsd-amtrelay.zone": "example.com", "nsd-bug052-ent.zone": "miek.nl", "nsd-bug086-chars.zone": "spf-test.nl",
    "nsd-bug087-parse-at.zone": "example.com", "nsd-bug090-000-txt.zone": "text-test.nl",
    "nsd-bug101-spf.zone": "spf-test.nl", "nsd-bug144-loc-defaults.zone": "example.com",
    "nsd-cname-ttl.zone": "example.com", "nsd-dname.zone": "example", "nsd-ipseckey.zone": "example.com",
}
# BIND's checks that run after loading and name no line (check-names, NS/MX/SRV target
# integrity) are not the zone reader's: both tools are run without them.
BIND_FLAGS = ["-k", "ignore", "-i", "none", "-n", "ignore", "-m", "ignore", "-M", "ignore", "-S", "ignore"]
_WARNING = re.compile(r"^(?:\S+: )?(\S+?):(\d+): (?:\S+: )?(TTL set to prior TTL \(\d+\)|ignoring out-of-zone data)")
_ERROR_LINE = re.compile(r"(\S+?\.zone):(\d+):")
Record = tuple[str, int, int, bytes]

pytestmark = pytest.mark.skipif(shutil.which("named-compilezone") is None,
                                reason="named-compilezone not installed (Debian bind9-utils; .ci/run installs it)")


def good_zones() -> list[Path]:
    return sorted(ZONES.glob("*.zone"))


def origin_of(path: Path) -> str:
    return ORIGINS.get(path.name, path.name.removesuffix(".zone"))


def canonical(rdtype: int, wire: bytes) -> bytes:
    """rdata in RFC 4034 6.2 canonical form (names in the types it lists lower-cased)."""
    return dns.rdata.from_wire(dns.rdataclass.IN, rdtype, wire, 0, len(wire)).to_digestable()


def bind_compile(path: Path) -> tuple[set[Record], set[tuple[int, str]], subprocess.CompletedProcess]:
    """What BIND makes of a zone: its records, its warnings (line, what), and the run itself."""
    run = subprocess.run(["named-compilezone", *BIND_FLAGS, "-s", "full", "-o", "-", origin_of(path), path.name],
                         cwd=path.parent, capture_output=True, text=True, timeout=60)
    records: set[Record] = set()
    for line in run.stdout.splitlines():
        if not line or line.startswith(("zone ", "dump ", "OK", ";")):
            continue
        owner, ttl, _, rtype, rest = [*line.split(None, 4), ""][:5]
        rdtype = dns.rdatatype.from_text(rtype)
        if rdtype in (dns.rdatatype.NID, dns.rdatatype.L64):  # BIND drops leading zeros dnspython wants
            preference, locator = rest.split()
            rest = f"{preference} {':'.join(group.zfill(4) for group in locator.split(':'))}"
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, rest, origin=dns.name.root, relativize=False)
        records.add((dns.name.from_text(owner).to_text().lower(), rdtype, int(ttl), rdata.to_digestable()))
    warnings = {(int(m[2]), m[3].split(" (")[0]) for m in map(_WARNING.match, run.stderr.splitlines()) if m}
    return records, warnings, run


def ours(path: Path, tmp_path: Path) -> tuple[set[Record], set[tuple[int, str]]]:
    loaded = parse_file(staged(path, tmp_path), "zone")
    records = {(r.name, r.rtype, r.ttl, canonical(r.rtype, r.wire)) for r in loaded.records}
    warnings = {(int(m[2]), m[3].split(" (")[0]) for m in map(_WARNING.match, loaded.warnings) if m}
    return records, warnings


def staged(path: Path, tmp_path: Path) -> Path:
    """The zone copied where the sidecar reads it: named after its origin, what it includes beside it."""
    target = tmp_path / "zones" / f"{origin_of(path)}.zone"
    target.parent.mkdir(exist_ok=True)
    shutil.copy(path, target)
    included = path.parent / f"{path.name.removesuffix('.zone')}.d"
    if included.is_dir():
        shutil.copytree(included, target.parent / included.name, dirs_exist_ok=True)
    return target


def test_the_corpus_is_big_enough():
    assert len(good_zones()) >= 20 and len(list(BROKEN.glob("*.zone"))) >= 10


@pytest.mark.parametrize("path", good_zones(), ids=lambda p: p.name)
def test_every_record_as_bind_reads_it(path: Path, tmp_path: Path):
    theirs, their_warnings, run = bind_compile(path)
    assert run.returncode == 0, run.stderr
    mine, my_warnings = ours(path, tmp_path)
    assert sorted(mine - theirs) == [] and sorted(theirs - mine) == []
    assert my_warnings == their_warnings


@pytest.mark.parametrize("path", good_zones(), ids=lambda p: p.name)
def test_every_name_and_type_served_as_bind_lists_it(path: Path, tmp_path: Path, sidecar):
    theirs, _, _ = bind_compile(path)
    staged(path, tmp_path)
    server = sidecar("--zonefile", tmp_path / "zones")
    wait_for(lambda: "loaded" in server.log_text(), what="the zone loaded")
    asked: dict[tuple[str, int], set[tuple[int, bytes]]] = {}
    for owner, rdtype, ttl, rdata in theirs:
        asked.setdefault((owner, rdtype), set()).add((ttl, rdata))
    for (owner, rdtype), expected in sorted(asked.items()):
        query = dns.message.make_query(owner, rdtype)
        reply = dns.query.tcp(query, server.host, port=server.port, timeout=5)
        assert reply.rcode() == 0, (owner, rdtype, reply)
        got = {(rrset.ttl, rdata.to_digestable()) for rrset in reply.answer
               if rrset.name == dns.name.from_text(owner) and rrset.rdtype == rdtype for rdata in rrset}
        assert got == expected, (owner, dns.rdatatype.to_text(rdtype))


def bind_error_line(path: Path, tool: str) -> int | None:
    """The line BIND's `tool` refuses `path` at, or None when it loads it."""
    argv = [tool, *BIND_FLAGS, *(["-s", "full", "-o", "/dev/null"] if tool == "named-compilezone" else []),
            "broken.test", path.name]
    run = subprocess.run(argv, cwd=path.parent, capture_output=True, text=True, timeout=60)
    if run.returncode == 0:
        return None
    lines = [line for line in run.stdout.splitlines() + run.stderr.splitlines()
             if _ERROR_LINE.search(line) and "does not end with newline" not in line and not _WARNING.match(line)]
    return int(_ERROR_LINE.search(lines[-1])[2])


@pytest.mark.parametrize("path", sorted(BROKEN.glob("*.zone")), ids=lambda p: p.name)
def test_broken_files_refused_at_the_line_bind_refuses_them(path: Path):
    line = bind_error_line(path, "named-compilezone")
    assert line is not None
    with pytest.raises(ZoneSyntaxError) as caught:
        parse_file(path, "zone")
    assert caught.value.line == line, str(caught.value)
    assert str(caught.value).startswith(f"{path}:{line}: ")


def test_check_refuses_what_named_checkzone_refuses(tmp_path: Path):
    for path in BROKEN.glob("*.zone"):
        shutil.copy(path, tmp_path / path.name)
    run = subprocess.run([sys.executable, "-m", "sidecar", "check", "--zonefile", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    refused = {Path(m[1]).name: int(m[2]) for m in map(_ERROR_LINE.match, run.stderr.splitlines()) if m}
    expected = {path.name: bind_error_line(path, "named-checkzone") for path in BROKEN.glob("*.zone")}
    assert refused == expected
