"""Which upstreams are worth asking. An upstream that times out or refuses the connection is
marked dead and skipped while another is alive, so one dead resolver does not cost every
question a timeout; a background probe (". NS", what every resolver can answer) marks it alive
again as soon as it replies with anything. When every upstream is dead they are all still
tried, so service resumes even between probes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from ..net.endpoint import Endpoint

log = logging.getLogger(__name__)

PROBE_INTERVAL = 1.0
FORGET_AFTER = 600.0  # stop probing an upstream nobody has wanted for this long

Probe = Callable[[Endpoint], Awaitable[object]]


class Health:
    def __init__(self, probe: Probe, interval: float = PROBE_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe = probe
        self.interval = interval
        self._clock = clock
        # upstream -> when it was last wanted. Public so the forwarding hot path can skip calling
        # `order` and `answered` while it is empty, which is nearly always.
        self.dead: dict[Endpoint, float] = {}
        self._task: asyncio.Task | None = None

    def is_dead(self, upstream: Endpoint) -> bool:
        return upstream in self.dead

    def order(self, upstreams: Sequence[Endpoint]) -> Sequence[Endpoint]:
        """The live upstreams in their configured order; all of them if none is alive."""
        if not self.dead:
            return upstreams
        alive = [u for u in upstreams if u not in self.dead]
        now = self._clock()
        for upstream in upstreams:
            if upstream in self.dead:
                self.dead[upstream] = now
        return alive or upstreams

    def failed(self, upstream: Endpoint, reason: str) -> None:
        if upstream not in self.dead:
            log.warning("upstream %s is not answering (%s); skipped until it answers again", upstream, reason)
        self.dead[upstream] = self._clock()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._probe_dead())

    def answered(self, upstream: Endpoint) -> None:
        if self.dead.pop(upstream, None) is not None:
            log.info("upstream %s answers again", upstream)

    async def _probe_dead(self) -> None:
        while self.dead:
            await asyncio.sleep(self.interval)
            now = self._clock()
            for upstream, wanted in list(self.dead.items()):
                if now - wanted > FORGET_AFTER:
                    del self.dead[upstream]
                    continue
                try:
                    await self._probe(upstream)
                except (TimeoutError, OSError, ValueError):
                    continue
                self.answered(upstream)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
