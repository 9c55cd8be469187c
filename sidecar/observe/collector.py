"""/metrics: turns a `Status` into Prometheus metric families at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .status import Status


class SidecarCollector(Collector):
    """Reads a sidecar's `Status` at each scrape."""

    def __init__(self, status: Status) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        status = self.status
        metrics, packets, answers = status.metrics, status.packets, status.answers
        queries = CounterMetricFamily("dns_sidecar_queries", "Queries answered, by rcode, transport, "
                                      "answer source and client view", labels=["transport", "rcode", "source", "view"])
        for labels, count in metrics.query_counts(packets.hits):
            queries.add_metric(labels, count)
        yield queries
        yield CounterMetricFamily("dns_sidecar_malformed_queries", "Packets that were not a usable query",
                                  value=metrics.malformed)
        yield CounterMetricFamily("dns_sidecar_packet_cache_hits", "Replies served from the packet cache",
                                  value=packets.total_hits())
        yield GaugeMetricFamily("dns_sidecar_packet_cache_entries", "Packed replies held", value=len(packets))
        yield CounterMetricFamily("dns_sidecar_cache_hits", "Forwarded answers served from the answer cache",
                                  value=answers.hits)
        yield CounterMetricFamily("dns_sidecar_cache_misses", "Forwarded questions the answer cache lacked",
                                  value=answers.misses)
        yield GaugeMetricFamily("dns_sidecar_cache_entries", "Forwarded answers held", value=len(answers))
        latency = HistogramMetricFamily("dns_sidecar_resolve_seconds", "Time to answer a packet-cache miss, "
                                        "by answer source (source=forward: the upstream round trip as "
                                        "clients see it)", labels=["source"])
        for source, histogram in list(metrics.resolve_seconds.items()):
            latency.add_metric([source], histogram.cumulative(), histogram.sum)
        yield latency
        upstreams = GaugeMetricFamily("dns_sidecar_upstream_up", "Default upstream resolvers: 1 while answering, "
                                      "0 while skipped as dead", labels=["upstream"])
        for endpoint in status.upstreams():
            upstreams.add_metric([str(endpoint)], 0 if status.upstream_dead(endpoint) else 1)
        yield upstreams
        zone = status.zone()
        yield GaugeMetricFamily("dns_sidecar_zone_records", "Records in the live zone", value=len(zone.records))
        yield CounterMetricFamily("dns_sidecar_zone_swaps", "Zone rebuilds since start", value=zone.generation)
        yield CounterMetricFamily("dns_sidecar_file_reloads", "Zonefile and hosts file loads",
                                  value=status.files.reloads)
        yield CounterMetricFamily("dns_sidecar_file_reload_errors", "Zonefile and hosts file loads that failed",
                                  value=status.files.errors)
        connected = status.docker_connected()
        if connected is not None:
            yield GaugeMetricFamily("dns_sidecar_docker_connected", "1 while the Docker event stream is up",
                                    value=int(connected))


def registry_for(collector: Collector) -> CollectorRegistry:
    """A registry of its own, so the process-wide default one (and its import-time collectors)
    stays out of /metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry
