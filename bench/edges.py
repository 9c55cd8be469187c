"""What the edges cost under abuse, beside dnsmasq and unbound where they compare:
`python3 bench/edges.py [--seconds 30] [--slow 300] [--idle-http 2000]`.

Slowloris over TCP: `--slow` connections each part way through a message and sending one more
byte a second, while a real client asks one question on a new connection twice a second for
`--seconds` (a question unanswered within 2 s counts as lost). The same local name on each
server. HTTP flood (dns-sidecar only: neither dnsmasq nor unbound serves HTTP): `--idle-http`
connections that never send a request, then the threads and memory they cost, whether /healthz
still answers, and how long until every one of them is closed. Prints one JSON document."""

from __future__ import annotations

import argparse
import errno
import json
import select
import socket
import statistics
import struct
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from daemons import HOST, Server, free_port, start_dnsmasq, start_sidecar, start_unbound

NAME = "web.edge.test."
ADDRESS = "192.0.2.1"
REAL_TIMEOUT = 2.0
CLOSE_WAIT = 60.0  # how long the idle HTTP connections are watched for being closed


def framed_query(qid: int) -> bytes:
    labels = b"".join(bytes((len(p),)) + p.encode() for p in NAME.rstrip(".").split("."))
    message = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"
    return struct.pack("!H", len(message)) + message


def real_query(port: int, qid: int) -> float | None:
    """Seconds until one TCP question on a new connection is answered; None if it is not."""
    started = time.monotonic()
    try:
        with socket.create_connection((HOST, port), timeout=REAL_TIMEOUT) as sock:
            sock.settimeout(max(0.01, REAL_TIMEOUT - (time.monotonic() - started)))
            sock.sendall(framed_query(qid))
            size = struct.unpack("!H", sock.recv(2, socket.MSG_WAITALL))[0]
            reply = sock.recv(size, socket.MSG_WAITALL)
    except (OSError, struct.error):
        return None
    return time.monotonic() - started if len(reply) >= 12 and reply[:2] == struct.pack("!H", qid) else None


class SlowClients:
    """`count` connections, each promising a 200-byte message, sending its first byte at once and
    one more a second; one that the server closes is opened again at once, as an attacker would."""

    PREFIX = struct.pack("!H", 200) + b"\x00"

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.started: dict[socket.socket, bool] = {}  # -> its first bytes are sent
        self.reopened = 0
        for _ in range(count):
            self._open()

    def _open(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.connect_ex((HOST, self.port))  # the kernel keeps trying while the backlog is full
        self.started[sock] = False

    def tick(self) -> None:
        """Each connection sends its next byte (its first three once connected); a closed one is replaced."""
        for sock, started in list(self.started.items()):
            try:
                sock.send(b"\x00" if started else self.PREFIX)
                self.started[sock] = True
            except (BlockingIOError, InterruptedError):
                continue  # still connecting, or a full buffer
            except OSError as exc:
                if exc.errno == errno.ENOTCONN:
                    continue
                del self.started[sock]
                sock.close()
                self.reopened += 1
                self._open()

    def close(self) -> None:
        for sock in self.started:
            sock.close()


def slowloris(server: Server, slow: int, seconds: float) -> dict:
    clients = SlowClients(server.port, slow)
    stop = threading.Event()

    def trickle() -> None:
        clients.tick()
        while not stop.wait(1.0):
            clients.tick()

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    time.sleep(3.0)  # the slow connections are in before the first real question
    times: list[float | None] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            started = time.monotonic()
            times.append(real_query(server.port, len(times) + 1))
            time.sleep(max(0.0, 0.5 - (time.monotonic() - started)))
    finally:
        stop.set()
        trickler.join(5)
        clients.close()
    answered = [t for t in times if t is not None]
    return {"slow_connections_reopened": clients.reopened, "asked": len(times), "answered": len(answered),
            "p50_ms": round(statistics.median(answered) * 1000, 1) if answered else None}


def threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def http_flood(workdir: Path, idle: int) -> dict:
    http = f"{HOST}:{free_port()}"
    server = start_sidecar(["--record", f"{NAME} 60 IN A {ADDRESS}", "--http", http], workdir, NAME,
                           name="sidecar-http")
    try:
        urllib.request.urlopen(f"http://{http}/healthz", timeout=5).read()
        before_threads, before_rss = threads(server.pid), server.rss_mb()
        host, port = http.rsplit(":", 1)
        conns = [socket.create_connection((host, int(port)), timeout=5) for _ in range(idle)]
        started = time.monotonic()
        with urllib.request.urlopen(f"http://{http}/healthz", timeout=5) as response:
            healthz = response.status
        healthz_ms = (time.monotonic() - started) * 1000
        result = {"idle_connections": idle, "threads_before": before_threads, "threads_during": threads(server.pid),
                  "rss_mb_added": round(server.rss_mb() - before_rss, 1), "healthz_status": healthz,
                  "healthz_ms": round(healthz_ms, 1)}
        poller = select.poll()
        for sock in conns:
            poller.register(sock, select.POLLIN)
        still = len(conns)
        while still and time.monotonic() - started < CLOSE_WAIT:
            for fd, _ in poller.poll(1000):  # readable with nothing sent to it: closed by the server
                poller.unregister(fd)
                still -= 1
        result[f"still_open_after_{CLOSE_WAIT:g}_s"] = still
        result["seconds_until_all_closed"] = None if still else round(time.monotonic() - started, 1)
        for sock in conns:
            sock.close()
        return result
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=30.0, help="how long real questions are asked")
    parser.add_argument("--slow", type=int, default=300, help="slow TCP connections")
    parser.add_argument("--idle-http", type=int, default=2000, help="idle HTTP connections")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dns-sidecar-edges-") as tmp:
        workdir = Path(tmp)
        conf = workdir / "dnsmasq.conf"
        conf.write_text(f"host-record={NAME.rstrip('.')},{ADDRESS}\n")
        starters = {
            "sidecar": lambda: start_sidecar(["--record", f"{NAME} 60 IN A {ADDRESS}"], workdir, NAME),
            "dnsmasq": lambda: start_dnsmasq("dnsmasq", conf, workdir, NAME),
            "unbound": lambda: start_unbound("unbound", [f"{NAME} 60 IN A {ADDRESS}"], workdir, NAME),
        }
        report: dict = {"slowloris": {}}
        for name, start in starters.items():
            server = start()
            try:
                report["slowloris"][name] = slowloris(server, args.slow, args.seconds)
            finally:
                server.stop()
        report["http_flood"] = http_flood(workdir, args.idle_http)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
