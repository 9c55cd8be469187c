"""Response rate limiting per client prefix (/24 for IPv4, /56 for IPv6), for UDP only: TCP
sources cannot be spoofed. A token bucket per prefix; over the rate, most queries are dropped
and every `slip`-th is answered with an empty TC reply, so a real client behind the prefix
retries over TCP and still gets through while a reflected flood gains nothing."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from enum import Enum

MAX_PREFIXES = 100_000


class Verdict(Enum):
    ANSWER = 0
    DROP = 1
    SLIP = 2


def client_prefix(client: str) -> str:
    if "." in client and ":" not in client:
        return client.rsplit(".", 1)[0]
    network = ipaddress.ip_network(f"{client.split('%', 1)[0]}/56", strict=False)
    return str(network.network_address)


class RateLimiter:
    def __init__(self, rate: float, burst: float | None = None, slip: int = 2,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate, 1.0)
        self.slip = slip
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # prefix -> [tokens, last refill, over-limit count]
        self._prefixes: dict[str, str] = {}
        self.dropped = 0
        self.slipped = 0

    def check(self, client: str) -> Verdict:
        prefix = self._prefixes.get(client)
        if prefix is None:
            if len(self._prefixes) > MAX_PREFIXES:
                self._prefixes.clear()
            prefix = self._prefixes[client] = client_prefix(client)
        now = self._clock()
        bucket = self._buckets.get(prefix)
        if bucket is None:
            if len(self._buckets) > MAX_PREFIXES:
                self._buckets.clear()  # a flood of prefixes resets the table rather than growing it
            bucket = self._buckets[prefix] = [self.burst, now, 0]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return Verdict.ANSWER
        bucket[0] = tokens
        bucket[2] += 1
        if self.slip and bucket[2] % self.slip == 0:
            self.slipped += 1
            return Verdict.SLIP
        self.dropped += 1
        return Verdict.DROP
