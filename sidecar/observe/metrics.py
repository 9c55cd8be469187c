"""What the query path counts for /metrics, kept as plain Python integers.

A count is a dict increment on labels the query path already has; nothing here talks to
`prometheus_client` (`collector` turns the counts into metric families at scrape time). A scrape
only reads, on the HTTP thread, without a lock: a count read mid-increment is one query behind."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping

from ..dns.names import rcode_name
from ..fastpath.packetcache import TAG_TRANSPORT

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
QueryLabels = tuple[str, int, str, bytes]  # transport, rcode, answer source, view key
PacketHits = Mapping[tuple[bytes, int], int]  # the packet cache's hits, by key suffix and rcode


class Histogram:
    """Bucket counts and a sum, as Prometheus wants them, filled by `Metrics.answered` with one
    bisect per sample."""

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
    """Slow-path answers by their labels (`queries`), malformed packets and resolution times. The
    packet cache counts its own hits; `query_counts` merges them in. Default dicts, so a count is
    one `+= 1`."""

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


def view_label(view: bytes) -> str:
    """The packet-cache view key as a label: the client's networks, or `host` for everyone else."""
    return view.decode() or "host"
