"""relay's spans on OpenTelemetry: imported only when tracing is asked for (the `otel` extra).

The conventions (OpenTelemetry's semantic conventions: messaging for SQS, RPC for AWS calls):

- a message: `process QUEUE` (a replay: `replay DLQ`), consumer; `messaging.system` `aws_sqs`,
  `messaging.operation.type` `process`, `messaging.operation.name`,
  `messaging.destination.name`, `messaging.message.id`, and relay's `relay.workflow_id`,
  `relay.execution_id`, `relay.status`, `relay.receive_count`, `relay.outcome`,
  `relay.reason`, `relay.error_code`, `relay.attempts`;
- a callback attempt: `Transfer.SendWorkflowStepState`, client; `rpc.system` `aws-api`,
  `rpc.service` `Transfer`, `rpc.method`, `http.response.status_code`, `aws.request_id`,
  `error.type`, `relay.attempt`, `relay.retry_after_s`; the wait before the next attempt is
  a `relay.backoff` event on the message's span (`relay.backoff_s`);
- a table call (with its retries): `DynamoDB.OPERATION`, client; `rpc.*` as above,
  `db.system` `dynamodb`, `db.operation.name`, `aws.dynamodb.table_names`, `error.type`;
- a send (a dead-letter copy, a replay put back): `send QUEUE`, producer; the messaging
  attributes with `send`, and `relay.reason`.

A message's `process` span is the child of the context it carries (`traceparent` first, else
the X-Ray `AWSTraceHeader`), or the root of a new trace. The messaging conventions leave parent
or link to the instrumentation; relay takes each message on its own (a receive's batch is split
at once, one task per message), so a child continues the producer's trace, which X-Ray shows as
one trace and links do not. Trace ids are X-Ray's (`AwsXRayIdGenerator`: the first 32 bits
are the time), so X-Ray accepts every trace relay starts. No span attribute holds a token.
"""

from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.propagators.aws import AwsXRayPropagator
from opentelemetry.sdk.extension.aws.trace import AwsXRayIdGenerator
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

import relay
from relay.errors import ConfigError
from relay.message import StepResult
from relay.tracing import LogProcessor
from relay.tracing.context import (
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    context_of,
    traceparent_ok,
)

SERVICE_NAME: Final = "relay"
"""`service.name` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` names one."""
SCOPE: Final = "relay"
MESSAGING_SYSTEM: Final = "aws_sqs"
ERROR_OUTCOMES: Final = frozenset({"dead_lettered", "failed"})
"""Outcomes whose span is an error: a dead-lettered message, a failed replay."""
XRAY_HEADER_KEY: Final = "X-Amzn-Trace-Id"
PROTOCOLS: Final = ("http/protobuf", "grpc")

_W3C = TraceContextTextMapPropagator()
_XRAY = AwsXRayPropagator()


class OtelSpan:
    """One OpenTelemetry span, current while the `with` block runs."""

    __slots__ = ("_token", "span")

    def __init__(self, span: trace.Span) -> None:
        self.span = span
        self._token: object = None

    def __enter__(self) -> "OtelSpan":
        self._token = context_api.attach(trace.set_span_in_context(self.span))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is not None:
                # Exceptions are not recorded: their text may hold what a span must not (a
                # token in an error message). relay's errors carry an AWS code (`SqsError`,
                # `DedupeUnavailable`, `CallbackError`): that, or else the type, says enough.
                error = str(getattr(exc, "code", "") or exc_type.__name__)
                self.span.set_attribute("error.type", error)
                if issubclass(exc_type, Exception):  # not a cancellation (a stop)
                    self.span.set_status(Status(StatusCode.ERROR, error))
            self.span.end()
        finally:
            context_api.detach(self._token)  # type: ignore[arg-type]

    def step(self, step: StepResult) -> None:
        self.span.set_attributes(
            {
                "relay.workflow_id": step.workflow_id,
                "relay.execution_id": step.execution_id,
                "relay.status": step.status.value,
            }
        )

    def execution_state(self, state: str) -> None:
        self.span.set_attribute("relay.execution_state", state)

    def ended(
        self, outcome: str, reason: str | None, code: str | None, attempts: int | None
    ) -> None:
        span = self.span
        span.set_attribute("relay.outcome", outcome)
        if attempts is not None:
            span.set_attribute("relay.attempts", attempts)
        if reason:
            span.set_attribute("relay.reason", reason)
        if code:
            span.set_attribute("relay.error_code", code)
        if outcome in ERROR_OUTCOMES:
            span.set_attribute("error.type", reason or outcome)
            span.set_status(Status(StatusCode.ERROR, f"{outcome}: {reason or code}"))

    def answered(
        self,
        http_status: int | None,
        request_id: str | None,
        error: str | None,
        retry_after_s: float | None = None,
    ) -> None:
        span = self.span
        if http_status is not None:
            span.set_attribute("http.response.status_code", http_status)
        if request_id:
            span.set_attribute("aws.request_id", request_id)
        if retry_after_s is not None:
            span.set_attribute("relay.retry_after_s", retry_after_s)
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR, error))

    def failed(self, error: str) -> None:
        self.span.set_attribute("error.type", error)
        self.span.set_status(Status(StatusCode.ERROR, error))

    def context(self) -> TraceContext:
        context = self.span.get_span_context()
        if not context.is_valid:
            return TraceContext()
        return context_of(
            context.trace_id,
            context.span_id,
            context.trace_flags.sampled,
            context.trace_state.to_header(),
        )


