"""A Transfer Family endpoint that answers as a broken or hostile server might.

DESIGN §1 "What an endpoint controls is bounded": a `Date` header, an error type, a body are
whatever the endpoint sends. This one serves on 127.0.0.1 (a random port) and answers each call
from a script: the n-th call gets the n-th answer, every later call `then`. It checks nothing
in the request; it keeps each request's headers, and what it managed to write of each streamed
body, for the test to read.
"""

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from aiohttp import web

FAR_FUTURE: Final = "Fri, 31 Dec 9999 23:59:59 GMT"
"""The last second a datetime holds: a clock offset of some 7,970 years."""
FAR_FUTURE_WEST: Final = "Fri, 31 Dec 9999 23:59:59 -1200"
"""The same wall time twelve hours west of UTC: past the last instant a datetime holds."""

_JSON_11: Final = "application/x-amz-json-1.1"
HUGE: Final = 20 * 1024 * 1024
"""A body size no caller should hold: 30 calls in flight reading it took a process to 2.9 GB."""
_CHUNK: Final = b"x" * (64 * 1024)  # one buffer, written again and again: no 20 MB string


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """One answer: a status, headers, and a body given whole or streamed (`streamed_bytes`).

    A streamed body may stop part way: after `stall_after` bytes the endpoint waits (until it
    shuts down), after `cut_after` bytes it closes the connection.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    streamed_bytes: int = 0
    stall_after: int | None = None
    cut_after: int | None = None


ACCEPTED: Final = Answer(status=200)
"""What Transfer Family answers a callback it takes: 200, empty body."""


def dated_refusal(date: str) -> Answer:
    """InvalidSignatureException "Signature expired", the answer's `Date` header `date`."""
    message = (
        "Signature expired: 20261129T120000Z is now earlier than 99991231T235459Z "
        "(99991231T235959Z - 5 min.)"
    )
    return Answer(
        status=400,
        headers={"Date": date, "Content-Type": _JSON_11},
        body=json.dumps({"__type": "InvalidSignatureException", "message": message}).encode(),
    )


def streamed_body(status: int, size: int) -> Answer:
    """A body of `size` bytes (not JSON), its length announced, written in 64 KiB chunks."""
    return Answer(status=status, headers={"Content-Type": "text/plain"}, streamed_bytes=size)


def broken_body(
    status: int, *, stall_after: int | None = None, cut_after: int | None = None
) -> Answer:
    """A 20 MB body announced, that stalls or is cut off after the bytes given."""
    return Answer(
        status=status,
        headers={"Content-Type": "text/plain"},
        streamed_bytes=HUGE,
        stall_after=stall_after,
        cut_after=cut_after,
    )


def padded_error(code: str, size: int) -> Answer:
    """A 400 naming `code` in a JSON body of exactly `size` bytes (its message the padding)."""
    bare = json.dumps({"__type": code, "message": ""}).encode()
    message = "p" * (size - len(bare))
    body = json.dumps({"__type": code, "message": message}).encode()
    assert len(body) == size, "a body that small cannot name the code"
    return Answer(status=400, headers={"Content-Type": _JSON_11}, body=body)


def error_type(code: str) -> Answer:
    """A 400 naming its error type `code` in the `X-Amzn-Errortype` header alone."""
    return Answer(
        status=400,
        headers={"X-Amzn-Errortype": code, "Content-Type": _JSON_11},
        body=b"{}",
    )


@dataclass(frozen=True, slots=True)
class Stream:
    """What the endpoint managed to write of one streamed body, and whether it wrote it all."""

    written: int
    complete: bool


@dataclass(kw_only=True, slots=True)
class HostileEndpoint:
    """A running endpoint: its URL and what it has seen and done so far."""

    url: str
    requests: list[dict[str, str]] = field(default_factory=list)
    streams: list[Stream] = field(default_factory=list)


@contextlib.asynccontextmanager
async def hostile_endpoint(
    script: Sequence[Answer], *, then: Answer = ACCEPTED
) -> AsyncIterator[HostileEndpoint]:
    """Serve `script` (then `then` for ever) on loopback until the block ends."""
    endpoint = HostileEndpoint(url="")
    shutting_down = asyncio.Event()

    async def answer(request: web.Request) -> web.StreamResponse:
        calls = len(endpoint.requests)
        endpoint.requests.append(dict(request.headers))
        await request.read()
        chosen = script[calls] if calls < len(script) else then
        if not chosen.streamed_bytes:
            return web.Response(status=chosen.status, headers=chosen.headers, body=chosen.body)
        return await stream(request, chosen)

    async def stream(request: web.Request, chosen: Answer) -> web.StreamResponse:
        response = web.StreamResponse(status=chosen.status, headers=chosen.headers)
        response.content_length = chosen.streamed_bytes
        stops = [n for n in (chosen.stall_after, chosen.cut_after) if n is not None]
        stop = min(stops, default=chosen.streamed_bytes)
        view = memoryview(_CHUNK)
        written = 0
        try:
            await response.prepare(request)
            while written < stop:
                piece = view[: min(len(_CHUNK), stop - written)]
                await response.write(piece)
                written += len(piece)
            if chosen.cut_after is not None and request.transport is not None:
                request.transport.close()
            elif chosen.stall_after is not None:
                await shutting_down.wait()
        except ConnectionError:  # the client hung up: how far it got is the point
            pass
        finally:
            endpoint.streams.append(Stream(written, written == chosen.streamed_bytes))
        return response

    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        endpoint.url = f"http://{host}:{port}"
        yield endpoint
    finally:
        shutting_down.set()  # a stalled answer ends (its client gone) rather than delay cleanup
        await runner.cleanup()
