"""Log output as a user or a log shipper reads it: one line per event, JSON when asked, and the
query log only with --log-queries."""

from __future__ import annotations

import json

from tests.helpers.process import wait_for

ZONE = "$ORIGIN dev.test.\n@ IN SOA ns admin 1 3600 600 86400 60\nns IN A 192.0.2.1\nweb IN A 192.0.2.10\n"


def zonefile(tmp_path):
    path = tmp_path / "dev.test.zone"
    path.write_text(ZONE)
    return path


def test_json_lines_with_the_query_log(sidecar, tmp_path) -> None:
    path = zonefile(tmp_path)
    daemon = sidecar("--zonefile", path, "--log-format", "json", "--log-queries")
    for _ in range(3):  # answered locally, then made ready, then from what was made ready
        daemon.query("web.dev.test.")
    daemon.query("nope.dev.test.", tcp=True)
    wait_for(lambda: daemon.log_text().count('"logger": "sidecar.queries"') == 4, what="four query lines")
    daemon.stop()
    events = [json.loads(line) for line in daemon.log_text().splitlines()]  # every line is one object
    assert {"time", "level", "logger", "message"} <= set(events[0])
    loaded = [e for e in events if e["message"] == f"{path}: loaded 3 records"]
    assert loaded and loaded[0]["level"] == "info"
    queries = [e for e in events if e["logger"] == "sidecar.queries"]
    assert [(q["qname"], q["qtype"], q["rcode"], q["source"], q["transport"]) for q in queries] == [
        ("web.dev.test.", "A", "NOERROR", "local", "udp"),
        ("web.dev.test.", "A", "NOERROR", "packet-cache", "udp"),
        ("web.dev.test.", "A", "NOERROR", "packet-cache", "udp"),
        ("nope.dev.test.", "A", "NXDOMAIN", "local", "tcp")]
    assert all(q["client"] == "127.0.0.1" for q in queries)
    assert queries[0]["ms"] >= 0 and queries[1]["ms"] is None and queries[2]["ms"] is None


def test_text_lines_by_default_and_no_query_log_unless_asked(sidecar, tmp_path) -> None:
    path = zonefile(tmp_path)
    quiet = sidecar("--zonefile", path)
    quiet.query("web.dev.test.")
    chatty = sidecar("--zonefile", path, "--log-queries")
    chatty.query("web.dev.test.")
    wait_for(lambda: "query web.dev.test." in chatty.log_text(), what="the query line")
    quiet.stop()
    chatty.stop()
    assert "query web.dev.test." not in quiet.log_text()
    line = next(x for x in chatty.log_text().splitlines() if "query web.dev.test." in x)
    assert " INFO sidecar.queries: query web.dev.test. A from 127.0.0.1 over udp: NOERROR (local, " in line
    assert any(x.endswith(f"{path}: loaded 3 records") for x in quiet.log_text().splitlines())
    assert not any(x.startswith("{") for x in quiet.log_text().splitlines())
