"""What transports hand queries to: the handler (the slow path), or the fast path in front of
it. One call per query; the reply comes back through `send`, exactly once, maybe before the call
returns."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import Protocol

Send = Callable[[bytes | None], None]  # a reply; None: nothing to send
# For the fast path: a reply that may answer the same question again, and for how long (None:
# until the zone changes). Called before the reply is sent, and only for such a reply.
Keep = Callable[[bytes, float | None], None]


class Responder(Protocol):
    def receive(self, data: bytes, client: str, transport: str, send: Send) -> None: ...


async def reply_to(responder: Responder, data: bytes, client: str, transport: str) -> bytes | None:
    """The reply to one query, awaited: for a transport that answers one query at a time."""
    answered: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
    responder.receive(data, client, transport, partial(_settle, answered))
    return await answered


def _settle(answered: asyncio.Future[bytes | None], reply: bytes | None) -> None:
    if not answered.done():  # the asker may have gone away meanwhile
        answered.set_result(reply)
