"""dnsperf runs and what they say: queries/s at full load, per-query latency at a fixed rate."""

from __future__ import annotations

import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

from daemons import HOST

CLIENTS = 4  # the setting: dnsperf -c 4
_QPS = re.compile(r"Queries per second:\s+([\d.]+)")
_SENT = re.compile(r"Queries sent:\s+(\d+)")
_LOST = re.compile(r"Queries lost:\s+(\d+)")
_VERBOSE = re.compile(r"^> \S+ \S+ \S+ ([\d.]+)$", re.MULTILINE)


@dataclass(frozen=True)
class Run:
    qps: float
    sent: int
    lost: int
    latencies_ms: tuple[float, ...] = ()

    def percentile(self, p: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(p) - 1]


def _argv(port: int, queries: Path, seconds: float, rate: float | None, timeout: float, verbose: bool) -> list[str]:
    argv = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(queries), "-c", str(CLIENTS),
            "-l", f"{seconds:g}", "-t", f"{timeout:g}"]
    return argv + (["-Q", str(max(1, int(rate)))] if rate else []) + (["-v"] if rate and verbose else [])


def dnsperf(port: int, queries: Path, seconds: float, rate: float | None = None, timeout: float = 1.0,
            latencies: bool = True) -> Run:
    """Load `port` for `seconds`: flat out, or at `rate` q/s with every latency recorded (unless
    `latencies` is False: a long run would print millions of lines). A query unanswered after
    `timeout` seconds counts as lost."""
    result = subprocess.run(_argv(port, queries, seconds, rate, timeout, latencies), capture_output=True, text=True,
                            timeout=seconds + timeout + 30, check=False)
    out = result.stdout
    found = _QPS.search(out)
    if result.returncode != 0 or found is None:
        raise RuntimeError(f"dnsperf failed ({result.returncode}): {result.stderr[-500:] or out[-500:]}")
    recorded = tuple(float(s) * 1000 for s in _VERBOSE.findall(out)) if rate and latencies else ()
    return Run(float(found.group(1)), int(_SENT.search(out).group(1)), int(_LOST.search(out).group(1)),
               recorded)
