"""What observers (the HTTP window, /metrics, the workers' metrics) may read of a running sidecar.

`Sidecar.status()` builds one `Status` and hands it over, so no observer sees the app or reaches
into its parts. Each field is a callable or an object its owner keeps counting in, so every read
is live; the protocols name the few attributes observers read, all read-only."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..net.endpoint import Endpoint
from ..zone.zone import Zone
from .metrics import Metrics, PacketHits


class PacketCounts(Protocol):
    """The packet cache: its hits by key suffix and rcode, and how many replies it holds."""

    @property
    def hits(self) -> PacketHits: ...
    def total_hits(self) -> int: ...
    def __len__(self) -> int: ...


class AnswerCounts(Protocol):
    """The cache of forwarded answers."""

    @property
    def hits(self) -> int: ...
    @property
    def misses(self) -> int: ...
    def __len__(self) -> int: ...


class FileCounts(Protocol):
    """Zonefile and hosts file loads, and those that failed."""

    @property
    def reloads(self) -> int: ...
    @property
    def errors(self) -> int: ...


class DockerState(Protocol):
    """The Docker source: `resyncs` is 0 until it has listed the containers once."""

    @property
    def connected(self) -> bool: ...
    @property
    def resyncs(self) -> int: ...
    @property
    def base_url(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Status:
    zone: Callable[[], Zone]  # the live zone
    allows: Callable[[str], bool]  # whether the DNS access policy serves this client address
    bound: Callable[[], Sequence[Endpoint]]  # the DNS listeners' addresses, empty until they are up
    metrics: Metrics  # what the query path counts
    packets: PacketCounts
    answers: AnswerCounts
    upstreams: Callable[[], Sequence[Endpoint]]  # the default upstream resolvers
    upstream_dead: Callable[[Endpoint], bool]  # skipped as dead for now
    files: FileCounts
    docker: Callable[[], DockerState | None]  # None while Docker is not watched

    def docker_connected(self) -> bool | None:
        """The Docker source's connection state, or None when Docker is not watched."""
        docker = self.docker()
        return None if docker is None else docker.connected
