"""A small HTTP/1.1 server whose cost is bounded whatever its clients do: one thread's event loop
holds every connection and a pool of `render_threads` runs the caller's `respond`, so idle or
slow clients hold no thread and a big page never stalls the rest. One request per connection:
its head (at most `MAX_HEAD` bytes) must arrive, and its reply be taken, within `idle_timeout`.
At `max_connections` a trusted newcomer closes the oldest connection (an untrusted one first),
as each open one is still waiting or draining; an untrusted newcomer is turned away."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

from ..net.endpoint import Endpoint

log = logging.getLogger(__name__)

MAX_HEAD = 8192
MAX_CONNECTIONS = 64
IDLE_TIMEOUT = 10.0
RENDER_THREADS = 2


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request head. `trusted` is what `trusts(client)` said when it connected."""

    client: str
    trusted: bool
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def parse_head(head: bytes, client: str, trusted: bool) -> Request | None:
    """The request line and headers, or None when they are not HTTP/1.x."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not parts[1].startswith("/"):
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return Request(client, trusted, parts[0], parts[1].split("?", 1)[0], headers)


def encode(response: Response, head_only: bool = False) -> bytes:
    reason = HTTPStatus(response.status).phrase
    headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))),
               ("Cache-Control", "no-store"), ("Connection", "close"), *response.headers]
    head = f"HTTP/1.1 {response.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers) + "\r\n"
    return head.encode("latin-1") + (b"" if head_only else response.body)


class BoundedHttpServer:
    """`start()` binds (port 0 picks a free one, see `bound`) and serves from its own thread."""

    def __init__(self, endpoint: Endpoint, respond: Callable[[Request], Response], trusts: Callable[[str], bool],
                 max_connections: int = MAX_CONNECTIONS, idle_timeout: float = IDLE_TIMEOUT,
                 render_threads: int = RENDER_THREADS) -> None:
        self._endpoint = endpoint
        self._respond = respond
        self._trusts = trusts
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self._pool = concurrent.futures.ThreadPoolExecutor(render_threads, thread_name_prefix="http-render")
        self._open: dict[asyncio.StreamWriter, bool] = {}  # oldest first -> trusted
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.bound: Endpoint | None = None
        self.evicted = 0
        self.turned_away = 0

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def start(self) -> None:
        """Bind now (an OSError is raised here), then serve from the thread."""
        family = socket.AF_INET6 if ":" in self._endpoint.host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind((self._endpoint.host, self._endpoint.port))
            listening.listen(128)
        except OSError:
            listening.close()
            raise
        self.bound = Endpoint(self._endpoint.host, listening.getsockname()[1])
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, args=(listening,), name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self, listening: socket.socket) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(asyncio.start_server(self._serve, sock=listening, limit=MAX_HEAD))
        try:
            loop.run_forever()
        finally:
            server.close()
            for writer in list(self._open):
                writer.transport.abort()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    def _make_room(self) -> bool:
        """Close the oldest untrusted connection, else the oldest; False when none is open."""
        victim = next((w for w, trusted in self._open.items() if not trusted), next(iter(self._open), None))
        if victim is None:
            return False
        del self._open[victim]
        victim.transport.abort()
        self.evicted += 1
        return True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        trusted = self._trusts(peer[0])
        if len(self._open) >= self.max_connections and not (trusted and self._make_room()):
            self.turned_away += 1
            writer.transport.abort()
            return
        self._open[writer] = trusted
        try:
            async with asyncio.timeout(self.idle_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            request = parse_head(head, peer[0], trusted)
            if request is None:
                response = Response(400, b"bad request\n")
            else:
                response = await asyncio.get_running_loop().run_in_executor(self._pool, self._respond, request)
            log.debug("http %s %r -> %d", peer[0], head.split(b"\r\n", 1)[0][:200], response.status)
            async with asyncio.timeout(self.idle_timeout):
                writer.write(encode(response, head_only=request is not None and request.method == "HEAD"))
                await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("http %s: closed (%s)", peer[0], type(exc).__name__)
        finally:
            self._open.pop(writer, None)
            writer.close()
