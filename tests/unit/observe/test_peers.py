"""Worker 0's /metrics under --workers: its own figures and every other worker's, read over real
unix sockets at scrape time and merged. Summed where each worker counts its own share, merged
by `ACROSS_WORKERS` where each holds a copy, carried over when a worker is replaced, and a worker
that does not answer counted as last read, with a warning. The whole service, with real worker
processes, is in test_workers.py."""

from __future__ import annotations

import json
import logging
import socket
import threading

import pytest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from sidecar.observe.collector import registry_for
from sidecar.observe.peers import FamiliesSocket, WorkerMetrics, families_of, socket_path


class FixedFigures(Collector):
    """A stand-in for a worker's `SidecarCollector`: the same metric names, values set by the test."""

    def __init__(self, udp: int, tcp: int = 0, records: int = 10, up: int = 1, swaps: int = 1) -> None:
        self.udp, self.tcp, self.records, self.up, self.swaps = udp, tcp, records, up, swaps

    def collect(self):
        queries = CounterMetricFamily("dns_sidecar_queries", "Queries", labels=["transport"])
        queries.add_metric(["udp"], self.udp)
        if self.tcp:
            queries.add_metric(["tcp"], self.tcp)
        yield queries
        latency = HistogramMetricFamily("dns_sidecar_resolve_seconds", "Time", labels=["source"])
        latency.add_metric(["forward"], [("0.01", self.udp), ("+Inf", self.udp + self.tcp)], 0.5)
        yield latency
        yield GaugeMetricFamily("dns_sidecar_zone_records", "Records", value=self.records)
        yield CounterMetricFamily("dns_sidecar_zone_swaps", "Swaps", value=self.swaps)
        upstream = GaugeMetricFamily("dns_sidecar_upstream_up", "Up", labels=["upstream"])
        upstream.add_metric(["192.0.2.1:53"], self.up)
        yield upstream


def scrape(collector: Collector) -> dict[tuple[str, tuple], float]:
    """The exposition as a client parses it: (sample name, labels) -> value."""
    text = generate_latest(registry_for(collector)).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


@pytest.fixture
def peer(tmp_path):
    """Starts a `FamiliesSocket` for worker `index` serving `collector`; stopped afterwards."""
    started: list[FamiliesSocket] = []

    def start(index: int, collector: Collector) -> FamiliesSocket:
        families = FamiliesSocket(socket_path(str(tmp_path), index), collector)
        families.start()
        started.append(families)
        return families

    yield start
    for families in started:
        families.stop()


def test_counters_and_histograms_are_summed_and_copied_state_is_merged(tmp_path, peer):
    peer(1, FixedFigures(udp=4, tcp=1, up=0))
    merged = scrape(WorkerMetrics(FixedFigures(udp=3), str(tmp_path), 2))

    assert merged["dns_sidecar_queries_total", (("transport", "udp"),)] == 7
    assert merged["dns_sidecar_queries_total", (("transport", "tcp"),)] == 1
    assert merged["dns_sidecar_resolve_seconds_bucket", (("le", "0.01"), ("source", "forward"))] == 7
    assert merged["dns_sidecar_resolve_seconds_bucket", (("le", "+Inf"), ("source", "forward"))] == 8
    assert merged["dns_sidecar_resolve_seconds_sum", (("source", "forward"),)] == 1.0
    assert merged["dns_sidecar_zone_records", ()] == 10  # every worker holds the same zone
    assert merged["dns_sidecar_zone_swaps_total", ()] == 1
    assert merged["dns_sidecar_upstream_up", (("upstream", "192.0.2.1:53"),)] == 0  # one worker finds it dead
    assert merged["dns_sidecar_workers_reporting", ()] == 2


def test_a_peer_that_does_not_answer_counts_as_last_read_and_is_logged(tmp_path, peer, caplog):
    worker_1 = peer(1, FixedFigures(udp=4))  # worker 2 never started: never read
    collector = WorkerMetrics(FixedFigures(udp=3), str(tmp_path), 3)
    udp = ("dns_sidecar_queries_total", (("transport", "udp"),))
    with caplog.at_level(logging.WARNING, logger="sidecar.observe.peers"):
        merged = scrape(collector)
    assert merged[udp] == 7
    assert merged["dns_sidecar_workers_reporting", ()] == 2
    assert "metrics of worker 2 not read" in caplog.text and "worker 1" not in caplog.text

    worker_1.stop()  # busy, or being started again
    with caplog.at_level(logging.WARNING, logger="sidecar.observe.peers"):
        merged = scrape(collector)
    assert merged[udp] == 7  # not 3: a sum that dipped would read as a restart of the service
    assert merged["dns_sidecar_workers_reporting", ()] == 1
    assert "metrics of worker 1 not read" in caplog.text


def test_the_single_process_exposition_is_unchanged_apart_from_the_workers_gauge(tmp_path):
    own = FixedFigures(udp=3, tcp=2)
    merged = scrape(WorkerMetrics(own, str(tmp_path), 1))
    assert merged.pop(("dns_sidecar_workers_reporting", ())) == 1
    assert merged == scrape(own)


def serve_documents(path: str, documents: list[dict]) -> threading.Thread:
    """A peer that answers one connection per document, in order: lets a test choose the pid."""
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(path)
    listening.listen(1)

    def answer() -> None:
        with listening:
            for document in documents:
                conn, _ = listening.accept()
                with conn:
                    conn.sendall(json.dumps(document).encode())

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def document(pid: int, udp: int, swaps: int) -> dict:
    return {"pid": pid, "families": families_of(FixedFigures(udp=udp, swaps=swaps))}


def test_what_a_replaced_worker_counted_is_carried_so_sums_never_go_down(tmp_path):
    serve_documents(socket_path(str(tmp_path), 1), [document(100, udp=5, swaps=4), document(101, udp=2, swaps=1),
                                                    document(101, udp=3, swaps=2)])
    collector = WorkerMetrics(FixedFigures(udp=1), str(tmp_path), 2)
    udp = ("dns_sidecar_queries_total", (("transport", "udp"),))

    assert scrape(collector)[udp] == 1 + 5
    after_restart = scrape(collector)  # pid 101: worker 1 was started again and counts from 0
    assert after_restart[udp] == 1 + 5 + 2
    assert after_restart["dns_sidecar_resolve_seconds_bucket", (("le", "+Inf"), ("source", "forward"))] == 1 + 5 + 2
    assert after_restart["dns_sidecar_zone_swaps_total", ()] == 4  # a copy of the same swaps: the most seen
    assert scrape(collector)[udp] == 1 + 5 + 3  # the same worker again: nothing carried twice


def test_a_peer_that_sends_garbage_is_left_out_and_logged(tmp_path, caplog):
    path = socket_path(str(tmp_path), 1)
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(path)
    listening.listen(2)

    def answer() -> None:
        with listening:
            for reply in (b"not json", json.dumps({"families": []}).encode()):  # no pid
                conn, _ = listening.accept()
                with conn:
                    conn.sendall(reply)

    threading.Thread(target=answer, daemon=True).start()
    collector = WorkerMetrics(FixedFigures(udp=3), str(tmp_path), 2)
    with caplog.at_level(logging.WARNING, logger="sidecar.observe.peers"):
        for _ in range(2):
            merged = scrape(collector)
            assert merged["dns_sidecar_queries_total", (("transport", "udp"),)] == 3
            assert merged["dns_sidecar_workers_reporting", ()] == 1
    assert caplog.text.count("metrics of worker 1 not read") == 2
