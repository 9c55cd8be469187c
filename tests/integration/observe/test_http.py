"""The HTTP window (`--http`): /healthz, /metrics parsed with prometheus_client's own parser,
/records against the zone, and the page rendered by a real headless Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest
from dns import rcode
from prometheus_client.parser import text_string_to_metric_families

from bench.daemons import free_port
from tests.helpers import ROOT
from tests.helpers.process import wait_for

ZONE = """$ORIGIN dev.test.
$TTL 300
@    IN SOA ns.dev.test. admin.dev.test. 1 3600 600 86400 60
@    IN NS  ns
ns   IN A   192.0.2.1
web  IN A   192.0.2.10
web  IN AAAA 2001:db8::10
"""
ARTIFACTS = ROOT / "tests" / "artifacts"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def served(sidecar, dnsmasq, tmp_path):
    """A sidecar with a zonefile, an override and a real upstream, its HTTP side on a free port."""
    upstream = dnsmasq(args=["--address=/up.test/192.0.2.7"])
    zones = tmp_path / "zones"
    zones.mkdir()
    (zones / "dev.test.zone").write_text(ZONE)
    http = f"127.0.0.1:{free_port()}"
    daemon = sidecar("--zonefile", zones, "--record", "*.apps.example. 60 IN A 198.51.100.5",
                     "--upstream", f"{upstream.host}:{upstream.port}", "--http", http)
    daemon.extra.update(http=f"http://{http}", zonefile=zones / "dev.test.zone", upstream=upstream)
    return daemon


def samples(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as (name, sorted labels) -> value."""
    status, text = get(base + "/metrics")
    assert status == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def q_labels(transport: str, code: str, source: str) -> tuple:
    return tuple(sorted({"transport": transport, "rcode": code, "source": source, "view": "host"}.items()))


def test_healthz_says_ok_when_listening_and_loaded(served) -> None:
    assert get(served.extra["http"] + "/healthz") == (200, "ok\n")
    assert get(served.extra["http"] + "/nowhere")[0] == 404


def test_metrics_count_queries_by_rcode_transport_and_source(served) -> None:
    for _ in range(2):
        assert served.query("web.dev.test.").rcode() == rcode.NOERROR
        assert served.query("up.test.").answer[0][0].address == "192.0.2.7"
    assert served.query("nope.dev.test.").rcode() == rcode.NXDOMAIN
    assert served.query("web.dev.test.", tcp=True).rcode() == rcode.NOERROR

    found = samples(served.extra["http"])
    upstream = served.extra["upstream"]
    assert found[("dns_sidecar_queries_total", q_labels("udp", "NOERROR", "local"))] == 1
    assert found[("dns_sidecar_queries_total", q_labels("udp", "NOERROR", "forward"))] == 1
    assert found[("dns_sidecar_queries_total", q_labels("udp", "NOERROR", "packet-cache"))] == 2
    assert found[("dns_sidecar_queries_total", q_labels("udp", "NXDOMAIN", "local"))] == 1
    assert found[("dns_sidecar_queries_total", q_labels("tcp", "NOERROR", "local"))] == 1
    assert found[("dns_sidecar_packet_cache_hits_total", ())] == 2
    assert found[("dns_sidecar_resolve_seconds_count", (("source", "forward"),))] == 1
    assert found[("dns_sidecar_resolve_seconds_bucket", (("le", "+Inf"), ("source", "local")))] == 3
    assert found[("dns_sidecar_upstream_up", (("upstream", f"{upstream.host}:{upstream.port}"),))] == 1
    assert found[("dns_sidecar_zone_records", ())] == 6  # five from the file, one --record
    assert found[("dns_sidecar_file_reloads_total", ())] == 1
    assert found[("dns_sidecar_file_reload_errors_total", ())] == 0
    assert ("dns_sidecar_docker_connected", ()) not in found  # --no-docker


def test_metrics_follow_reloads_and_their_errors(served) -> None:
    zonefile: Path = served.extra["zonefile"]
    zonefile.write_text(ZONE + "api IN A 192.0.2.11\n")
    wait_for(lambda: samples(served.extra["http"])[("dns_sidecar_zone_records", ())] == 7, what="reload counted")
    zonefile.write_text(ZONE + "broken IN A not-an-address\n")
    wait_for(lambda: samples(served.extra["http"])[("dns_sidecar_file_reload_errors_total", ())] == 1,
             what="reload error counted")
    found = samples(served.extra["http"])
    assert found[("dns_sidecar_file_reloads_total", ())] == 2
    assert found[("dns_sidecar_zone_records", ())] == 7  # the last good version keeps serving


