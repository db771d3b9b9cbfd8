"""Tracing's pure parts (DESIGN §12): when it is on, the context a message carries, what a
producer publishes in, the no-op spans when off, and the spans of one sender's attempts."""

import asyncio
import io
import itertools
import json
import random
import time
import tracemalloc

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import StatusCode

import relay.tracing
from relay.errors import ConfigError
from relay.message import Status, StepResult
from relay.observability import configure_logging, get_logger
from relay.sqs import SqsError
from relay.tracing import NO_SPAN, NO_TRACING, start_tracing, tracing_requested
from relay.tracing.context import (
    MAX_HEADER_CHARS,
    TRACEPARENT,
    TRACESTATE,
    TraceContext,
    format_traceparent,
    format_xray_header,
    parse_xray_header,
    producer_context,
    traceparent_ok,
    usable_header,
    xray_trace_id,
)
from relay.transfer import CallbackError, RetryPolicy, TransferSender
from tests.tracing_support import (
    assert_no_whole_token,
    attributes,
    children,
    memory_tracing,
    named,
    root_trace_id,
    xray_header,
)

HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
TRACE_ID = "5759e988bd862e3fe1be46a994272793"
STEP = StepResult(
    "w-1234567890abcdefg", "abcd1234-aa11-bb22-cc33-abcdef123456", "T" * 40, Status.SUCCESS
)


# --- when tracing is on ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "flag", "on"),
    [
        ({}, False, False),
        ({}, True, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, False, True),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, False, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False, False),
        ({"OTEL_TRACES_EXPORTER": " "}, False, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, False, False),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False, False),
        ({"OTEL_SDK_DISABLED": "TRUE"}, True, False),
    ],
)
def test_tracing_is_asked_for_by_the_flag_or_an_exporter(
    env: dict[str, str], flag: bool, on: bool
) -> None:
    """`--tracing` or an exporter in OTEL_TRACES_EXPORTER turns tracing on; `none`, an endpoint
    alone or nothing leave it off; OTEL_SDK_DISABLED=true wins over both."""
    assert tracing_requested(env, flag=flag) is on


def test_tracing_not_asked_for_is_the_shared_no_op() -> None:
    """Without a request `start_tracing` returns `NO_TRACING`, whose spans are one object."""
    tracing = start_tracing({}, flag=False)
    assert tracing is NO_TRACING
    assert tracing.log_processor is None
    assert tracing.process("q", "m", 1, HEADER, {}) is NO_SPAN
    assert tracing.send("dlq") is NO_SPAN
    assert tracing.callback(1) is NO_SPAN
    assert tracing.table("PutItem", "t") is NO_SPAN
    assert NO_SPAN.context().empty


def test_a_message_keeps_no_memory_when_tracing_is_off() -> None:
    """With tracing off, a message's spans are one shared object: opening, filling and closing
    them for 20,000 messages leaves no more memory behind than for 1,000 (nothing per
    message), and makes no object at all (`NO_SPAN` is returned every time)."""
    context = {TRACEPARENT: "x"}

    def one_message() -> None:
        with NO_TRACING.process("queue", "id", 1, HEADER, context) as span:
            span.step(STEP)
            with NO_TRACING.callback(1) as call:
                call.answered(200, "request", None)
            span.ended("delivered", None, None, 1)

    def kept_after(messages: int) -> int:
        """Bytes still held, allocated in relay.tracing or here (other threads of the test
        process allocate meanwhile: their memory is not this path's)."""
        here = [
            tracemalloc.Filter(True, relay.tracing.__file__),
            tracemalloc.Filter(True, __file__),
        ]
        tracemalloc.start()
        try:
            for _ in itertools.repeat(None, messages):
                one_message()
            snapshot = tracemalloc.take_snapshot().filter_traces(here)
        finally:
            tracemalloc.stop()
        return sum(stat.size for stat in snapshot.statistics("filename"))

    one_message()
    assert abs(kept_after(20_000) - kept_after(1_000)) < 256
    assert NO_TRACING.process("queue", "id", 1, HEADER, context) is NO_SPAN


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "unknown exporter 'jaeger'"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"},
            "'http/json' is not one relay exports with",
        ),
    ],
)
def test_settings_tracing_cannot_follow_are_a_config_error(env: dict[str, str], why: str) -> None:
    """An exporter or an OTLP protocol relay does not know is a `ConfigError` (exit 2)."""
    with pytest.raises(ConfigError, match=why):
        start_tracing(env)


