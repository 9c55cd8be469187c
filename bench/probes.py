"""The rows that are not queries/s: a big zonefile swapped in under load, memory, idle CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from daemons import Server, answer_count, ask, start_sidecar
from dataset import write_zonefile
from dnsperf import Run, dnsperf

HERE = Path(__file__).resolve().parent
SWAP_RATE = 2000  # q/s kept flowing while the big zone loads: enough to see any stall
GIVE_UP = 5.0  # seconds before a query counts as lost: glibc's resolver waits that long (RES_TIMEOUT)


def _wait_until(predicate, timeout: float) -> float | None:
    """Seconds until `predicate()` held, polling every 5 ms; None if it never did."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if predicate():
            return time.monotonic() - started
        time.sleep(0.005)
    return None


def zone_swap(workdir: Path, records: int, upstream_port: int, seconds: float) -> dict:
    """Load a `records`-name zonefile into a running sidecar, then replace it with a changed copy,
    while dnsperf asks for other names at a steady rate: how long each took, what was lost."""
    zones = workdir / "swap-zones"
    zones.mkdir(exist_ok=True)
    write_zonefile(zones / "steady.test.zone", "steady.test.", 100)
    queries = workdir / "queries-steady.txt"
    queries.write_text("".join(f"h{i}.steady.test. A\n" for i in range(100)))
    server = start_sidecar(["--zonefile", str(zones), "--upstream", f"127.0.0.1:{upstream_port}"], workdir,
                           "h0.steady.test.", name="sidecar-swap")
    try:
        runs: list[Run] = []
        done = threading.Event()
        flowing = threading.Thread(target=_keep_asking, args=(server.port, queries, runs, done))
        flowing.start()
        try:
            time.sleep(0.5)
            last = f"h{records - 1}.big.test."
            write_zonefile(zones / "big.test.zone", "big.test.", records)
            load_s = _wait_until(lambda: answer_count(ask(server.port, last)) > 0, seconds)
            before = ask(server.port, last)
            write_zonefile(zones / "big.test.zone", "big.test.", records, salt=1)
            swap_s = _wait_until(lambda: ask(server.port, last) not in (before, None), seconds)
            time.sleep(0.5)
        finally:
            done.set()
            flowing.join()
        latencies = tuple(ms for run in runs for ms in run.latencies_ms)
        return {"records": records, "load_s": _round(load_s), "swap_s": _round(swap_s),
                "sent": sum(run.sent for run in runs), "lost": sum(run.lost for run in runs),
                "p99_ms": _round(Run(0, 0, 0, latencies).percentile(99)),
                "max_ms": _round(max(latencies, default=None)), "waited_s": seconds}
    finally:
        server.stop()


def _keep_asking(port: int, queries: Path, runs: list[Run], done: threading.Event) -> None:
    """Steady load in one-second dnsperf runs until `done`, so it lasts exactly as long as needed."""
    while not done.is_set():
        runs.append(dnsperf(port, queries, 1.0, SWAP_RATE, GIVE_UP))


def zone_build(zonefile: Path) -> dict:
    return _child("zone-build", str(zonefile))


def memory(containers: int, upstream_port: int) -> dict:
    return _child("memory", str(containers), "--upstream-port", str(upstream_port))


def _child(*args: str) -> dict:
    result = subprocess.run([sys.executable, str(HERE / "inproc.py"), *args], capture_output=True, text=True,
                            timeout=300, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"inproc {args[0]} failed: {result.stderr[-1000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def idle_cpu(server: Server, seconds: float) -> float:
    """CPU used while nobody asks anything, as a percentage of one core."""
    before = server.cpu_seconds()
    time.sleep(seconds)
    return round(100 * (server.cpu_seconds() - before) / seconds, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
