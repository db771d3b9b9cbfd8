"""Tracing (DESIGN §12) in process, spans kept in memory: their shapes and attributes on both
senders, the context a message carries in and a dead-letter copy or a replay carries on."""

import asyncio
import random
import uuid
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from relay.aws import new_session
from relay.config import RunConfig
from relay.config.dlq import ReplayConfig, ScanConfig
from relay.dead_letter import REASON, SOURCE_QUEUE
from relay.dedupe import create_dedupe_table
from relay.dlq.replay import replay
from relay.emulator import Faults
from relay.local import MotoServer
from relay.message import StepResult
from relay.sqs import queue_name
from relay.tracing.context import TRACEPARENT, TRACESTATE
from relay.tracing.otel import OtelTracing
from relay.transfer import RetryPolicy, TransferSender, open_lean_transfer
from relay.worker import Worker, open_worker
from tests.conftest import Emulator, Queues, create_queue_pair
from tests.integration.worker_support import fast_config, register
from tests.support import QueueMessage, SQSClient, drain, eventually, make_steps, total_depth
from tests.tracing_support import (
    assert_no_whole_token,
    attributes,
    children,
    header_parent,
    memory_tracing,
    named,
    parent_hex,
    root_trace_id,
    span_hex,
    trace_hex,
    xray_header,
)

CALLBACK = "Transfer.SendWorkflowStepState"
SENDERS = pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])


async def send_traced(
    sqs: SQSClient,
    queue_url: str,
    body: str,
    *,
    header: str | None = None,
    attributes: dict[str, str] | None = None,
) -> str:
    """Sends one message with an `AWSTraceHeader` and message attributes, as a producer would."""
    request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
    if header is not None:
        request["MessageSystemAttributes"] = {
            "AWSTraceHeader": {"DataType": "String", "StringValue": header}
        }
    if attributes:
        request["MessageAttributes"] = {
            name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
        }
    return str((await sqs.send_message(**request))["MessageId"])


async def run_traced(config: RunConfig, tracing: OtelTracing, timeout_s: float = 60.0) -> Worker:
    """Runs the worker with this tracing until the queue is empty."""
    async with open_worker(config, tracing=tracing) as worker:
        await asyncio.wait_for(worker.run(handle_signals=False), timeout_s)
    return worker


