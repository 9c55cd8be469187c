"""`--workers N` as a user runs it: one port, queries spread over every worker even from a single
client socket, a worker that dies is started again, SIGTERM stops them all, and a worker that
cannot start stops the service with a clear log line instead of restarting forever."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import pytest
from conftest import free_port, query, start_daemon, wait_for
from daemons import children

from sidecar.workers import STARTUP_SECONDS

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

