"""`/healthz` and `/metrics` on aiohttp; the app is separate from how it is served."""

import contextlib
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from relay.observability import Metrics

Health = Callable[[], tuple[bool, str]]


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
async def serve_http(app: web.Application, host: str, port: int) -> AsyncIterator[str | None]:
    """Serves the app on host:port while the context is open; yields its URL (None if port 0)."""
    if port == 0:
        yield None
        return
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()
