"""The UDP listener's bound on work in flight: a flood of questions that all need the slow path
sheds load (counted) instead of queueing without limit, and the listener serves again after."""

import asyncio
import socket

import dns.message
import dns.rcode
import pytest

from sidecar.api import Found
from sidecar.resolve.cache import AnswerCache
from sidecar.resolve.chain import Chain
from sidecar.resolve.forward import Forwarder
from sidecar.server.handler import QueryHandler
from sidecar.server.udp import UdpListener
from sidecar.zone.store import Store


@pytest.mark.parametrize("batched", [True, False], ids=["recvmmsg", "recvfrom"])
def test_slow_path_work_is_bounded_and_the_excess_is_dropped(batched):
    async def scenario() -> tuple[int, int, int]:
        release = asyncio.Event()

        async def slow(query):  # an upstream that takes its time, held open by the test
            await release.wait()
            return Found(f"{query.name} 0 IN A 192.0.2.1")

        handler = QueryHandler(Store(), Chain([slow], Forwarder(lambda: (), AnswerCache())))
        server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind(("127.0.0.1", 0))
        listener = UdpListener(handler, server, max_pending=4, batched=batched)
        listener.start()
        client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        for qid in range(10):
            client.sendto(dns.message.make_query(f"n{qid}.test", "A", id=qid).to_wire(), server.getsockname())
        for _ in range(50):
            await asyncio.sleep(0.01)
        dropped = listener.dropped
        release.set()
        replies = []
        for _ in range(4):
            replies.append(dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(client, 4096), 3)))
        client.sendto(dns.message.make_query("after.test", "A", id=99).to_wire(), server.getsockname())
        after = dns.message.from_wire(await asyncio.wait_for(loop.sock_recv(client, 4096), 3))
        listener.close()
        client.close()
        return dropped, sum(r.rcode() == dns.rcode.NOERROR for r in replies), after.id

    dropped, answered, after_id = asyncio.run(scenario())
    assert dropped == 6  # ten questions, four places
    assert answered == 4
    assert after_id == 99
