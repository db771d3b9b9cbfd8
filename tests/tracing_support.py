"""Helpers for the tracing tests: spans kept in memory, X-Ray headers, reading span trees."""

import random
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from relay.tracing.otel import OtelTracing, resource


def memory_tracing() -> tuple[OtelTracing, InMemorySpanExporter]:
    """relay's OpenTelemetry tracing with every span kept in memory as it ends."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(
        resource=resource(), id_generator=AwsXRayIdGenerator(), shutdown_on_exit=False
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return OtelTracing(provider), exporter


def xray_header(rng: random.Random | None = None, *, sampled: bool = True) -> str:
    """A fresh X-Ray trace header, as Lambda's `_X_AMZN_TRACE_ID` or an SDK sets it."""
    rng = rng or random.Random()
    root = f"1-{rng.getrandbits(32):08x}-{rng.getrandbits(96):024x}"
    return f"Root={root};Parent={rng.getrandbits(64):016x};Sampled={'1' if sampled else '0'}"


def root_trace_id(header: str) -> str:
    """The 32 hex digits of an X-Ray header's Root (`1-8hex-24hex`)."""
    root = dict(part.split("=", 1) for part in header.split(";"))["Root"]
    return root[2:10] + root[11:]


def header_parent(header: str) -> str:
    """The Parent span id of an X-Ray header."""
    return dict(part.split("=", 1) for part in header.split(";"))["Parent"]


def trace_hex(span: ReadableSpan) -> str:
    """A span's trace id, 32 hex digits."""
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def span_hex(span: ReadableSpan) -> str:
    """A span's own id, 16 hex digits."""
    assert span.context is not None
    return f"{span.context.span_id:016x}"


def parent_hex(span: ReadableSpan) -> str | None:
    """A span's parent id, 16 hex digits (None for a root)."""
    return None if span.parent is None else f"{span.parent.span_id:016x}"


def named(spans: Iterable[ReadableSpan], name: str) -> list[ReadableSpan]:
    """The spans of one name, in the order they ended."""
    return [span for span in spans if span.name == name]


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    """The spans whose parent is `parent`."""
    return [span for span in spans if parent_hex(span) == span_hex(parent)]


def attribute_texts(spans: Iterable[ReadableSpan]) -> Iterator[str]:
    """Every attribute value, event attribute value, name and status text, as text."""
    for span in spans:
        yield span.name
        yield str(span.status.description or "")
        for value in dict(span.attributes or {}).values():
            yield str(value)
        for event in span.events:
            yield event.name
            for value in dict(event.attributes or {}).values():
                yield str(value)


def assert_no_whole_token(spans: Iterable[ReadableSpan], tokens: Iterable[str]) -> None:
    """No token appears whole anywhere in the spans."""
    texts = list(attribute_texts(spans))
    for token in tokens:
        assert not any(token in text for text in texts), f"token {token[:4]}... in a span"


def attributes(span: ReadableSpan) -> dict[str, Any]:
    """A span's attributes as a plain dict."""
    return dict(span.attributes or {})
