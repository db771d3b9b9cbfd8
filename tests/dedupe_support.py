"""A local DynamoDB endpoint for the shared delivered-memory (DESIGN §10): moto's server.

Self-contained (it moves to `relay.local` beside the SQS server later).
"""

import collections
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from aiohttp import web

HOST: Final = "127.0.0.1"


class SerialDynamoDB:
    """WSGI middleware around moto's DynamoDB app: one call at a time, each counted.

    moto's server runs a thread per request and its DynamoDB backend has no lock: a conditional
    PutItem reads the item, evaluates the condition and stores, with nothing stopping another
    thread in between, so two racing claims could both succeed where DynamoDB lets exactly one.
    (900 racing claims without this showed no double claim, thanks to the GIL, but nothing
    guarantees it.) Serialising every call gives DynamoDB's per-item atomicity for certain.
    The counts by operation let tests measure what a message costs in table calls.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        """Runs one request alone and counts it by operation (X-Amz-Target's action)."""
        operation = str(environ.get("HTTP_X_AMZ_TARGET", "")).rpartition(".")[2]
        with self._lock:
            self.calls[operation] += 1
            return self._app(environ, start_response)


@dataclass(frozen=True)
class LocalDynamoDB:
    """A running DynamoDB endpoint: its URL and the calls it has served, by operation."""

    url: str
    calls: collections.Counter[str] = field(default_factory=collections.Counter)


@contextlib.contextmanager
def serve_moto_dynamodb() -> Iterator[LocalDynamoDB]:
    """moto's DynamoDB server in this process, on a free loopback port."""
    from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    # werkzeug logs every request; test and demo output matter more.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    # DynamoDB's own app: moto's dispatcher would scan its ~200 service packages per request.
    app = SerialDynamoDB(create_backend_app("dynamodb"))
    server = make_server(HOST, 0, app, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.1},
        name="moto-dynamodb",
        daemon=True,
    )
    thread.start()
    try:
        yield LocalDynamoDB(url=f"http://{HOST}:{server.server_port}", calls=app.calls)
    finally:
        server.shutdown()
        thread.join(timeout=5)


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
