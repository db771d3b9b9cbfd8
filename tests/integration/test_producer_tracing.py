"""The producer publishes inside the caller's trace (DESIGN §12), against moto's SQS server:
Lambda's X-Ray trace as `AWSTraceHeader`, an OpenTelemetry span as both forms, nothing outside
a trace. Each test reads back every message it publishes."""

from typing import Any

import pytest

from relay.producer import AsyncStepResultPublisher, StepResultPublisher, custom_step
from relay.tracing.context import TRACEPARENT
from tests.conftest import Queues, create_queue_pair
from tests.support import SQSClient, drain, make_steps
from tests.tracing_support import memory_tracing, root_trace_id, xray_header

EVENT: dict[str, Any] = {
    "token": "MzI0Nzc4ZDktMGRmMi00MjFhLTgxMDYtMTNjNGM4YjFjNzE2",
    "serviceMetadata": {
        "executionDetails": {
            "workflowId": "w-1234567890abcdefg",
            "executionId": "abcd1234-aa11-bb22-cc33-abcdef123456",
        }
    },
}


@pytest.fixture
def lambda_trace(monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment of a Lambda invocation with active tracing; its X-Ray header."""
    header = xray_header()
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "relay-step")
    monkeypatch.setenv("_X_AMZN_TRACE_ID", header)
    return header


@pytest.mark.parametrize("fifo", [False, True], ids=["standard", "fifo"])
async def test_both_publishers_send_the_lambda_trace_as_aws_trace_header(
    sqs: SQSClient, lambda_trace: str, fifo: bool
) -> None:
    """On Lambda, each result the sync and the async publisher send (singly or in a batch)
    carries the invocation's X-Ray header as its `AWSTraceHeader`, and no message attribute."""
    queue = (await create_queue_pair(sqs, fifo=fifo)).url
    first, second, third = make_steps(3, seed=951)
    with StepResultPublisher(queue) as publisher:
        publisher.publish(first)
    async with AsyncStepResultPublisher(queue) as publisher_async:
        await publisher_async.publish_many([second, third])
    messages = await drain(sqs, queue)
    assert sorted(m.body for m in messages) == sorted(s.to_body() for s in (first, second, third))
    for message in messages:
        assert message.system["AWSTraceHeader"] == lambda_trace
        assert message.attributes == {}


async def test_custom_step_publishes_in_the_invocations_trace(
    sqs: SQSClient, queues: Queues, lambda_trace: str
) -> None:
    """`@custom_step`'s result carries the invocation's trace, so relay's span continues it."""

    @custom_step(queue_url=queues.url)
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    assert handler(EVENT, None) == "done"
    (message,) = await drain(sqs, queues.url)
    assert message.system["AWSTraceHeader"] == lambda_trace


async def test_a_publisher_inside_an_opentelemetry_span_sends_that_span(
    sqs: SQSClient, queues: Queues
) -> None:
    """With an OpenTelemetry span current in the caller, the message carries that span as
    `traceparent` and as `AWSTraceHeader` (one context, both forms)."""
    tracing, _ = memory_tracing()
    (step,) = make_steps(1, seed=952)
    header = xray_header()
    with tracing.process("upstream", "m", 1, header, {}) as span:
        with StepResultPublisher(queues.url) as publisher:
            publisher.publish(step)
        context = span.context()
    (message,) = await drain(sqs, queues.url)
    trace_id = root_trace_id(header)
    assert message.attributes[TRACEPARENT] == context.attributes[TRACEPARENT]
    assert message.attributes[TRACEPARENT].split("-")[1] == trace_id
    assert message.system["AWSTraceHeader"] == context.trace_header


async def test_outside_a_trace_a_result_carries_no_context(sqs: SQSClient, queues: Queues) -> None:
    """Outside Lambda and any span, a message has no `AWSTraceHeader` and no attributes."""
    (step,) = make_steps(1, seed=953)
    with StepResultPublisher(queues.url) as publisher:
        publisher.publish(step)
    (message,) = await drain(sqs, queues.url)
    assert "AWSTraceHeader" not in message.system
    assert message.attributes == {}
