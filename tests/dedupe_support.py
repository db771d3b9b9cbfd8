"""DynamoDB endpoints for the failures moto's server cannot show (moto's own DynamoDB server is
`relay.local.serve_moto("dynamodb")`, the `local_dynamodb` fixture): one that refuses every
call, and proxies in front of moto that take it down, throttle and fail a share of calls, lose
answers, or answer a failed condition without the item as some DynamoDB-compatible stores do.
"""

import asyncio
import contextlib
import json
import random
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import pytest
from aiohttp import web

from relay.aws import new_session
from relay.dedupe import DedupeTable, dedupe_config
from relay.dedupe.client import open_lean_dynamodb

HOST: Final = "127.0.0.1"
JSON_10: Final = "application/x-amz-json-1.0"
THROTTLES: Final = ("ProvisionedThroughputExceededException", "ThrottlingException")
"""How DynamoDB says it is throttling: the table's capacity, or the account's request rate."""

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def dynamodb_error(code: str, http_status: int, message: str = "") -> web.Response:
    """An error in DynamoDB's JSON 1.0 shape, so botocore parses it as it would DynamoDB's."""
    body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message or code}
    return web.json_response(body, status=http_status, content_type=JSON_10)


def operation(request: web.Request) -> str:
    """The DynamoDB operation a request calls (`PutItem`), from its target header."""
    return request.headers.get("X-Amz-Target", "").rpartition(".")[2]


@contextlib.asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[str]:
    """`handler` on a random loopback port for every POST; yields its URL."""
    app = web.Application()
    app.router.add_post("/", handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    try:
        yield f"http://{HOST}:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@dataclass(frozen=True)
class Answer:
    """What the table behind a proxy answered: status, headers kept, body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def response(self) -> web.Response:
        """The answer passed on as it came."""
        return web.Response(body=self.body, status=self.status, headers=self.headers)


async def forward(client: aiohttp.ClientSession, target_url: str, request: web.Request) -> Answer:
    """Sends the request on to `target_url` (signed headers as they came) and reads the answer."""
    headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
    async with client.post(target_url, data=await request.read(), headers=headers) as answer:
        kept = {"Content-Type", "x-amzn-RequestId", "x-amz-crc32"}
        return Answer(
            status=answer.status,
            headers={k: v for k, v in answer.headers.items() if k in kept},
            body=await answer.read(),
        )


@dataclass
class RefusingEndpoint:
    """A DynamoDB endpoint that answers every call with one error; counts the requests."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serve_refusing_dynamodb(
    code: str, http_status: int = 400
) -> AsyncIterator[RefusingEndpoint]:
    """An endpoint on loopback that refuses every DynamoDB call with `code`, as DynamoDB would.

    For the failures moto's server cannot produce (it enforces no IAM and never throttles),
    answered in DynamoDB's JSON 1.0 error shape so botocore parses them for real.
    """
    endpoint = RefusingEndpoint(url="")

    async def refuse(request: web.Request) -> web.Response:
        endpoint.requests.append(operation(request))
        return dynamodb_error(code, http_status, f"{code} here")

    async with serve(refuse) as url:
        endpoint.url = url
        yield endpoint


@dataclass
class SwitchableEndpoint:
    """A DynamoDB endpoint in front of a real one that a test can take down mid-run."""

    url: str
    down: bool = False
    refused: int = 0


@contextlib.asynccontextmanager
async def serve_switchable_dynamodb(target_url: str) -> AsyncIterator[SwitchableEndpoint]:
    """Forwards every call to `target_url` until `down` is set; then answers each with a
    DynamoDB `InternalServerError` (500), which relay retries and then raises."""
    endpoint = SwitchableEndpoint(url="")

    async def answer(request: web.Request) -> web.Response:
        if endpoint.down:
            endpoint.refused += 1
            return dynamodb_error("InternalServerError", 500, "the table is down for this test")
        return (await forward(client, target_url, request)).response()

    async with aiohttp.ClientSession() as client, serve(answer) as url:
        endpoint.url = url
        yield endpoint


FORWARDED: Final = "forwarded"
THROTTLED: Final = "throttled"
FAILED: Final = "failed"
"""A 500 before the call reached the table: nothing written."""
FAILED_AFTER: Final = "failed_after"
"""The call reached the table (a write landed), then a 500: the caller cannot tell."""
HUNG: Final = "hung"
"""No answer at all (the caller's read timeout cuts it); the call did not reach the table."""
HUNG_AFTER: Final = "hung_after"
"""The call reached the table, then no answer: the caller's read timeout cuts it."""
STRIPPED: Final = "stripped"
"""A failed condition passed on without the item."""


