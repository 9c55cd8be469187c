"""`--workers N` as a user runs it: one port, queries spread over every worker even from a single
client socket, a worker that dies is started again, SIGTERM stops them all, and a worker that
cannot start stops the service with a clear log line instead of restarting forever."""

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.daemons import children, free_port
from sidecar.app import _metrics_directory
from sidecar.config import Config
from sidecar.net.endpoint import Endpoint
from sidecar.workers import STARTUP_SECONDS
from tests.helpers.process import query, start_daemon, wait_for

RECORD = "svc.workers.test. 60 IN A 192.0.2.44"


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def serve_workers(tmp_path: Path, port: int, *extra: str) -> tuple[subprocess.Popen, Path]:
    log = tmp_path / "sidecar.log"
    argv = [sys.executable, "-m", "sidecar", "serve", "--workers", "2", "--listen", f"127.0.0.1:{port}",
            "--no-docker", "--record", RECORD, *extra]
    return start_daemon(argv, log), log


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.mark.slow
def test_two_workers_share_one_port_and_the_load_and_outlive_a_crash(tmp_path):
    port, http = free_port(), free_port()
    proc, log = serve_workers(tmp_path, port, "--log-queries", "--http", f"127.0.0.1:{http}")
    workers: set[int] = set()
    try:
        wait_for(lambda: log.read_text().count("listening on") == 2, what="both workers listening")
        listening = time.monotonic()  # after the workers were started, however long the supervisor took
        workers = children(proc.pid)
        assert len(workers) == 2
        # One client socket, one source port: the kernel's hash alone would pick one worker for all.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.bind(("127.0.0.1", 0))
            source = client.getsockname()
        for _ in range(40):
            reply = dns.query.udp(dns.message.make_query("svc.workers.test", "A"), "127.0.0.1", port=port,
                                  source=source[0], source_port=source[1], timeout=3)
            assert reply.rcode() == dns.rcode.NOERROR
            assert [str(rr) for rrset in reply.answer for rr in rrset] == ["192.0.2.44"]
        answered_by = set(re.findall(r"worker (\d) sidecar\.queries: query svc\.workers\.test\.", log.read_text()))
        assert answered_by == {"0", "1"}
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=5) as response:
            assert response.status == 200  # worker 0 serves HTTP

        # A worker dying within STARTUP_SECONDS of its start failed to start: this one must have run longer.
        time.sleep(max(0.0, STARTUP_SECONDS + 0.5 - (time.monotonic() - listening)))
        crashed = min(workers)
        os.kill(crashed, signal.SIGKILL)
        wait_for(lambda: "starting it again" in log.read_text(), what="the supervisor restarting the worker")
        wait_for(lambda: len(children(proc.pid) - {crashed}) == 2, what="a new worker in its place")
        workers |= children(proc.pid)
        wait_for(lambda: query("127.0.0.1", port, "svc.workers.test").rcode() == dns.rcode.NOERROR,
                 what="answers after the restart")
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()
    wait_for(lambda: not any(alive(pid) for pid in workers), what="every worker gone after SIGTERM")


def scrape(http: int) -> dict[str, float]:
    """/metrics as sample name -> value, summed over labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0) + sample.value
    return totals


def holder_of(name: str, pids: set[int]) -> tuple[int, Path]:
    """Which of `pids` listens on a unix socket called `name`, and that socket's path."""
    table = map(str.split, Path("/proc/net/unix").read_text().splitlines()[1:])
    paths = {fields[6]: Path(fields[7]) for fields in table if len(fields) == 8 and fields[7].endswith("/" + name)}
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                for inode, path in paths.items():
                    if link == f"socket:[{inode}]":
                        return pid, path
    raise AssertionError(f"no worker holds a socket called {name}")


@pytest.mark.slow
def test_metrics_count_the_queries_of_every_worker_and_keep_a_restarted_workers_count(tmp_path):
    port, http = free_port(), free_port()
    proc, log = serve_workers(tmp_path, port, "--log-queries", "--http", f"127.0.0.1:{http}")
    try:
        wait_for(lambda: log.read_text().count("listening on") == 2, what="both workers listening")
        listening = time.monotonic()
        for _ in range(60):
            assert query("127.0.0.1", port, "svc.workers.test").rcode() == dns.rcode.NOERROR
        answered_by = set(re.findall(r"worker (\d) sidecar\.queries: query svc\.workers\.test\.", log.read_text()))
        assert answered_by == {"0", "1"}  # so worker 0's share alone is less than 60

        first = scrape(http)
        assert first["dns_sidecar_queries_total"] == 60
        assert first["dns_sidecar_workers_reporting"] == 2
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/records", timeout=5) as response:
            records = len(json.load(response))
        assert first["dns_sidecar_zone_records"] == records  # each worker holds the zone: not summed
        assert first["dns_sidecar_zone_swaps_total"] >= 1

        # Worker 1 dies and is started again: what it had counted must not vanish from the sum.
        time.sleep(max(0.0, STARTUP_SECONDS + 0.5 - (time.monotonic() - listening)))
        worker_1, socket_path = holder_of("worker-1.sock", children(proc.pid))
        assert socket_path.parent.stat().st_mode & 0o777 == 0o700  # only the service's user reads it
        os.kill(worker_1, signal.SIGKILL)
        totals = [scrape(http)["dns_sidecar_queries_total"]]  # worker 1 most likely gone: as last read

        def both_reporting() -> bool:
            metrics = scrape(http)
            totals.append(metrics["dns_sidecar_queries_total"])
            return metrics["dns_sidecar_workers_reporting"] == 2

        wait_for(lambda: log.read_text().count("listening on") == 3 and both_reporting(),
                 what="worker 1 started again and reporting")
        assert set(totals) == {60}  # never a dip, and the new worker 1's first read already carries the old one's
        for _ in range(40):
            assert query("127.0.0.1", port, "svc.workers.test").rcode() == dns.rcode.NOERROR
        assert scrape(http)["dns_sidecar_queries_total"] == 100
    finally:
        stop(proc)
    assert proc.returncode == 0, log.read_text()
    assert not socket_path.parent.exists()  # the supervisor cleans up after itself


def test_a_worker_that_cannot_start_stops_the_service(tmp_path):
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", port))  # no SO_REUSEPORT: the workers cannot join this port
        proc, log = serve_workers(tmp_path, port)
        try:
            proc.wait(15)
        finally:
            stop(proc)
    assert proc.returncode == 1
    text = log.read_text()
    assert "Address already in use" in text
    assert "failed to start" in text
    assert "starting it again" not in text



def test_with_no_temporary_directory_the_workers_serve_on_and_the_log_says_metrics_are_worker_0s(
        tmp_path, monkeypatch, caplog):
    not_a_directory = tmp_path / "a-file"
    not_a_directory.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_directory / "tmp"))  # as on a read-only root
    config = Config(listen=(Endpoint("127.0.0.1", 0),), docker=False, workers=2, http=Endpoint("127.0.0.1", 0))
    with caplog.at_level(logging.WARNING, logger="sidecar"):
        assert _metrics_directory(config) is None
    assert "no directory for the workers' metrics" in caplog.text
    assert "/metrics counts worker 0's queries only" in caplog.text
    assert _metrics_directory(replace(config, http=None)) is None  # no --http: nothing to hand over
