"""Tracing (DESIGN §12): off unless asked for, and then OpenTelemetry's, from the `otel` extra.

relay's code talks to a `Tracing`: `NO_TRACING` when tracing is off, whose spans are one shared
object that does nothing (no allocation per message, no OpenTelemetry imported), or
`relay.tracing.otel`'s, imported only by `start_tracing` when tracing is asked for. The spans
are relay's own vocabulary (a message processed, a callback attempt, a table call, a send to a
queue); `relay.tracing.otel` turns them into OpenTelemetry's conventions.

Asked for the OpenTelemetry way: `OTEL_TRACES_EXPORTER` set to an exporter (`otlp`, `console`)
or `--tracing`; `OTEL_SDK_DISABLED=true` turns it off whatever else says. The rest
(`OTEL_EXPORTER_OTLP_ENDPOINT`, `_PROTOCOL`, `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, ...) is the SDK's to read. `relay.tracing.context` reads and writes the
context a message carries, without OpenTelemetry (the producer uses it too).
"""

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Final, Protocol

from relay.errors import ConfigError
from relay.message import StepResult
from relay.tracing.context import NO_CONTEXT, TraceContext

EXPORTER_ENV: Final = "OTEL_TRACES_EXPORTER"
DISABLED_ENV: Final = "OTEL_SDK_DISABLED"
INSTALL_HINT: Final = "pip install 'transfer-family-relay[otel]'"

LogProcessor = Callable[[Any, str, dict[str, Any]], dict[str, Any]]
"""A structlog processor."""


class Span(Protocol):
    """What relay tells a span; each method fits one kind of span and is ignored by others.

    An exception leaving the `with` block marks the span failed with the exception's `code`
    (relay's errors carry the AWS error code), or its type; its text is never recorded.
    """

    def __enter__(self) -> "Span": ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

    def step(self, step: StepResult) -> None:
        """The step result the message carries (its ids and status; never the token)."""

    def execution_state(self, state: str) -> None:
        """A replayed copy's execution state as the replay judged it (DESIGN §11)."""

    def ended(
        self, outcome: str, reason: str | None, code: str | None, attempts: int | None
    ) -> None:
        """How the message ended (DESIGN §3; a replay's `replayed` or `failed`), with the
        callback attempts when counted; a dead-lettered message and a failed replay are
        errors, with their reason."""

    def answered(
        self,
        http_status: int | None,
        request_id: str | None,
        error: str | None,
        retry_after_s: float | None = None,
    ) -> None:
        """How a call was answered: the HTTP status, the request id, the error code if any."""

    def failed(self, error: str) -> None:
        """The span's work failed with this error code."""

    def context(self) -> TraceContext:
        """The context a message sent within this span carries on (empty when off)."""


class Tracing(Protocol):
    """Starts relay's spans; each is a context manager that is current while open."""

    enabled: bool
    log_processor: LogProcessor | None
    """Adds `trace_id` and `span_id` to log lines written within a span (None when off)."""

    def process(
        self,
        queue: str,
        message_id: str,
        receive_count: int | None,
        trace_header: str | None,
        attributes: Mapping[str, str],
        operation: str = "process",
    ) -> Span:
        """A message taken off `queue` (its name), in the trace it carries."""

    def send(self, queue: str, reason: str | None = None) -> Span:
        """A message sent to `queue` (its name): a dead-letter copy, a replay."""

    def callback(self, attempt: int) -> Span:
        """One `SendWorkflowStepState` attempt (the first is 1)."""

    def table(self, operation: str, table_name: str) -> Span:
        """One call to the fleet's DynamoDB table, with its retries."""

    def backoff(self, delay_s: float, attempt: int, error: str | None) -> None:
        """The current span waits `delay_s` before attempt `attempt + 1`."""

    def shutdown(self) -> None:
        """Exports what is left; called once at exit."""


class _NoSpan:
    """The span of `NO_TRACING`: one shared object, entered by every message, doing nothing."""

    __slots__ = ()

    def __enter__(self) -> "_NoSpan":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        return None

    def step(self, step: StepResult) -> None:
        return None

    def execution_state(self, state: str) -> None:
        return None

    def ended(
        self, outcome: str, reason: str | None, code: str | None, attempts: int | None
    ) -> None:
        return None

    def answered(
        self,
        http_status: int | None,
        request_id: str | None,
        error: str | None,
        retry_after_s: float | None = None,
    ) -> None:
        return None

    def failed(self, error: str) -> None:
        return None

    def context(self) -> TraceContext:
        return NO_CONTEXT


NO_SPAN: Final = _NoSpan()


class NoTracing:
    """Tracing off: every span is `NO_SPAN`."""

    enabled = False
    log_processor: LogProcessor | None = None

    def process(
        self,
        queue: str,
        message_id: str,
        receive_count: int | None,
        trace_header: str | None,
        attributes: Mapping[str, str],
        operation: str = "process",
    ) -> Span:
        return NO_SPAN

    def send(self, queue: str, reason: str | None = None) -> Span:
        return NO_SPAN

    def callback(self, attempt: int) -> Span:
        return NO_SPAN

    def table(self, operation: str, table_name: str) -> Span:
        return NO_SPAN

    def backoff(self, delay_s: float, attempt: int, error: str | None) -> None:
        return None

    def shutdown(self) -> None:
        return None


NO_TRACING: Final = NoTracing()


def tracing_requested(env: Mapping[str, str], *, flag: bool = False) -> bool:
    """Whether tracing is asked for: `--tracing`, or an exporter in `OTEL_TRACES_EXPORTER`
    (`none` is none); `OTEL_SDK_DISABLED=true` wins over both."""
    if env.get(DISABLED_ENV, "").strip().lower() == "true":
        return False
    if flag:
        return True
    exporters = {name.strip().lower() for name in env.get(EXPORTER_ENV, "").split(",")}
    return bool(exporters - {"", "none"})


def start_tracing(env: Mapping[str, str], *, flag: bool = False) -> Tracing:
    """`NO_TRACING`, or OpenTelemetry's tracing when asked for; `ConfigError` (exit 2) when
    asked for without the `otel` extra, or with settings it cannot follow."""
    if not tracing_requested(env, flag=flag):
        return NO_TRACING
    try:
        from relay.tracing.otel import open_otel_tracing
    except ImportError as exc:
        if not (exc.name or "").startswith("opentelemetry"):
            raise
        why = "--tracing" if flag else f"{EXPORTER_ENV}={env.get(EXPORTER_ENV, '')}"
        raise ConfigError(
            f"tracing is asked for ({why}) but OpenTelemetry is not installed: {INSTALL_HINT}"
        ) from None
    return open_otel_tracing(env)


__all__ = [
    "INSTALL_HINT",
    "NO_SPAN",
    "NO_TRACING",
    "LogProcessor",
    "NoTracing",
    "Span",
    "TraceContext",
    "Tracing",
    "start_tracing",
    "tracing_requested",
]