@SENDERS
async def test_a_message_continues_its_x_ray_trace_through_its_process_and_callback_spans(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """A message sent with an X-Ray header gets a `process` span, child of that header's
    Parent in its Root's trace, with the messaging and relay attributes; its callback is a client
    span beneath it with the RPC attributes, the status and the request id; no token whole."""
    (step,) = make_steps(1, seed=801)
    register(emulator.state, [step])
    header = xray_header(random.Random(801))
    message_id = await send_traced(sqs, queues.url, step.to_body(), header=header)
    tracing, exporter = memory_tracing()

    await run_traced(fast_config(queues.url, lean_sender=lean), tracing)

    spans = exporter.get_finished_spans()
    (process,) = named(spans, f"process {queue_name(queues.url)}")
    assert trace_hex(process) == root_trace_id(header)
    assert parent_hex(process) == header_parent(header)
    assert process.kind is SpanKind.CONSUMER
    assert attributes(process) == {
        "messaging.system": "aws_sqs",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": queue_name(queues.url),
        "messaging.message.id": message_id,
        "relay.receive_count": 1,
        "relay.workflow_id": step.workflow_id,
        "relay.execution_id": step.execution_id,
        "relay.status": "SUCCESS",
        "relay.outcome": "delivered",
        "relay.attempts": 1,
    }
    assert process.status.status_code is StatusCode.UNSET
    (callback,) = children(spans, process)
    assert callback.name == CALLBACK
    assert callback.kind is SpanKind.CLIENT
    (call,) = emulator.state.calls
    assert attributes(callback) == {
        "rpc.system": "aws-api",
        "rpc.service": "Transfer",
        "rpc.method": "SendWorkflowStepState",
        "relay.attempt": 1,
        "http.response.status_code": 200,
        "aws.request_id": call.request_id,
    }
    assert_no_whole_token(spans, [step.token])
    assert await total_depth(sqs, queues.url) == 0


@SENDERS
async def test_a_throttled_attempt_shows_its_error_and_the_wait_before_the_next(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """A throttled attempt's span has `ThrottlingException`, status 400 and the service's
    RetryAfterSeconds; the message's span has a `relay.backoff` event at least that long before
    the second attempt, which succeeds."""
    spare, step = make_steps(2, seed=802)
    register(emulator.state, [spare, step])
    # A bucket that refills once in 1,000 s, its one token spent: every call is throttled
    # until the test lifts the fault, once the first attempt has been refused.
    emulator.state.set_faults(Faults(throttle_rps=0.001, throttle_burst=1, retry_after_s=1.0))
    async with open_lean_transfer(max_pool_connections=1, call_timeout_s=5) as client:
        await TransferSender(client, RetryPolicy(max_attempts=1)).call(spare)
    await send_traced(sqs, queues.url, step.to_body(), header=xray_header())
    tracing, exporter = memory_tracing()

    config = fast_config(queues.url, lean_sender=lean, retry_budget_s=5.0)
    async with open_worker(config, tracing=tracing) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(
            lambda: emulator.state.call_count >= 2 or running.done(), what="a throttled attempt"
        )
        emulator.state.set_faults(Faults())
        await asyncio.wait_for(running, 60)

    spans = exporter.get_finished_spans()
    (process,) = named(spans, f"process {queue_name(queues.url)}")
    first, second = sorted(children(spans, process), key=lambda s: s.start_time or 0)
    assert attributes(first)["error.type"] == "ThrottlingException"
    assert attributes(first)["http.response.status_code"] == 400
    assert attributes(first)["relay.retry_after_s"] == 1.0
    assert first.status.status_code is StatusCode.ERROR
    assert attributes(second)["relay.attempt"] == 2
    assert attributes(second)["http.response.status_code"] == 200
    (backoff,) = process.events
    assert backoff.name == "relay.backoff"
    assert backoff.attributes is not None
    assert backoff.attributes["relay.backoff_s"] >= 1.0
    assert backoff.attributes["relay.next_attempt"] == 2
    assert backoff.attributes["error.type"] == "ThrottlingException"
    assert attributes(process)["relay.attempts"] == 2
    assert await total_depth(sqs, queues.url) == 0


async def test_a_dead_lettered_message_is_an_error_span_and_its_copy_carries_the_trace_on(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """An unknown execution's message ends in a `process` span with an error status and
    `not_found`; the dead-letter send is a producer span beneath it, and the DLQ copy carries
    that span's context as its `AWSTraceHeader` and `traceparent`, beside the seven `relay-*`."""
    (step,) = make_steps(1, seed=803)  # not registered: ResourceNotFoundException
    header = xray_header()
    await send_traced(sqs, queues.url, step.to_body(), header=header)
    tracing, exporter = memory_tracing()

    await run_traced(fast_config(queues.url), tracing)

    spans = exporter.get_finished_spans()
    (process,) = named(spans, f"process {queue_name(queues.url)}")
    assert process.status.status_code is StatusCode.ERROR
    assert "not_found" in str(process.status.description)
    assert attributes(process)["relay.outcome"] == "dead_lettered"
    assert attributes(process)["relay.reason"] == "not_found"
    assert attributes(process)["relay.error_code"] == "ResourceNotFoundException"
    assert attributes(process)["error.type"] == "not_found"
    (send,) = named(spans, f"send {queue_name(queues.dlq_url)}")
    assert parent_hex(send) == span_hex(process)
    assert send.kind is SpanKind.PRODUCER
    assert attributes(send)["messaging.operation.type"] == "send"
    assert attributes(send)["relay.reason"] == "not_found"
    (copy,) = await drain(sqs, queues.dlq_url)
    trace_id = root_trace_id(header)
    xray_root = f"1-{trace_id[:8]}-{trace_id[8:]}"
    assert copy.system["AWSTraceHeader"] == f"Root={xray_root};Parent={span_hex(send)};Sampled=1"
    assert copy.attributes[TRACEPARENT] == f"00-{trace_id}-{span_hex(send)}-01"
    assert copy.attributes[REASON] == "not_found"
    assert len(copy.attributes) == 8
    assert_no_whole_token(spans, [step.token])
    assert await total_depth(sqs, queues.url) == 0


async def test_without_tracing_a_dead_letter_copy_carries_the_context_it_came_with(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Tracing off, a dead-letter copy carries the source message's X-Ray header,
    `traceparent` and `tracestate` as they came (nine attributes, within SQS's ten), and a
    malformed `traceparent` is not carried on."""
    good, bad = make_steps(2, seed=804)  # neither registered
    header = xray_header()
    parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    await send_traced(
        sqs,
        queues.url,
        good.to_body(),
        header=header,
        attributes={TRACEPARENT: parent, TRACESTATE: "vendor=abc", "other": "kept out"},
    )
    await send_traced(sqs, queues.url, bad.to_body(), attributes={TRACEPARENT: "garbage"})

    async with open_worker(fast_config(queues.url)) as worker:
        await asyncio.wait_for(worker.run(handle_signals=False), 60)

    drained = await drain(sqs, queues.dlq_url)
    assert sorted(c.body for c in drained) == sorted([good.to_body(), bad.to_body()])
    copies = {c.body: c for c in drained}
    kept = copies[good.to_body()]
    assert kept.system["AWSTraceHeader"] == header
    assert kept.attributes[TRACEPARENT] == parent
    assert kept.attributes[TRACESTATE] == "vendor=abc"
    assert "other" not in kept.attributes
    assert len(kept.attributes) == 9
    dropped = copies[bad.to_body()]
    assert TRACEPARENT not in dropped.attributes
    assert "AWSTraceHeader" not in dropped.system
    assert await total_depth(sqs, queues.url) == 0


@SENDERS
async def test_fleet_table_calls_are_client_spans_beneath_the_message(
    lean: bool,
    sqs: SQSClient,
    queues: Queues,
    emulator: Emulator,
    local_dynamodb: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With `--dedupe-table`, the claim and the delivered record are `DynamoDB.PutItem` client
    spans beneath the message's span, with the RPC and DynamoDB attributes, whichever client
    makes the table's calls (the lean one, or aiobotocore's with `--no-lean-sender`)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
    table = f"relay-trace-{uuid.uuid4().hex[:8]}"
    async with new_session().create_client("dynamodb") as dynamodb:
        await create_dedupe_table(dynamodb, table)
    (step,) = make_steps(1, seed=805)
    register(emulator.state, [step])
    await send_traced(sqs, queues.url, step.to_body(), header=xray_header())
    tracing, exporter = memory_tracing()

    await run_traced(fast_config(queues.url, dedupe_table=table, lean_sender=lean), tracing)

    spans = exporter.get_finished_spans()
    (process,) = named(spans, f"process {queue_name(queues.url)}")
    beneath = sorted(children(spans, process), key=lambda s: s.start_time or 0)
    assert [s.name for s in beneath] == ["DynamoDB.PutItem", CALLBACK, "DynamoDB.PutItem"]
    for span in (beneath[0], beneath[2]):
        assert span.kind is SpanKind.CLIENT
        assert attributes(span) == {
            "rpc.system": "aws-api",
            "rpc.service": "DynamoDB",
            "rpc.method": "PutItem",
            "db.system": "dynamodb",
            "db.operation.name": "PutItem",
            "aws.dynamodb.table_names": (table,),
        }
    assert await total_depth(sqs, queues.url) == 0


async def dead_letter_one(
    sqs: SQSClient, queues: Queues, step: StepResult, header: str
) -> tuple[QueueMessage, str]:
    """A DLQ copy as the worker writes it with tracing on: the copy (read back and put back
    on the DLQ as it was) and the span id of its dead-letter send."""
    await send_traced(sqs, queues.url, step.to_body(), header=header)
    tracing, exporter = memory_tracing()
    await run_traced(fast_config(queues.url), tracing)
    (send,) = named(exporter.get_finished_spans(), f"send {queue_name(queues.dlq_url)}")
    (copy,) = await drain(sqs, queues.dlq_url)
    await send_traced(
        sqs,
        queues.dlq_url,
        copy.body,
        header=copy.system["AWSTraceHeader"],
        attributes=copy.attributes,
    )
    return copy, span_hex(send)


@pytest.mark.parametrize("to", ["queue", "transfer"])
async def test_a_replay_continues_the_trace_its_dead_letter_copy_carries(
    sqs: SQSClient, queues: Queues, emulator: Emulator, to: str
) -> None:
    """A replay's span is the child of the dead-letter send whose copy it replays, in the
    message's trace: put back on the queue, the copy carries the replay's send on; sent to
    Transfer Family, the callback is a client span beneath the replay."""
    (step,) = make_steps(1, seed=806 if to == "queue" else 807)
    header = xray_header()
    copy, send_id = await dead_letter_one(sqs, queues, step, header)
    assert copy.attributes[SOURCE_QUEUE] == queues.url
    register(emulator.state, [step])  # registered late: the replay can deliver it
    # Another queue: the worker's last long poll on the first may still be waiting in moto.
    destination = (await create_queue_pair(sqs)).url
    tracing, exporter = memory_tracing()
    config = ReplayConfig(
        scan=ScanConfig(dlq_url=queues.dlq_url, receive_wait_s=0),
        to=to,  # type: ignore[arg-type]
        queue_url=destination if to == "queue" else None,
    )

    summary = await replay(config, tracing=tracing)

    assert summary.replayed == 1, summary.to_json()
    spans = exporter.get_finished_spans()
    (replayed,) = named(spans, f"replay {queue_name(queues.dlq_url)}")
    assert trace_hex(replayed) == root_trace_id(header)
    assert parent_hex(replayed) == send_id
    assert attributes(replayed)["relay.outcome"] == "replayed"
    assert attributes(replayed)["messaging.operation.name"] == "replay"
    assert attributes(replayed)["relay.execution_id"] == step.execution_id
    assert attributes(replayed)["relay.execution_state"] == "waiting"
    (beneath,) = children(spans, replayed)
    if to == "transfer":
        assert beneath.name == CALLBACK
        assert attributes(beneath)["http.response.status_code"] == 200
    else:
        assert beneath.name == f"send {queue_name(destination)}"
        (again,) = await drain(sqs, destination)
        trace_id = root_trace_id(header)
        assert again.attributes[TRACEPARENT] == f"00-{trace_id}-{span_hex(beneath)}-01"
        assert f"Parent={span_hex(beneath)}" in again.system["AWSTraceHeader"]
        assert REASON not in again.attributes
    assert_no_whole_token(spans, [step.token])
    assert await total_depth(sqs, queues.dlq_url) == 0
    assert await total_depth(sqs, destination) == 0
