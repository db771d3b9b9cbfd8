"""A dead-letter copy, an export line and a replayed copy carry the trace context on (DESIGN §12),
within SQS's ten attributes and the DLQ's size, and never at the expense of relay's own."""

import time

import pytest

from relay.dead_letter import (
    DEAD_LETTERED_AT,
    ERROR_MESSAGE,
    SOURCE_QUEUE,
    CopyFacts,
    DlqMessage,
    dead_letter_copy,
)
from relay.dlq.export import from_record, to_record
from relay.dlq.replay import requeued
from relay.errors import ConfigError
from relay.sqs import ReceivedMessage
from relay.sqs.outgoing import OutgoingMessage
from relay.tracing.context import TRACEPARENT, TRACESTATE, TraceContext
from tests.support import make_steps

HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
PARENT = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-01"
BODY = make_steps(1, seed=960)[0].to_body()
FACTS = CopyFacts(
    reason="not_found",
    error_code="ResourceNotFoundException",
    error_message="Unknown execution " + "x" * 900,
    attempts=1,
    source_queue="https://sqs.eu-west-1.amazonaws.com/123456789012/results",
    source_message_id="m-1",
)


def received(body: str = BODY, **attributes: str) -> ReceivedMessage:
    """A message as received, with an X-Ray header and these attributes."""
    now = time.time()
    return ReceivedMessage(
        message_id="m-1",
        receipt_handle="h",
        body=body,
        receive_count=1,
        sent_at=now,
        received_at=now,
        group_id=None,
        attributes=dict(attributes),
        trace_header=HEADER,
    )


def test_a_copy_carries_the_context_of_its_send_or_else_the_messages_own() -> None:
    """Given the dead-letter send's context the copy carries it; without one, the message's
    own (header, traceparent, tracestate), and the message's other attributes never."""
    message = received(**{TRACEPARENT: PARENT, TRACESTATE: "a=1", "mine": "x"})
    own = dead_letter_copy(message, FACTS, fifo=False)
    assert own.trace_header == HEADER
    assert own.attributes[TRACEPARENT] == PARENT
    assert own.attributes[TRACESTATE] == "a=1"
    assert "mine" not in own.attributes
    assert len(own.attributes) == 9
    sent = TraceContext("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=1;Sampled=1", {})
    assert dead_letter_copy(message, FACTS, fifo=False, context=sent).trace_header == (
        sent.trace_header
    )
    assert OutgoingMessage("b", trace_header=HEADER).entry("0")["MessageSystemAttributes"] == {
        "AWSTraceHeader": {"DataType": "String", "StringValue": HEADER}
    }


def test_a_copy_at_the_dlqs_size_drops_the_trace_before_relays_facts() -> None:
    """When the copy must shrink, the error text is cut first, then `tracestate` and
    `traceparent` go, before `relay-source-queue` or the time; the header, which SQS does not
    count, stays."""
    message = received(**{TRACEPARENT: PARENT, TRACESTATE: "a=" + "b" * 400})
    roomy = dead_letter_copy(message, FACTS, fifo=False)
    size = len(BODY.encode()) + sum(
        len(n) + len("String") + len(v) for n, v in roomy.attributes.items()
    )
    tight = dead_letter_copy(message, FACTS, fifo=False, max_bytes=size - 1200)
    assert ERROR_MESSAGE not in tight.attributes
    assert TRACESTATE not in tight.attributes
    assert TRACEPARENT in tight.attributes
    assert {SOURCE_QUEUE, DEAD_LETTERED_AT} <= set(tight.attributes)
    assert tight.trace_header == HEADER


def test_an_export_line_keeps_the_trace_header_and_refuses_a_malformed_one() -> None:
    """An export line keeps the DLQ message's `AWSTraceHeader` as `trace_header`, reads it
    back, and refuses one that is not an X-Ray header (exit 2, naming the field)."""
    message = DlqMessage("m-1", BODY, {TRACEPARENT: PARENT}, 1, trace_header=HEADER)
    record = to_record(message)
    assert record["trace_header"] == HEADER
    assert from_record(record, "f:1") == message
    assert "trace_header" not in to_record(DlqMessage("m-2", BODY, {}, 1))
    with pytest.raises(ConfigError, match="f:1: trace_header must be an X-Ray trace header"):
        from_record({**record, "trace_header": "Root=nope"}, "f:1")


@pytest.mark.parametrize("queue", ["https://q/1/results", "https://q/1/results.fifo"])
def test_a_replayed_copy_carries_the_replays_context_or_else_the_dlq_messages(queue: str) -> None:
    """Put back on a queue (standard or FIFO), a copy carries the replay's context when given,
    else the DLQ message's own; its other attributes stay, relay's go."""
    message = DlqMessage(
        "m-1", BODY, {TRACEPARENT: PARENT, "relay-reason": "x", "mine": "y"}, 1, trace_header=HEADER
    )
    own = requeued(message, queue)
    assert own.trace_header == HEADER
    assert own.attributes == {TRACEPARENT: PARENT, "mine": "y"}
    replay = TraceContext(
        HEADER.replace("53995c3f42cd8ad8", "00f067aa0ba902b7"),
        {TRACEPARENT: PARENT.replace("53995c3f42cd8ad8", "00f067aa0ba902b7")},
    )
    theirs = requeued(message, queue, replay)
    assert theirs.trace_header == replay.trace_header
    assert theirs.attributes == {**replay.attributes, "mine": "y"}
