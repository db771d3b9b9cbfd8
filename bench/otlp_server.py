"""`python -m bench.otlp_server`: a tiny OTLP/HTTP receiver (what a collector beside relay would
be) as a process of its own, on 127.0.0.1 and a free port, so its CPU is not relay's.

It accepts `POST /v1/traces` (protobuf `ExportTraceServiceRequest`, plain or gzip), decodes each
request with opentelemetry-proto and counts its spans, and answers as a collector does. Prints
`otlp listening on URL`; each `spans ID` line on stdin is answered with `spans ID N` (the spans
received so far); exits when stdin closes.
"""

import asyncio
import gzip
import sys

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

HOST = "127.0.0.1"


class Counter:
    """Spans received so far."""

    def __init__(self) -> None:
        self.spans = 0
        self.answer = ExportTraceServiceResponse().SerializeToString()

    async def traces(self, request: web.Request) -> web.Response:
        """One export: count its spans, answer success."""
        payload = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            payload = gzip.decompress(payload)
        export = ExportTraceServiceRequest()
        export.ParseFromString(payload)
        self.spans += sum(
            len(scope.spans) for spans in export.resource_spans for scope in spans.scope_spans
        )
        return web.Response(body=self.answer, content_type="application/x-protobuf")


async def serve() -> None:
    """Serve until stdin closes, answering `spans ID` lines."""
    counter = Counter()
    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_post("/v1/traces", counter.traces)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1]
    print(f"otlp listening on http://{HOST}:{port}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command, _, ident = line.strip().partition(" ")
            if command == "spans":
                print(f"spans {ident} {counter.spans}", flush=True)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(serve())