@dataclass
class FaultyEndpoint:
    """A proxy in front of a real DynamoDB that fails calls as DynamoDB (or a look-alike) can.

    Each call draws from a seeded RNG: `throttle_share` of them are throttled (400, one of
    `THROTTLES`), `error_share` answered `InternalServerError` (500), of which `after_share`
    only after the call reached the table. `next_faults` forces the next calls' fates first
    (one of the fault names above, popped per call). `down` fails every call with a 500. With
    `strip_item`, a failed condition comes back without `Item`, after `on_stripped` (if set)
    has run. `seen` counts calls by fate, `operations` by operation.
    """

    url: str = ""
    throttle_share: float = 0.0
    error_share: float = 0.0
    after_share: float = 0.0
    strip_item: bool = False
    down: bool = False
    hang_s: float = 2.0
    next_faults: list[str] = field(default_factory=list)
    on_stripped: Callable[[], Awaitable[None]] | None = None
    seen: Counter[str] = field(default_factory=Counter)
    operations: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(default_factory=lambda: random.Random(1))

    def fate(self) -> str:
        """What happens to the next call."""
        if self.next_faults:
            return self.next_faults.pop(0)
        if self.down:
            return FAILED
        draw = self.rng.random()
        if draw < self.throttle_share:
            return THROTTLED
        if draw < self.throttle_share + self.error_share:
            return FAILED_AFTER if self.rng.random() < self.after_share else FAILED
        return FORWARDED


@contextlib.asynccontextmanager
async def serve_faulty_dynamodb(
    target_url: str, *, seed: int = 1, **settings: Any
) -> AsyncIterator[FaultyEndpoint]:
    """A `FaultyEndpoint` on loopback in front of `target_url`; `settings` are its fields."""
    endpoint = FaultyEndpoint(rng=random.Random(seed), **settings)

    async def answer(request: web.Request) -> web.Response:
        fate = endpoint.fate()
        endpoint.seen[fate] += 1
        endpoint.operations[operation(request)] += 1
        if fate == THROTTLED:
            return dynamodb_error(endpoint.rng.choice(THROTTLES), 400, "slow down")
        if fate == FAILED:
            return dynamodb_error("InternalServerError", 500, "failed before the table")
        if fate == HUNG:
            await asyncio.sleep(endpoint.hang_s)  # cut short when the caller hangs up
            return dynamodb_error("InternalServerError", 500, "too late")
        answered = await forward(client, target_url, request)
        if fate == FAILED_AFTER:
            return dynamodb_error("InternalServerError", 500, "failed after the table")
        if fate == HUNG_AFTER:
            await asyncio.sleep(endpoint.hang_s)
        if endpoint.strip_item and b"ConditionalCheckFailedException" in answered.body:
            endpoint.seen[STRIPPED] += 1
            if endpoint.on_stripped is not None:
                await endpoint.on_stripped()
            return without_item(answered).response()
        return answered.response()

    async with aiohttp.ClientSession() as client, serve(answer) as url:
        endpoint.url = url
        yield endpoint


def without_item(answer: Answer) -> Answer:
    """A failed condition's answer with its `Item` taken out (and its checksum made again)."""
    body = json.loads(answer.body)
    body.pop("Item", None)
    payload = json.dumps(body).encode()
    headers = {**answer.headers, "x-amz-crc32": str(zlib.crc32(payload) & 0xFFFFFFFF)}
    return Answer(status=answer.status, headers=headers, body=payload)


PATHS: Final = pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])
"""A test of the table's calls, run on both clients: the lean one (relay's default) and
aiobotocore's (`--no-lean-sender`), which must answer every case alike."""


@contextlib.asynccontextmanager
async def open_table_client(
    url: str | None = None, *, lean: bool, read_timeout_s: float = 1.0
) -> AsyncIterator[Any]:
    """The table's client as relay opens it, at `url` (else AWS_ENDPOINT_URL_DYNAMODB): the lean
    AWS JSON client, or aiobotocore's."""
    session = new_session()
    if lean:
        async with open_lean_dynamodb(
            session, endpoint_url=url, read_timeout_s=read_timeout_s
        ) as client:
            yield client
    else:
        config = dedupe_config(read_timeout_s=read_timeout_s)
        async with session.create_client("dynamodb", endpoint_url=url, config=config) as client:
            yield client


@contextlib.asynccontextmanager
async def open_table_at(
    url: str,
    table_name: str,
    owner: str,
    *,
    lean: bool,
    read_timeout_s: float = 1.0,
    **settings: Any,
) -> AsyncIterator[DedupeTable]:
    """A task's `DedupeTable` on its own client at `url`; `settings` go to `DedupeTable`."""
    async with open_table_client(url, lean=lean, read_timeout_s=read_timeout_s) as client:
        yield DedupeTable(client, table_name, owner, **settings)
