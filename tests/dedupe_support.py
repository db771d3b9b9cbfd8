"""A DynamoDB endpoint that refuses every call, for the failures moto's server cannot show
(moto's own DynamoDB server is `relay.local.serve_moto("dynamodb")`, the `local_dynamodb`
fixture)."""

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web

HOST: Final = "127.0.0.1"


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
    answered in DynamoDB's JSON 1.0 error shape so botocore parses and retries them for real.
    """
    endpoint = RefusingEndpoint(url="")

    async def refuse(request: web.Request) -> web.Response:
        endpoint.requests.append(request.headers.get("X-Amz-Target", "").rpartition(".")[2])
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": f"{code} here"}
        return web.json_response(
            body, status=http_status, content_type="application/x-amz-json-1.0"
        )

    app = web.Application()
    app.router.add_post("/", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    port = runner.addresses[0][1]
    endpoint.url = f"http://{HOST}:{port}"
    try:
        yield endpoint
    finally:
        await runner.cleanup()


@dataclass
class SwitchableEndpoint:
    """A DynamoDB endpoint in front of a real one that a test can take down mid-run."""

    url: str
    down: bool = False
    refused: int = 0


@contextlib.asynccontextmanager
async def serve_switchable_dynamodb(target_url: str) -> AsyncIterator[SwitchableEndpoint]:
    """Forwards every call to `target_url` until `down` is set; then answers each with a
    DynamoDB `InternalServerError` (500), which botocore retries and then raises."""
    endpoint = SwitchableEndpoint(url="")

    async def forward(request: web.Request) -> web.Response:
        if endpoint.down:
            endpoint.refused += 1
            body = {
                "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                "message": "the table is down for this test",
            }
            return web.json_response(body, status=500, content_type="application/x-amz-json-1.0")
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with client.post(target_url, data=await request.read(), headers=headers) as answer:
            payload = await answer.read()
            kept = {"Content-Type", "x-amzn-RequestId", "x-amz-crc32"}
            return web.Response(
                body=payload,
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k in kept},
            )

    app = web.Application()
    app.router.add_post("/", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    endpoint.url = f"http://{HOST}:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as client:
        try:
            yield endpoint
        finally:
            await runner.cleanup()
