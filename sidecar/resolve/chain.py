"""The one explicit resolver chain: each resolver answers, forwards, or falls through (None);
when every one falls through, the forwarder relays the question upstream."""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import replace

from ..api import Answer, Forward, Query, Resolver
from ..dns.reply import with_records
from .forward import Forwarder


class Chain:
    def __init__(self, resolvers: Sequence[Resolver], forwarder: Forwarder) -> None:
        self.resolvers = tuple(resolvers)
        self.forwarder = forwarder

    async def resolve(self, query: Query) -> Answer:
        for resolver in self.resolvers:
            outcome = resolver(query)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if outcome is None:
                continue
            if isinstance(outcome, Answer):
                return outcome
            if isinstance(outcome, Forward):
                return await self._forward(query, outcome)
            raise TypeError(f"resolver {resolver!r} returned {type(outcome).__name__}, "
                            "expected Answer, Forward or None")
        return await self.forwarder.resolve(query)

    async def _forward(self, query: Query, forward: Forward) -> Answer:
        answer = await self.forwarder.resolve(query, forward.upstreams, forward.name)
        if not forward.prefix:
            return answer
        # A local CNAME chain that leaves our data: our records first, then the upstream's.
        answer = with_records(answer)
        return replace(answer, answer=forward.prefix + answer.answer)
