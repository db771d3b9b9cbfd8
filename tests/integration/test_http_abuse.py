"""The health and metrics server under abuse: a cap on open connections, an idle timeout, and a
flood logged once, so that connections to it cannot starve the worker's own sockets."""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from relay.http import LISTEN_BACKLOG, create_app, serve_http
from relay.observability import Metrics
from tests.integration.worker_support import free_port
from tests.support import eventually

LIMIT = 16
FLOOD = 200
FIRST_LINE = "health server at its connection cap"
SUMMARY_LINE = "health server connections closed at the cap"

Client = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def server_sockets(port: int) -> int:
    """Descriptors this process holds for sockets whose local port is `port` (the listener and
    the server's side of each connection; the test's client sockets have other local ports)."""
    inodes = set()
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    held = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            held += target.startswith("socket:[") and target[8:-1] in inodes
    return held


def closed_by_server(client: Client) -> bool:
    """Whether the server ended this connection (FIN or RST), as the client has seen it."""
    reader, writer = client
    return reader.at_eof() or reader.exception() is not None or writer.transport.is_closing()


async def read_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := await reader.read(65536):
            received += chunk
    return received


@contextlib.asynccontextmanager
async def connections() -> AsyncIterator[list[Client]]:
    """Client connections a test opens; all closed at the end."""
    clients: list[Client] = []
    try:
        yield clients
    finally:
        for _, writer in clients:
            writer.close()
        for _, writer in clients:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def flood_lines(logs: list[dict[str, object]]) -> list[dict[str, object]]:
    return [entry for entry in logs if str(entry["event"]).startswith((FIRST_LINE, SUMMARY_LINE))]


async def test_a_flood_of_idle_connections_is_held_to_the_cap_and_healthz_still_answers() -> None:
    """200 idle connections leave at most the cap (plus one accept burst) open on the server's
    side, every connection beyond the cap is closed, a fresh /healthz still answers 200, and
    the flood is one log line while it lasts and one summary with its count at the end."""
    port = free_port()
    app = create_app(lambda: (True, "polling"), Metrics())
    with capture_logs() as logs:
        async with (
            serve_http(app, "127.0.0.1", port, max_connections=LIMIT, idle_timeout_s=60) as url,
            connections() as clients,
        ):
            peak = 0
            for _ in range(FLOOD):
                clients.append(await asyncio.open_connection("127.0.0.1", port))
                peak = max(peak, server_sockets(port))
            await eventually(
                lambda: sum(map(closed_by_server, clients)) == FLOOD - LIMIT,
                timeout_s=30,
                what="every connection beyond the cap closed",
            )
            # The oldest were closed for the newest: the last LIMIT are the ones still open.
            assert not any(map(closed_by_server, clients[-LIMIT:]))

            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(f"{url}/healthz") as response,
            ):
                assert response.status == 200
                assert (await response.json())["status"] == "ok"
            held = server_sockets(port)
            during = flood_lines(logs)

    assert peak <= LIMIT + 3 * LISTEN_BACKLOG + 1, peak
    assert held <= LIMIT + 1, held
    assert [entry["event"] for entry in during] == [during[0]["event"]]
    assert str(during[0]["event"]).startswith(FIRST_LINE)
    assert during[0]["log_level"] == "warning"
    [first, summary] = flood_lines(logs)
    assert first == during[0]
    assert str(summary["event"]) == SUMMARY_LINE
    # One for the first line, the rest in the summary: the flood's oldest FLOOD - LIMIT, and
    # one more closed to make room for the /healthz request.
    assert 1 + int(str(summary["connections"])) == FLOOD - LIMIT + 1


async def test_connections_without_a_request_in_progress_are_closed_after_the_idle_timeout() -> (
    None
):
    """A connection that sends nothing, one whose headers never end, and one idle after its
    response are all closed by the server; then it holds only its listening socket."""
    port = free_port()
    app = create_app(lambda: (True, "polling"), Metrics())
    async with (
        serve_http(app, "127.0.0.1", port, idle_timeout_s=0.5),
        connections() as clients,
    ):
        for _ in range(3):
            clients.append(await asyncio.open_connection("127.0.0.1", port))
        _, partial, kept_alive = clients  # the first sends nothing
        partial[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        kept_alive[1].write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        received = await asyncio.wait_for(
            asyncio.gather(*(read_until_closed(reader) for reader, _ in clients)), 30
        )
        await eventually(lambda: server_sockets(port) == 1, what="only the listener left")

    assert received[0] == b""
    assert received[1] == b""
    assert received[2].startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"status": "ok"' in received[2]


async def test_a_newcomer_is_refused_when_every_connection_has_a_request_in_progress() -> None:
    """With the cap taken by requests still running, a new connection is closed at once (none
    is idle to make room), and the running requests still complete."""
    release = asyncio.Event()
    started = 0

    async def slow(_: web.Request) -> web.Response:
        nonlocal started
        started += 1
        await release.wait()
        return web.Response(text="done")

    app = web.Application()
    app.router.add_get("/slow", slow)
    port = free_port()
    with capture_logs() as logs:
        async with (
            serve_http(app, "127.0.0.1", port, max_connections=2, idle_timeout_s=60),
            connections() as clients,
        ):
            for _ in range(2):
                clients.append(await asyncio.open_connection("127.0.0.1", port))
                clients[-1][1].write(b"GET /slow HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            await eventually(lambda: started == 2, what="both requests running")
            newcomer = await asyncio.open_connection("127.0.0.1", port)
            clients.append(newcomer)
            refused = await asyncio.wait_for(read_until_closed(newcomer[0]), 30)
            release.set()
            answers = [await asyncio.wait_for(reader.read(65536), 30) for reader, _ in clients[:2]]

    assert refused == b""
    assert all(answer.startswith(b"HTTP/1.1 200 OK\r\n") for answer in answers)
    assert [str(e["event"]).split(":")[0] for e in flood_lines(logs)] == [FIRST_LINE]


@pytest.mark.parametrize("limit", [0, -1])
async def test_a_cap_below_one_is_refused(limit: int) -> None:
    """A server that could accept no connection at all is a configuration mistake."""
    with pytest.raises(ValueError, match="max_connections"):
        async with serve_http(web.Application(), "127.0.0.1", free_port(), max_connections=limit):
            pass
