"""Under --workers, /metrics counts every worker's queries, not worker 0's share alone.

Workers above 0 serve their metric families as JSON on unix sockets in a directory only the
service's user can read; worker 0, which alone serves --http, reads and merges them at each
scrape, so nothing crosses between workers on the query path. Shares are summed; state every
worker holds a copy of (the zone, the upstreams) merges as `ACROSS_WORKERS` says."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

PEER_TIMEOUT = 0.5
# Sample name -> how the workers' values combine, for state each worker holds its own copy of.
ACROSS_WORKERS: dict[str, Callable[[Iterable[float]], float]] = {
    "dns_sidecar_zone_records": max,
    "dns_sidecar_zone_swaps_total": max,
    "dns_sidecar_file_reloads_total": max,
    "dns_sidecar_file_reload_errors_total": max,
    "dns_sidecar_upstream_up": min,  # 1 only while every worker finds the upstream answering
    "dns_sidecar_docker_connected": min,
}
_CARRIED_TYPES = ("counter", "histogram")  # what keeps counting up, and so must not go down
SampleKey = tuple[str, tuple[tuple[str, str], ...]]  # sample name, sorted labels


def socket_path(directory: str, worker: int) -> str:
    return os.path.join(directory, f"worker-{worker}.sock")


def families_of(collector: Collector) -> list[dict]:
    """A collector's metric families as plain data: what a worker sends, and what is merged."""
    return _as_data(collector.collect())


def _as_data(families: Iterable[Metric]) -> list[dict]:
    return [{"name": family.name, "type": family.type, "documentation": family.documentation,
             "samples": [[sample.name, sample.labels, sample.value] for sample in family.samples]}
            for family in families]


def families_json(collector: Collector) -> bytes:
    """A worker's metric families, and its pid (a new pid: the worker was started again)."""
    return json.dumps({"pid": os.getpid(), "families": families_of(collector)}).encode()


class FamiliesSocket:
    """A worker above 0: serves `families_json(collector)` to each connection, from a thread
    that blocks in accept (no polling)."""

    def __init__(self, path: str, collector: Collector) -> None:
        self.path = path
        self._collector = collector
        self._sock: socket.socket | None = None

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)  # left by the worker this one replaces
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(self.path)
        self._sock.listen(4)
        threading.Thread(target=self._serve, args=(self._sock,), name="metrics-peer", daemon=True).start()

    def _serve(self, listening: socket.socket) -> None:
        while True:
            try:
                conn, _ = listening.accept()
            except OSError:  # closed by `stop`
                return
            with conn:
                try:
                    conn.sendall(families_json(self._collector))
                except OSError as exc:
                    log.debug("metrics for worker 0 not sent: %s", exc)

    def stop(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept
            self._sock.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


class _Merged:
    """One family being merged: its first-seen metadata and every worker's value per sample."""

    def __init__(self, name: str, kind: str, documentation: str) -> None:
        self.name, self.kind, self.documentation = name, kind, documentation
        self.values: dict[SampleKey, list[float]] = {}

    def add(self, key: SampleKey, value: float) -> None:
        self.values.setdefault(key, []).append(value)

    def metric(self) -> Metric:
        metric = Metric(self.name, self.documentation, self.kind)
        for (sample, labels), values in self.values.items():
            metric.add_sample(sample, dict(labels), ACROSS_WORKERS.get(sample, sum)(values))
        return metric


class WorkerMetrics(Collector):
    """Worker 0's collector: its own families (`own`) and those of workers 1 to `count - 1`, read
    from their sockets in `directory` at each scrape and merged. A worker that does not answer
    within `PEER_TIMEOUT` counts as last read, with a warning (`dns_sidecar_workers_reporting`
    says how many answered). A restarted worker counts from zero, so what its predecessor counted
    is carried over: the sums never dip, which Prometheus would read as the service restarting."""

    def __init__(self, own: Collector, directory: str, count: int) -> None:
        self._own = own
        self._directory = directory
        self._count = count
        self._seen: dict[int, tuple[int, list[dict]]] = {}  # worker -> its pid and families, last read
        self._carried: list[dict] = []  # what replaced workers had counted, as last read, merged
        self._lock = threading.Lock()  # scrapes may come on several HTTP threads at once

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            groups, reporting = [families_of(self._own)], 1
            for worker in range(1, self._count):
                families = self._read(worker)  # first: a replaced worker's counts join `_carried`
                if families is not None:
                    reporting += 1
                elif worker in self._seen:
                    families = self._seen[worker][1]  # as last read: the sums must not dip
                groups.extend(() if families is None else (families,))
            groups.append(self._carried)
            yield from (family.metric() for family in _merge(groups).values())
            yield GaugeMetricFamily("dns_sidecar_workers_reporting",
                                    f"Workers that answered this scrape, of {self._count}", value=reporting)

    def _read(self, worker: int) -> list[dict] | None:
        """Worker `worker`'s families now, or None (logged) when it does not answer in time; a
        new pid retires what the worker's predecessor counted into `_carried`."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(PEER_TIMEOUT)
                sock.connect(socket_path(self._directory, worker))
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            document = json.loads(b"".join(chunks))
            pid, families = document["pid"], document["families"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("metrics of worker %d not read (%s): counted as last read", worker, exc)
            return None
        previous = self._seen.get(worker)
        if previous is not None and previous[0] != pid:
            retired = [family for family in previous[1] if family["type"] in _CARRIED_TYPES]
            self._carried = _as_data(family.metric() for family in _merge([self._carried, retired]).values())
        self._seen[worker] = (pid, families)
        return families


def _merge(groups: Iterable[list[dict]]) -> dict[str, _Merged]:
    """Families of several workers, by name, each sample with every worker's value."""
    merged: dict[str, _Merged] = {}
    for families in groups:
        for family in families:
            target = merged.get(family["name"])
            if target is None:
                target = merged[family["name"]] = _Merged(family["name"], family["type"], family["documentation"])
            for name, labels, value in family["samples"]:
                target.add((name, tuple(sorted(labels.items()))), value)
    return merged
