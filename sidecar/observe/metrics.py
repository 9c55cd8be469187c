"""Counters for /metrics, kept as plain Python integers.

The query path only does dict increments on tuples of labels it already has; nothing here talks
to `prometheus_client` until a scrape, when `SidecarCollector` turns the integers (and the state
other parts already keep: cache hit counts, zone size, file reloads, upstreams, Docker) into
metric families. A scrape runs on the HTTP thread and only reads, so no lock is needed: a
counter read mid-increment is at worst one query behind."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from dnslib import RCODE
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..fastpath.packetcache import TAG_TRANSPORT

if TYPE_CHECKING:
    from ..app import Sidecar

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QueryLabels = tuple[str, int, str, bytes]  # transport, rcode, answer source, view key
PacketHits = Mapping[tuple[bytes, int], int]  # the packet cache's hits, by key suffix and rcode


class Histogram:
    """Bucket counts and a sum, as Prometheus wants them, filled with one bisect per sample (by
    `Metrics.answered`, which does it inline: it runs once per query)."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
        self.sum = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, total = [], 0
        for bound, count in zip((*map(str, LATENCY_BUCKETS), "+Inf"), self.counts, strict=True):
            total += count
            buckets.append((bound, total))
        return buckets


class Metrics:
    """What the query path counts beyond the packet cache's hits (which it counts itself, by key
    suffix and rcode, read back into labels only when scraped): `queries` holds slow-path answers
    by their labels. Default dicts, so a count is one `+= 1` with no lookup of its own (a scrape
    only iterates them)."""

    def __init__(self) -> None:
        self.queries: defaultdict[QueryLabels, int] = defaultdict(int)
        self.malformed = 0
        self.resolve_seconds: defaultdict[str, Histogram] = defaultdict(Histogram)

    def answered(self, transport: str, rcode: int, source: str, view: bytes, seconds: float) -> None:
        """One slow-path answer: counted by its labels, its resolution time by its source."""
        self.queries[transport, rcode, source, view] += 1
        histogram = self.resolve_seconds[source]
        histogram.counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        histogram.sum += seconds

    def query_counts(self, packet_hits: PacketHits) -> Iterator[tuple[tuple[str, str, str, str], int]]:
        """Every query counter as (transport, rcode name, source, view) -> count, with the packet
        cache's `hits`."""
        for (transport, rcode, source, view), count in list(self.queries.items()):
            yield (transport, rcode_name(rcode), source, view_label(view)), count
        for (suffix, rcode), count in list(packet_hits.items()):
            yield (TAG_TRANSPORT[suffix[0]], rcode_name(rcode), "packet-cache", view_label(suffix[1:])), count

    def totals_by_rcode(self, packet_hits: PacketHits) -> dict[str, int]:
        totals: dict[str, int] = {}
        for (_, rcode, _, _), count in self.query_counts(packet_hits):
            totals[rcode] = totals.get(rcode, 0) + count
        return totals


def rcode_name(rcode: int) -> str:
    return str(RCODE.get(rcode, f"RCODE{rcode}"))


def view_label(view: bytes) -> str:
    """The packet-cache view key as a label: the client's networks, or `host` for everyone else."""
    return view.decode() or "host"


class SidecarCollector(Collector):
    """Reads a running `Sidecar` at scrape time; registered in a registry of its own so the
    process-wide default registry (and its import-time collectors) stays out of the way."""

    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    def collect(self) -> Iterator[Metric]:
        sidecar = self.sidecar
        metrics = sidecar.metrics
        queries = CounterMetricFamily("dns_sidecar_queries", "Queries answered, by rcode, transport, "
                                      "answer source and client view", labels=["transport", "rcode", "source", "view"])
        for labels, count in metrics.query_counts(sidecar.handler.packets.hits):
            queries.add_metric(labels, count)
        yield queries
        yield CounterMetricFamily("dns_sidecar_malformed_queries", "Packets that were not a usable query",
                                  value=metrics.malformed)
        yield CounterMetricFamily("dns_sidecar_packet_cache_hits", "Replies served from the packet cache",
                                  value=sidecar.handler.packets.total_hits())
        yield GaugeMetricFamily("dns_sidecar_packet_cache_entries", "Packed replies held",
                                value=len(sidecar.handler.packets))
        cache = sidecar.forwarder.cache
        yield CounterMetricFamily("dns_sidecar_cache_hits", "Forwarded answers served from the answer cache",
                                  value=cache.hits)
        yield CounterMetricFamily("dns_sidecar_cache_misses", "Forwarded questions the answer cache lacked",
                                  value=cache.misses)
        yield GaugeMetricFamily("dns_sidecar_cache_entries", "Forwarded answers held", value=len(cache))
        latency = HistogramMetricFamily("dns_sidecar_resolve_seconds", "Time to answer a packet-cache miss, "
                                        "by answer source (source=forward: the upstream round trip as "
                                        "clients see it)", labels=["source"])
        for source, histogram in list(metrics.resolve_seconds.items()):
            latency.add_metric([source], histogram.cumulative(), histogram.sum)
        yield latency
        upstreams = GaugeMetricFamily("dns_sidecar_upstream_up", "Default upstream resolvers: 1 while answering, "
                                      "0 while skipped as dead", labels=["upstream"])
        for endpoint in sidecar.upstreams():
            upstreams.add_metric([str(endpoint)], 0 if sidecar.forwarder.health.is_dead(endpoint) else 1)
        yield upstreams
        zone = sidecar.store.zone
        yield GaugeMetricFamily("dns_sidecar_zone_records", "Records in the live zone", value=len(zone.records))
        yield CounterMetricFamily("dns_sidecar_zone_swaps", "Zone rebuilds since start", value=zone.generation)
        yield CounterMetricFamily("dns_sidecar_file_reloads", "Zonefile and hosts file loads",
                                  value=sidecar.files.reloads)
        yield CounterMetricFamily("dns_sidecar_file_reload_errors", "Zonefile and hosts file loads that failed",
                                  value=sidecar.files.errors)
        connected = docker_connected(sidecar)
        if connected is not None:
            yield GaugeMetricFamily("dns_sidecar_docker_connected", "1 while the Docker event stream is up",
                                    value=int(connected))


def docker_connected(sidecar: Sidecar) -> bool | None:
    """The Docker source's connection state, or None when Docker is not watched."""
    return None if sidecar.docker is None else sidecar.docker.connected


def registry_for(collector: Collector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
