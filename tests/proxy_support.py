"""A forwarding proxy on loopback in front of a real endpoint (moto's SQS server), that holds
chosen operations for a while: for the timing cases no real endpoint shows on demand."""

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import aiohttp
from aiohttp import web

HOST: Final = "127.0.0.1"
_KEPT_HEADERS: Final = frozenset({"content-type", "x-amzn-requestid", "x-amz-crc32"})


@dataclass
class HoldingProxy:
    """Forwards every AWS JSON call; an operation named in `hold_s` waits that long first.

    `held` counts the calls of each operation being held now, `seen` every call by operation.
    """

    url: str
    hold_s: dict[str, float] = field(default_factory=dict)
    held: collections.Counter[str] = field(default_factory=collections.Counter)
    seen: collections.Counter[str] = field(default_factory=collections.Counter)


@contextlib.asynccontextmanager
async def serve_holding_proxy(target_url: str) -> AsyncIterator[HoldingProxy]:
    """A `HoldingProxy` to `target_url` on a random loopback port."""
    proxy = HoldingProxy(url="")

    async def forward(request: web.Request) -> web.Response:
        operation = request.headers.get("X-Amz-Target", "").rpartition(".")[2]
        proxy.seen[operation] += 1
        body = await request.read()
        hold_s = proxy.hold_s.get(operation, 0.0)
        if hold_s:
            proxy.held[operation] += 1
            try:
                await asyncio.sleep(hold_s)
            finally:
                proxy.held[operation] -= 1
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with client.post(target_url, data=body, headers=headers) as answer:
            payload = await answer.read()
            return web.Response(
                body=payload,
                status=answer.status,
                headers={k: v for k, v in answer.headers.items() if k.lower() in _KEPT_HEADERS},
            )

    app = web.Application()
    app.router.add_post("/", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    proxy.url = f"http://{HOST}:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession() as client:
        try:
            yield proxy
        finally:
            await runner.cleanup()