def test_tracing_asked_for_builds_otlp_over_http_or_grpc() -> None:
    """OTLP over http/protobuf by default, gRPC when the protocol says so; nothing is sent
    until there are spans."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as Grpc
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as Http

    from relay.tracing.otel import exporters

    assert [type(e) for e in exporters({"OTEL_TRACES_EXPORTER": "otlp"})] == [Http]
    grpc = {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"}
    assert [type(e) for e in exporters(grpc)] == [Grpc]
    tracing = start_tracing({"OTEL_TRACES_EXPORTER": "none"}, flag=True)
    assert tracing.enabled
    tracing.shutdown()


# --- the context a message carries ---------------------------------------------------------


def test_an_x_ray_header_reads_its_root_parent_and_decision() -> None:
    """Root, Parent and Sampled are read in any order, with extra keys and spaces."""
    header = parse_xray_header(
        "Sampled=0; Lineage=a87bd80c:1;Root=1-5759e988-bd862e3fe1be46a994272793"
    )
    assert header is not None
    assert header.trace_id == TRACE_ID
    assert header.parent_id is None
    assert header.sampled is False
    assert parse_xray_header(HEADER) is not None
    assert parse_xray_header(HEADER.replace("Sampled=1", "Sampled=?")).sampled is None  # type: ignore[union-attr]
    for bad in ("", "Root=2-5759e988-bd862e3fe1be46a994272793", "Parent=53995c3f42cd8ad8", "x"):
        assert parse_xray_header(bad) is None


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**64 - 1), st.booleans())
def test_both_forms_written_for_a_span_read_back_as_its_trace(
    trace_id: int, span_id: int, sampled: bool
) -> None:
    """The X-Ray header and the traceparent written for a span context name its trace, span
    and decision, and an X-Ray trace id is the OpenTelemetry one split 8 + 24."""
    header = parse_xray_header(format_xray_header(trace_id, span_id, sampled))
    assert header is not None
    assert header.trace_id == f"{trace_id:032x}"
    assert header.parent_id == f"{span_id:016x}"
    assert header.sampled is sampled
    parent = format_traceparent(trace_id, span_id, sampled)
    assert traceparent_ok(parent)
    assert TraceContext(attributes={TRACEPARENT: parent}).trace_id == f"{trace_id:032x}"
    assert xray_trace_id(f"{trace_id:032x}").replace("-", "")[1:] == f"{trace_id:032x}"


@pytest.mark.parametrize(
    "parent",
    [
        "",
        "garbage",
        f"00-{'0' * 32}-53995c3f42cd8ad8-01",
        f"00-{TRACE_ID}-{'0' * 16}-01",
        f"ff-{TRACE_ID}-53995c3f42cd8ad8-01",
        f"00-{TRACE_ID.upper()}-53995c3f42cd8ad8-01",
    ],
)
def test_a_malformed_traceparent_is_refused(parent: str) -> None:
    """A traceparent with the wrong layout, upper case, zero ids or version ff is refused."""
    assert not traceparent_ok(parent)


def test_a_received_context_is_carried_on_only_as_far_as_it_is_well_formed() -> None:
    """A message's own context is carried on when well formed: a bad header, a bad
    traceparent (and its tracestate with it), an oversized tracestate are left behind, and
    other attributes are never part of it."""
    parent = f"00-{TRACE_ID}-53995c3f42cd8ad8-01"
    good = TraceContext.carried_by(HEADER, {TRACEPARENT: parent, TRACESTATE: "a=1", "x": "y"})
    assert good == TraceContext(HEADER, {TRACEPARENT: parent, TRACESTATE: "a=1"})
    assert TraceContext.carried_by("Root=nope", {TRACEPARENT: "bad", TRACESTATE: "a=1"}).empty
    big = TraceContext.carried_by(None, {TRACEPARENT: parent, TRACESTATE: "a" * 600})
    assert big.attributes == {TRACEPARENT: parent}


def test_a_long_header_is_sent_in_its_short_form() -> None:
    """A header over the cap (a long Lineage) goes as Root, Parent and Sampled alone."""
    long = HEADER + ";Lineage=" + "a" * MAX_HEADER_CHARS
    assert usable_header(long) == HEADER
    assert usable_header(f" {HEADER} ") == HEADER
    assert usable_header("Root=1-x") is None


def test_a_lambda_publishes_in_its_invocation_trace() -> None:
    """On Lambda (AWS_LAMBDA_FUNCTION_NAME) the invocation's _X_AMZN_TRACE_ID is the message's
    AWSTraceHeader; outside Lambda the variable is not trusted, and without it nothing."""
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "step", "_X_AMZN_TRACE_ID": HEADER + ";Lineage=1:2"}
    assert producer_context(lambda_env) == TraceContext(trace_header=HEADER + ";Lineage=1:2")
    assert producer_context({"_X_AMZN_TRACE_ID": HEADER}).empty
    assert producer_context({"AWS_LAMBDA_FUNCTION_NAME": "step"}).empty
    assert producer_context({"AWS_LAMBDA_FUNCTION_NAME": "s", "_X_AMZN_TRACE_ID": "Root=x"}).empty


def test_a_producer_inside_an_opentelemetry_span_publishes_in_it() -> None:
    """With OpenTelemetry loaded and a span current, the message carries that span in both
    forms (it wins over Lambda's variable); with no span current, the variable is used."""
    tracing, _ = memory_tracing()
    lambda_env = {"AWS_LAMBDA_FUNCTION_NAME": "step", "_X_AMZN_TRACE_ID": HEADER}
    with tracing.process("q", "m", 1, HEADER, {}) as span:
        context = producer_context(lambda_env)
        assert context == span.context()
    assert context.trace_id == TRACE_ID
    assert context.trace_header is not None
    assert context.trace_header.startswith("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=")
    assert context.trace_header != HEADER  # the span's own id is the parent now
    assert producer_context(lambda_env) == TraceContext(trace_header=HEADER)


# --- spans ----------------------------------------------------------------------------------


class ScriptedClient:
    """A callback client that answers from a script: an error to raise, or a request id."""

    def __init__(self, *answers: CallbackError | str) -> None:
        self.answers = list(answers)

    async def send_workflow_step_state(self, **request: str) -> str | None:
        answer = self.answers.pop(0)
        if isinstance(answer, CallbackError):
            raise answer
        return answer


async def test_each_attempt_is_a_client_span_and_each_wait_an_event() -> None:
    """Under a message's span, a 503 then a 200 are two client spans (the first an error with
    its status and code) with a `relay.backoff` event between them; no token whole."""
    tracing, exporter = memory_tracing()
    failure = CallbackError("ServiceUnavailableException", "busy", http_status=503, request_id="r1")
    sender = TransferSender(
        ScriptedClient(failure, "r2"),
        RetryPolicy(max_attempts=3, budget_s=5.0, base_s=0.0, cap_s=0.0),
        tracing=tracing,
    )
    with tracing.process("q", "m", 1, HEADER, {}) as span:
        span.step(STEP)
        sent = await sender.send(STEP)
    assert sent.attempts == 2
    spans = exporter.get_finished_spans()
    (process,) = named(spans, "process q")
    first, second = children(spans, process)
    assert attributes(first) == {
        "rpc.system": "aws-api",
        "rpc.service": "Transfer",
        "rpc.method": "SendWorkflowStepState",
        "relay.attempt": 1,
        "http.response.status_code": 503,
        "aws.request_id": "r1",
        "error.type": "ServiceUnavailableException",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert attributes(second)["aws.request_id"] == "r2"
    assert attributes(second)["relay.attempt"] == 2
    (event,) = process.events
    assert event.name == "relay.backoff"
    assert dict(event.attributes or {})["error.type"] == "ServiceUnavailableException"
    assert_no_whole_token(spans, [STEP.token])


async def test_an_exception_leaving_a_span_marks_it_with_its_code_never_its_text() -> None:
    """A relay error leaving a span sets `error.type` to its AWS code and an error status,
    without its message; a cancellation is named but is no error."""
    tracing, exporter = memory_tracing()
    with pytest.raises(SqsError), tracing.send("dlq"):
        raise SqsError("KmsThrottled", f"secret {STEP.token}")
    with pytest.raises(asyncio.CancelledError), tracing.process("q", "m", 1, None, {}):
        raise asyncio.CancelledError()
    failed, cancelled = exporter.get_finished_spans()
    assert attributes(failed)["error.type"] == "KmsThrottled"
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(cancelled)["error.type"] == "CancelledError"
    assert cancelled.status.status_code is StatusCode.UNSET
    assert_no_whole_token([failed, cancelled], [STEP.token])


def test_a_message_without_context_starts_an_x_ray_compatible_trace() -> None:
    """A message that carries no context (or a malformed one) is the root of a new trace whose
    id starts with the time in seconds, as X-Ray requires."""
    tracing, exporter = memory_tracing()
    with tracing.process("q", "m", 1, "Root=garbage", {TRACEPARENT: "garbage"}):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert span.context is not None
    assert abs((span.context.trace_id >> 96) - time.time()) < 60


def test_traceparent_wins_over_the_x_ray_header() -> None:
    """A message with both a well-formed traceparent and an X-Ray header continues the
    traceparent's trace."""
    tracing, exporter = memory_tracing()
    other = xray_header(random.Random(3))
    parent = f"00-{root_trace_id(other)}-00f067aa0ba902b7-01"
    with tracing.process("q", "m", 1, HEADER, {TRACEPARENT: parent}):
        pass
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert f"{span.context.trace_id:032x}" == root_trace_id(other)


def test_log_lines_within_a_span_carry_its_ids() -> None:
    """With tracing on, a log line written within a span has its `trace_id` and `span_id`;
    one written outside has neither."""
    tracing, exporter = memory_tracing()
    stream = io.StringIO()
    configure_logging("json", "INFO", stream=stream, trace_fields=tracing.log_processor)
    try:
        log = get_logger("test")
        with tracing.process("q", "m", 1, HEADER, {}):
            log.info("inside")
        log.info("outside")
    finally:
        structlog.reset_defaults()
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    (span,) = exporter.get_finished_spans()
    assert span.context is not None
    assert inside["trace_id"] == TRACE_ID
    assert inside["span_id"] == f"{span.context.span_id:016x}"
    assert "trace_id" not in outside
    assert "span_id" not in outside
