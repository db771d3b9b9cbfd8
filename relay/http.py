"""`/healthz` and `/metrics` on aiohttp; the app is separate from how it is served.

The server is a side door of the worker and shares its file descriptors, so it is served with
bounds: at most `MAX_CONNECTIONS` open connections (a new one beyond them closes the one idle
longest, or is closed itself when none is idle), none idle past `IDLE_TIMEOUT_S` (before its
first request's headers are complete, or between requests), a short listen backlog, and a
flood logged once a minute, not once per connection. Without them, 306 idle connections under
a limit of 256 descriptors stopped SQS receives (`Too many open files`) and hid `/healthz`.
"""

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from relay.observability import Metrics, get_logger

Health = Callable[[], tuple[bool, str]]

MAX_CONNECTIONS: Final = 32
"""Open connections the server keeps. Its clients are the ECS health check (one probe at a time,
every 15 s), a scraper or two and an operator's curl: a handful. 32 leaves room for their
retries and stays far below any descriptor limit (1024 by default, 256 in the incident), so
the worker's SQS and Transfer Family connections never go without."""

IDLE_TIMEOUT_S: Final = 5.0
"""Seconds a connection may hold no request in progress: to complete its first request's
headers, and between requests (keep-alive). Every real client sends its request at once; a
scraper that keeps its connection reconnects at its next scrape."""

LISTEN_BACKLOG: Final = 8
"""Connections the kernel queues before accepting; asyncio accepts up to this many at once,
so it also bounds the descriptors a burst holds before the cap closes them."""

FLOOD_LOG_INTERVAL_S: Final = 60.0
"""Connections shed at the cap are logged the first time, then at most once per this."""

log = get_logger("relay.http")


def create_app(health: Health, metrics: Metrics) -> web.Application:
    """The health and metrics app; `health()` says whether the worker is well and why not."""

    async def healthz(_: web.Request) -> web.Response:
        ok, detail = health()
        return web.json_response(
            {"status": "ok" if ok else "unavailable", "detail": detail}, status=200 if ok else 503
        )

    async def metrics_view(_: web.Request) -> web.Response:
        response = web.Response(body=metrics.render())
        response.content_type = "text/plain"
        response.charset = "utf-8"
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    return app


@contextlib.asynccontextmanager
async def serve_http(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_connections: int = MAX_CONNECTIONS,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
) -> AsyncIterator[str | None]:
    """Serves the app on host:port while the context is open; yields its URL (None if port 0).

    At most `max_connections` are open at once and none stays idle past `idle_timeout_s`.
    """
    if port == 0:
        yield None
        return
    if max_connections < 1:
        raise ValueError("max_connections must be at least 1")
    loop = asyncio.get_running_loop()
    connections = _Connections(loop, limit=max_connections, idle_timeout_s=idle_timeout_s)
    app.middlewares.append(connections.track)
    # aiohttp's keep-alive timeout closes a connection idle after a response; our own timer
    # covers the first request, which aiohttp before 3.14 left unbounded.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=idle_timeout_s)
    await runner.setup()
    listener: asyncio.Server | None = None
    try:
        server = runner.server
        assert server is not None  # set by setup()
        # aiohttp's Server is the protocol factory (its low-level server API); wrapping it
        # here is what lets the cap act at accept, before a request is read.
        listener = await loop.create_server(
            functools.partial(connections.accept, server), host, port, backlog=LISTEN_BACKLOG
        )
        yield f"http://{host}:{port}"
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
        if listener is not None:
            await listener.wait_closed()
        connections.close()


class _Connection(asyncio.Protocol):
    """One accepted connection: aiohttp's handler behind it, and what the cap needs to know."""

    def __init__(self, pool: "_Connections", handler: asyncio.Protocol) -> None:
        self.pool = pool
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.requests = 0
        self.busy = 0
        self.idle_since = pool.loop.time()
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.pool.opened(self)
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received()

    def pause_writing(self) -> None:
        self.handler.pause_writing()

    def resume_writing(self) -> None:
        self.handler.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.closed(self)
        self.handler.connection_lost(exc)

    def drop(self) -> None:
        """Closes the connection now, unsent data and all (a peer that does not read must not
        keep the descriptor)."""
        if self.timer is not None:
            self.timer.cancel()
        if self.transport is not None:
            self.transport.abort()


class _Refused(asyncio.Protocol):
    """A connection over the cap with nothing idle to make room: closed as soon as made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.abort()


class _Connections:
    """The server's open connections: at most `limit`, none idle past `idle_timeout_s`."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, limit: int, idle_timeout_s: float
    ) -> None:
        self.loop = loop
        self.limit = limit
        self.idle_timeout_s = idle_timeout_s
        self.open: dict[asyncio.BaseTransport, _Connection] = {}
        self.made: set[_Connection] = set()
        """Accepted, but `connection_made` has not run yet: they count against the cap."""
        self.shed = 0
        """Connections closed at the cap since the last log line."""
        self.logged_at: float | None = None

    def accept(self, server: web.Server) -> asyncio.Protocol:
        """The protocol for a connection just accepted: aiohttp's handler within the cap."""
        if len(self.open) + len(self.made) >= self.limit and not self._evict():
            self._note_shed()
            return _Refused()
        connection = _Connection(self, server())
        self.made.add(connection)
        return connection

    def opened(self, connection: _Connection) -> None:
        """A connection's transport is ready: count it and start its header deadline."""
        self.made.discard(connection)
        assert connection.transport is not None
        self.open[connection.transport] = connection
        connection.timer = self.loop.call_later(
            self.idle_timeout_s, self._expire_first_request, connection
        )

    def closed(self, connection: _Connection) -> None:
        """A connection ended, however: it no longer counts."""
        if connection.timer is not None:
            connection.timer.cancel()
        self.made.discard(connection)
        if connection.transport is not None:
            self.open.pop(connection.transport, None)

    @web.middleware
    async def track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Marks a connection busy while a request runs: its headers arrived in time, and it
        is not the one to close for a newcomer."""
        connection = self.open.get(request.transport) if request.transport else None
        if connection is None:
            return await handler(request)
        connection.requests += 1
        connection.busy += 1
        if connection.timer is not None:
            connection.timer.cancel()
            connection.timer = None
        try:
            return await handler(request)
        finally:
            connection.busy -= 1
            connection.idle_since = self.loop.time()

    def close(self) -> None:
        """Logs what was shed since the last line, when the server stops."""
        if self.shed:
            log.warning(
                "health server connections closed at the cap",
                connections=self.shed,
                max_connections=self.limit,
            )
            self.shed = 0

    def _evict(self) -> bool:
        """Closes the connection idle longest to make room; False when every one is busy."""
        idle = [c for c in self.open.values() if not c.busy]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        assert oldest.transport is not None
        self.open.pop(oldest.transport, None)
        oldest.drop()
        self._note_shed()
        return True

    def _expire_first_request(self, connection: _Connection) -> None:
        connection.timer = None
        if not connection.requests:
            connection.drop()

    def _note_shed(self) -> None:
        self.shed += 1
        now = self.loop.time()
        if self.logged_at is None:
            log.warning(
                "health server at its connection cap: closing the longest idle connection for "
                "each new one (logged again at most once a minute)",
                max_connections=self.limit,
                idle_timeout_s=self.idle_timeout_s,
            )
        elif now - self.logged_at >= FLOOD_LOG_INTERVAL_S:
            log.warning(
                "health server connections closed at the cap",
                connections=self.shed,
                interval_s=round(now - self.logged_at, 1),
                max_connections=self.limit,
            )
        else:
            return
        self.logged_at = now
        self.shed = 0