def test_records_lists_the_zone_with_provenance(served) -> None:
    status, body = get(served.extra["http"] + "/records")
    assert status == 200
    records = json.loads(body)
    zonefile = served.extra["zonefile"]
    assert {"name": "web.dev.test.", "type": "AAAA", "value": "2001:db8::10", "ttl": 300, "view": None,
            "origin": f"{zonefile}:7", "health": None} in records
    assert {"name": "*.apps.example.", "type": "A", "value": "198.51.100.5", "ttl": 60, "view": None,
            "origin": "--record:1", "health": None} in records
    assert sorted((r["name"], r["type"]) for r in records) == [
        ("*.apps.example.", "A"), ("dev.test.", "NS"), ("dev.test.", "SOA"), ("ns.dev.test.", "A"),
        ("web.dev.test.", "A"), ("web.dev.test.", "AAAA")]
    # Every record listed is what the server answers.
    for record in records:
        if record["type"] in ("A", "AAAA") and not record["name"].startswith("*"):
            reply = served.query(record["name"], record["type"])
            assert [rr.to_text() for rrset in reply.answer for rr in rrset] == [record["value"]]


def test_healthz_is_503_with_the_reason_until_docker_has_loaded(sidecar, tmp_path) -> None:
    http = f"127.0.0.1:{free_port()}"
    daemon = sidecar("--http", http, docker=True, env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"})
    status, body = get(f"http://{http}/healthz")
    assert status == 503
    assert f"Docker source has not listed the containers of unix://{tmp_path}/no-engine.sock yet" in body
    found = samples(f"http://{http}")
    assert found[("dns_sidecar_docker_connected", ())] == 0

    health = [sys.executable, "-m", "sidecar", "health", "--listen", f"{daemon.host}:{daemon.port}"]
    ok = subprocess.run(health, capture_output=True, text=True, timeout=20, check=False)
    assert (ok.returncode, ok.stdout) == (0, "healthy\n")  # DNS answers: the container is alive
    strict = subprocess.run([*health, "--http", http], capture_output=True, text=True, timeout=20, check=False)
    assert strict.returncode == 1
    assert "503" in strict.stderr and "Docker source has not listed" in strict.stderr


def test_health_fails_when_nothing_listens() -> None:
    result = subprocess.run([sys.executable, "-m", "sidecar", "health", "--listen", f"127.0.0.1:{free_port()}",
                             "--timeout", "0.5"], capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 1
    assert "unhealthy: " in result.stderr


class _Tables(HTMLParser):
    """Cell texts of each table by id, row by row."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id")
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def chromium(*args: str, tmp_path: Path) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    profile.mkdir(exist_ok=True)
    argv = [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", *args]
    return subprocess.run(argv, capture_output=True, timeout=90, check=False, stdin=subprocess.DEVNULL)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)")
def test_page_in_headless_chromium(served, tmp_path) -> None:
    served.query("web.dev.test.")
    url = served.extra["http"] + "/"
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "status-page.png"
    screenshot.unlink(missing_ok=True)
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1200,900", "--hide-scrollbars", url,
                    tmp_path=tmp_path)
    assert screenshot.is_file() and screenshot.stat().st_size > 1000, shot.stderr.decode(errors="replace")[-2000:]
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    dom = chromium("--dump-dom", url, tmp_path=tmp_path)
    assert dom.returncode == 0, dom.stderr.decode(errors="replace")[-2000:]
    tables = _Tables()
    tables.feed(dom.stdout.decode())
    header, *rows = tables.tables["records"]
    assert header == ["name", "type", "value", "TTL", "view", "from"]
    records = json.loads(get(served.extra["http"] + "/records")[1])
    assert rows == [[r["name"], r["type"], r["value"], str(r["ttl"]), r["view"] or "", r["origin"]] for r in records]
    counters = dict(tables.tables["counters"])
    assert counters["records"] == "6"
    assert int(counters["queries"]) >= 1
    assert 'http-equiv="refresh"' in dom.stdout.decode()