def carried_context(trace_header: str | None, attributes: Mapping[str, str]) -> Any:
    """The OpenTelemetry context a message carries: `traceparent` (with `tracestate`) when it
    is well formed, else the X-Ray header; an empty context (a new trace) when neither reads."""
    empty = context_api.Context()
    parent = attributes.get(TRACEPARENT)
    if traceparent_ok(parent):
        carrier = {TRACEPARENT: parent, TRACESTATE: attributes.get(TRACESTATE, "")}
        found = _W3C.extract(carrier, context=empty)
        if trace.get_current_span(found).get_span_context().is_valid:
            return found
    if trace_header:
        return _XRAY.extract({XRAY_HEADER_KEY: trace_header}, context=empty)
    return empty


def _log_fields(logger: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog: the current span's `trace_id` and `span_id` on the line (32 and 16 hex)."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = f"{context.trace_id:032x}"
        event["span_id"] = f"{context.span_id:016x}"
    return event


class OtelTracing:
    """relay's spans on a `TracerProvider` (tests give one with an in-memory exporter)."""

    enabled = True

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer(SCOPE, relay.__version__)
        self.log_processor: LogProcessor | None = _log_fields

    def process(
        self,
        queue: str,
        message_id: str,
        receive_count: int | None,
        trace_header: str | None,
        attributes: Mapping[str, str],
        operation: str = "process",
    ) -> OtelSpan:
        span = self.tracer.start_span(
            f"{operation} {queue}",
            context=carried_context(trace_header, attributes),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": operation,
                "messaging.destination.name": queue,
                "messaging.message.id": message_id,
            },
            record_exception=False,
            set_status_on_exception=False,
        )
        if receive_count is not None:
            span.set_attribute("relay.receive_count", receive_count)
        return OtelSpan(span)

    def send(self, queue: str, reason: str | None = None) -> OtelSpan:
        attributes: dict[str, str] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": queue,
        }
        if reason:
            attributes["relay.reason"] = reason
        return self._span(f"send {queue}", SpanKind.PRODUCER, attributes)

    def callback(self, attempt: int) -> OtelSpan:
        return self._span(
            "Transfer.SendWorkflowStepState",
            SpanKind.CLIENT,
            {
                "rpc.system": "aws-api",
                "rpc.service": "Transfer",
                "rpc.method": "SendWorkflowStepState",
                "relay.attempt": attempt,
            },
        )

    def table(self, operation: str, table_name: str) -> OtelSpan:
        return self._span(
            f"DynamoDB.{operation}",
            SpanKind.CLIENT,
            {
                "rpc.system": "aws-api",
                "rpc.service": "DynamoDB",
                "rpc.method": operation,
                "db.system": "dynamodb",
                "db.operation.name": operation,
                "aws.dynamodb.table_names": (table_name,),
            },
        )

    def backoff(self, delay_s: float, attempt: int, error: str | None) -> None:
        span = trace.get_current_span()
        attributes: dict[str, Any] = {
            "relay.backoff_s": round(delay_s, 3),
            "relay.next_attempt": attempt + 1,
        }
        if error is not None:
            attributes["error.type"] = error
        span.add_event("relay.backoff", attributes)

    def shutdown(self) -> None:
        self.provider.shutdown()

    def _span(self, name: str, kind: SpanKind, attributes: Mapping[str, Any]) -> OtelSpan:
        span = self.tracer.start_span(
            name, kind=kind, attributes=attributes, record_exception=False
        )
        return OtelSpan(span)


def exporters(env: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters `OTEL_TRACES_EXPORTER` names (`otlp` when unset, as the SDK's default),
    OTLP over `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` or `OTEL_EXPORTER_OTLP_PROTOCOL`
    (`http/protobuf` unless `grpc`); the exporters read their endpoint and headers themselves."""
    names = [n.strip().lower() for n in env.get("OTEL_TRACES_EXPORTER", "otlp").split(",")]
    found: list[SpanExporter] = []
    for name in filter(None, names):
        if name == "none":
            continue
        if name == "console":
            found.append(ConsoleSpanExporter())
        elif name == "otlp":
            found.append(_otlp_exporter(env))
        else:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (relay knows otlp, console, none)"
            )
    return found


def _otlp_exporter(env: Mapping[str, str]) -> SpanExporter:
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol == "http/protobuf":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter()
    raise ConfigError(
        f"OTEL_EXPORTER_OTLP_PROTOCOL: {protocol!r} is not one relay exports with "
        f"({' or '.join(PROTOCOLS)})"
    )


def resource() -> Resource:
    """The SDK's resource (`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_SERVICE_NAME`), named `relay`
    and given relay's version where those say nothing."""
    found = Resource.create()
    defaults: dict[str, str] = {}
    if str(found.attributes.get("service.name", "")).startswith("unknown_service"):
        defaults["service.name"] = SERVICE_NAME
    if "service.version" not in found.attributes:
        defaults["service.version"] = relay.__version__
    return found.merge(Resource(defaults)) if defaults else found


def open_otel_tracing(env: Mapping[str, str]) -> OtelTracing:
    """Tracing as the environment asks: X-Ray ids, the sampler of `OTEL_TRACES_SAMPLER`, a
    batch processor per exporter (shut down, so flushed, by `OtelTracing.shutdown`)."""
    chosen = exporters(env)
    provider = TracerProvider(
        resource=resource(), id_generator=AwsXRayIdGenerator(), shutdown_on_exit=False
    )
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return OtelTracing(provider)
