"""A tiny OTLP/HTTP receiver on loopback: what an OpenTelemetry collector would get from relay.

It accepts `POST /v1/traces` (protobuf `ExportTraceServiceRequest`, plain or gzip), decodes it
with opentelemetry-proto and keeps each span as a plain `ReceivedSpan`.
"""

import contextlib
import gzip
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

ERROR: int = 2
"""OTLP's STATUS_CODE_ERROR."""


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as the receiver got it: ids in hex, attributes and events as plain values."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    events: list[tuple[str, dict[str, Any]]]
    service: str

    def texts(self) -> list[str]:
        """Every text of the span: name, status, attribute and event values."""
        values = [self.name, self.status_message, *map(str, self.attributes.values())]
        for name, attributes in self.events:
            values += [name, *map(str, attributes.values())]
        return values


def _value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(item) for item in value.array_value.values)
    return getattr(value, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items}


@dataclass
class OtlpReceiver:
    """The running receiver: its base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`) and what it got."""

    url: str = ""
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0

    def named(self, name: str) -> list[ReceivedSpan]:
        """The spans of one name."""
        return [span for span in self.spans if span.name == name]

    async def handle(self, request: web.Request) -> web.Response:
        payload = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            payload = gzip.decompress(payload)
        export = ExportTraceServiceRequest()
        export.ParseFromString(payload)
        self.requests += 1
        for resource_spans in export.resource_spans:
            service = str(_attributes(resource_spans.resource.attributes).get("service.name"))
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.append(
                        ReceivedSpan(
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            kind=span.kind,
                            attributes=_attributes(span.attributes),
                            status_code=span.status.code,
                            status_message=span.status.message,
                            events=[(e.name, _attributes(e.attributes)) for e in span.events],
                            service=service,
                        )
                    )
        body = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=body, content_type="application/x-protobuf")


@contextlib.asynccontextmanager
async def serve_otlp() -> AsyncIterator[OtlpReceiver]:
    """The receiver on 127.0.0.1 and a free port, for the `with` block."""
    receiver = OtlpReceiver()
    app = web.Application()
    app.router.add_post("/v1/traces", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()
