"""The servers under test, started on loopback with their output in a file and stopped by pid.

dnsmasq and dns-sidecar get the same data: a `DataSet` writes it once as a zonefile (ours) and as
dnsmasq `host-record=` lines, so both answer the same names with the same addresses and TTLs."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"


def free_port(host: str = HOST) -> int:
    """A port free for both UDP and TCP on `host` (the sidecar binds both); the tests use it too."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = udp.getsockname()[1]
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


def ask(port: int, name: str, timeout: float = 0.3, source: str | None = None) -> bytes | None:
    """One A query over UDP (from loopback address `source` if given); the raw reply, or None on
    timeout. Plain bytes, so the benchmark measures the servers and not a client library."""
    labels = b"".join(bytes((len(p),)) + p.encode() for p in name.rstrip(".").split("."))
    packet = struct.pack("!HHHHHH", 0x4242, 0x0100, 1, 0, 0, 0) + labels + b"\x00\x00\x01\x00\x01"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            if source:
                sock.bind((source, 0))
            sock.sendto(packet, (HOST, port))
            return sock.recv(4096)
        except OSError:
            return None


def answer_count(reply: bytes | None) -> int:
    return 0 if reply is None or len(reply) < 12 else struct.unpack_from("!H", reply, 6)[0]


@dataclass
class Server:
    """A daemon under test: `name` is "sidecar", "dnsmasq" or "upstream"."""

    name: str
    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far (from /proc, all threads), with its worker
        processes' under --workers."""
        return sum(_cpu_seconds(pid) for pid in (self.pid, *children(self.pid)))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS for pid {self.pid}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def children(pid: int) -> set[int]:
    """The live child processes of `pid` (a supervisor's workers)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return {int(child) for child in path.read_text().split()} if path.exists() else set()


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:  # a worker that just exited
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start(name: str, argv: list[str], port: int, log: Path, probe: str, timeout: float = 30.0,
           env: dict[str, str] | None = None) -> Server:
    with log.open("ab") as handle:
        proc = subprocess.Popen(argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, cwd=ROOT, env=env)
    server = Server(name, proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        if answer_count(ask(port, probe)):
            return server
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not answer {probe} within {timeout} s (log: {log})")


def start_dnsmasq(name: str, conf: Path, workdir: Path, probe: str, args: tuple[str, ...] = ()) -> Server:
    """dnsmasq reading `conf` (host-record lines), never forwarding unless `args` add a --server."""
    port = free_port()
    argv = ["dnsmasq", "--keep-in-foreground", "--no-resolv", "--no-hosts", f"--port={port}",
            f"--listen-address={HOST}", "--bind-interfaces", "--user=root", "--log-facility=-",
            "--pid-file=", f"--conf-file={conf}", *args]
    return _start(name, argv, port, workdir / f"{name}.log", probe)


def start_sidecar(args: list[str], workdir: Path, probe: str, name: str = "sidecar",
                  docker_host: str | None = None) -> Server:
    """Without `docker_host` the Docker source is off; with it, the sidecar watches that engine."""
    port = free_port()
    argv = [sys.executable, "-m", "sidecar", "serve", "--listen", f"{HOST}:{port}",
            *(() if docker_host else ("--no-docker",)), "--log-level", "warning", *args]
    env = {**os.environ, "DOCKER_HOST": docker_host} if docker_host else None
    return _start(name, argv, port, workdir / f"{name}.log", probe, env=env)


def start_unbound(name: str, local_data: list[str], workdir: Path, probe: str) -> Server:
    """unbound answering `local_data` lines (zone-file records) as static local data. Anything
    else would be forwarded to 127.0.0.254, where nothing listens: it never leaves loopback."""
    port = free_port()
    conf = workdir / f"{name}.conf"
    zones = sorted({line.split()[0].split(".", 1)[1] for line in local_data})
    conf.write_text("server:\n" + "".join(f"  {line}\n" for line in (
        "interface: 127.0.0.1", f"port: {port}", "do-daemonize: no", 'username: ""', 'chroot: ""',
        f'directory: "{workdir}"', 'pidfile: ""', "use-syslog: no", "do-ip6: no", "verbosity: 0",
        *(f'local-zone: "{zone}" static' for zone in zones), *(f'local-data: "{line}"' for line in local_data)))
        + "remote-control:\n  control-enable: no\n"
        + 'forward-zone:\n  name: "."\n  forward-addr: 127.0.0.254@5\n')
    return _start(name, ["unbound", "-d", "-c", str(conf)], port, workdir / f"{name}.log", probe)
