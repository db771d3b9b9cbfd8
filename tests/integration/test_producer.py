"""`relay.producer` against moto's SQS server: both publishers, the custom-step decorator and
the README's Lambda example, each test accounting for every result it publishes."""

import asyncio
import copy
import importlib.util
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import botocore.session
import pytest
from botocore.config import Config

from relay.message import TOKEN_RULE, parse, short_token
from relay.producer import (
    QUEUE_URL_ENV,
    AsyncStepResultPublisher,
    InvalidMessage,
    OutgoingMessage,
    PublishError,
    Status,
    StepResult,
    StepResultPublisher,
    custom_step,
    message_for,
)
from tests.conftest import Emulator, Queues, create_queue_pair
from tests.support import (
    SQSClient,
    delivered_keys,
    drain,
    event_body,
    make_steps,
    sns_body,
    total_depth,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EVENT: dict[str, Any] = json.loads((EXAMPLES / "custom-step-event-s3.json").read_text())
EVENT_STEP = StepResult.from_event(EVENT, Status.SUCCESS)
STEPS = make_steps(6, seed=8)


def padded(body: str, size: int) -> str:
    """A canonical body with an unknown `padding` key that brings it to `size` bytes."""
    document = json.loads(body)
    document["padding"] = "x" * (size - len(json.dumps({**document, "padding": ""}).encode()))
    result = json.dumps(document)
    assert len(result.encode()) == size
    return result


def load_example(name: str) -> ModuleType:
    """Imports a file of examples/ as a fresh module, as Lambda would load it."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def event_for(key: str) -> dict[str, Any]:
    """The example event, for an upload at `key`."""
    event = copy.deepcopy(EVENT)
    event["fileLocation"]["key"] = key
    return event


class RecordingClient:
    """A botocore SQS client that keeps the entries of every SendMessageBatch call."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.requests: list[list[dict[str, Any]]] = []

    def send_message_batch(self, **request: Any) -> Any:
        """Records the entries, then sends them."""
        self.requests.append(request["Entries"])
        return self.client.send_message_batch(**request)


@pytest.fixture
def botocore_sqs() -> Iterator[Any]:
    """A botocore SQS client on moto, closed after the test."""
    client = botocore.session.get_session().create_client("sqs")
    yield client
    client.close()


@pytest.fixture
def publisher(queues: Queues) -> Iterator[StepResultPublisher]:
    """A synchronous publisher on this test's queue."""
    with StepResultPublisher(queues.url) as made:
        yield made


@pytest.fixture(autouse=True)
def no_relay_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's RELAY_* variables must not choose the queue."""
    for name in list(os.environ):
        if name.startswith("RELAY_"):
            monkeypatch.delenv(name)


def shapes() -> list[Any]:
    """One result per accepted input: StepResult, from_event, event + status, SNS envelope."""
    return [
        STEPS[0],
        StepResult.from_event(EVENT, "FAILURE"),
        {**json.loads(event_body(STEPS[1])), "status": "SUCCESS"},
        json.loads(STEPS[2].to_body()),
        sns_body(STEPS[3].to_body()),
        sns_body(event_body(STEPS[4])),
    ]


def expected_bodies(documents: list[Any]) -> list[str]:
    """The bodies `shapes()` put on the queue: results canonical, documents as given."""
    return [
        STEPS[0].to_body(),
        replace(EVENT_STEP, status=Status.FAILURE).to_body(),
        json.dumps(documents[2], separators=(",", ":")),
        json.dumps(documents[3], separators=(",", ":")),
        documents[4],
        documents[5],
    ]


# --- publishing each shape ------------------------------------------------------------------


async def test_sync_publish_sends_each_shape_and_returns_its_message_id(
    publisher: StepResultPublisher, queues: Queues, sqs: SQSClient
) -> None:
    """Every accepted shape goes out one by one; each id is that of the message with its body."""
    documents = shapes()
    ids = [publisher.publish(result) for result in documents]
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    assert received == dict(zip(ids, expected_bodies(documents), strict=True))


async def test_async_publish_sends_each_shape_and_returns_its_message_id(
    queues: Queues, sqs: SQSClient
) -> None:
    """The async publisher, with a client of its own, does the same as the sync one."""
    async with AsyncStepResultPublisher(queues.url) as publisher:
        documents = shapes()
        ids = [await publisher.publish(result) for result in documents]
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    assert received == dict(zip(ids, expected_bodies(documents), strict=True))


async def test_publish_many_batches_and_returns_ids_in_order(
    queues: Queues, sqs: SQSClient, botocore_sqs: Any
) -> None:
    """25 results go in requests of at most 10 entries; the n-th id is the n-th result's."""
    steps = make_steps(25, seed=3)
    client = RecordingClient(botocore_sqs)
    ids = StepResultPublisher(queues.url, client=client).publish_many(steps)
    assert [len(entries) for entries in client.requests] == [10, 10, 5]
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    assert received == {i: step.to_body() for i, step in zip(ids, steps, strict=True)}


async def test_async_publish_many_batches_and_returns_ids_in_order(
    queues: Queues, sqs: SQSClient
) -> None:
    """The async publisher on a client it is given: 25 results, ids in order, client left open."""
    steps = make_steps(25, seed=4)
    publisher = AsyncStepResultPublisher(queues.url, client=sqs)
    ids = await publisher.publish_many(steps)
    await publisher.aclose()
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    assert received == {i: step.to_body() for i, step in zip(ids, steps, strict=True)}


async def test_results_that_cannot_share_one_request_are_split_by_size(
    queues: Queues, sqs: SQSClient, botocore_sqs: Any
) -> None:
    """Three valid 400 KB bodies exceed 1 MiB together: two requests (2 + 1), all three arrive."""
    bodies = [padded(step.to_body(), 400_000) for step in STEPS[:3]]
    client = RecordingClient(botocore_sqs)
    ids = StepResultPublisher(queues.url, client=client).publish_many(bodies)
    assert [len(entries) for entries in client.requests] == [2, 1]
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    assert received == dict(zip(ids, bodies, strict=True))


# --- SQS refusing entries -------------------------------------------------------------------


def delayed(bad: set[int]) -> list[OutgoingMessage]:
    """Five valid messages; those at `bad` carry a delay SQS refuses (over 900 s)."""
    return [
        replace(message_for(step.to_body(), fifo=False), delay_s=901 if i in bad else None)
        for i, step in enumerate(make_steps(5, seed=5))
    ]


def assert_exactly_refused(error: PublishError, messages: list[OutgoingMessage]) -> None:
    """The error lists the delayed messages and only them; the others have their ids."""
    refused = {i for i, m in enumerate(messages) if m.delay_s}
    assert {f.index for f in error.failures} == refused
    for failure in error.failures:
        assert failure.body == messages[failure.index].body
        assert failure.result is not None
        assert failure.code == "InvalidParameterValue"
        assert "DelaySeconds" in failure.message
        assert failure.sender_fault
    assert [i for i, mid in enumerate(error.message_ids) if mid is None] == sorted(refused)
    assert f"{len(refused)} of 5 result(s) not sent" in str(error)


async def test_entries_sqs_refuses_are_reported_exactly_and_the_rest_sent(
    queues: Queues, sqs: SQSClient, publisher: StepResultPublisher
) -> None:
    """Two entries of one request break a queue rule: the error lists those two, the three
    others are on the queue under the ids it reports."""
    messages = delayed({1, 3})
    with pytest.raises(PublishError) as caught:
        publisher.send(messages)
    assert_exactly_refused(caught.value, messages)
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    sent = {mid: messages[i].body for i, mid in enumerate(caught.value.message_ids) if mid}
    assert received == sent
    assert len(sent) == 3


async def test_async_entries_sqs_refuses_are_reported_exactly_and_the_rest_sent(
    queues: Queues, sqs: SQSClient
) -> None:
    """The async publisher reports the same refused entries and sends the same others."""
    messages = delayed({0, 4})
    async with AsyncStepResultPublisher(queues.url) as publisher:
        with pytest.raises(PublishError) as caught:
            await publisher.send(messages)
    assert_exactly_refused(caught.value, messages)
    received = {m.message_id: m.body for m in await drain(sqs, queues.url)}
    assert received == {
        mid: messages[i].body for i, mid in enumerate(caught.value.message_ids) if mid
    }


async def test_a_missing_queue_fails_every_result_for_that_reason(moto_url: str) -> None:
    """A queue URL that names no queue: every result listed as not sent, a sender fault."""
    url = f"{moto_url}/123456789012/relay-missing"
    with StepResultPublisher(url) as publisher, pytest.raises(PublishError) as caught:
        publisher.publish_many(STEPS[:3])
    assert [f.index for f in caught.value.failures] == [0, 1, 2]
    assert [f.result for f in caught.value.failures] == STEPS[:3]
    assert all(f.sender_fault and "NonExistentQueue" in f.code for f in caught.value.failures)
    assert caught.value.message_ids == [None, None, None]


# --- validation before sending --------------------------------------------------------------


BAD_RESULTS: list[tuple[Any, str]] = [
    ({**STEPS[1].to_request(), "Token": "bad-token"}, "Token"),
    (json.dumps({**STEPS[1].to_request(), "Status": "DONE"}), "Status"),
    ({**json.loads(event_body(STEPS[1])), "status": "SUCCESS", "token": 7}, "token"),
    (
        sns_body(json.dumps({**json.loads(event_body(STEPS[1])), "status": "SUCCESS"})).replace(
            STEPS[1].execution_id, "not-a-uuid"
        ),
        "Message.serviceMetadata.executionDetails.executionId",
    ),
    ({"WorkflowId": STEPS[1].workflow_id, "when": {1, 2}}, "body"),
]


@pytest.mark.parametrize(("bad", "field"), BAD_RESULTS, ids=[f for _, f in BAD_RESULTS])
async def test_an_invalid_result_raises_naming_its_field_and_nothing_is_sent(
    bad: Any, field: str, queues: Queues, sqs: SQSClient, publisher: StepResultPublisher
) -> None:
    """One bad result among good ones: `InvalidMessage` names the field, not one is sent."""
    with pytest.raises(InvalidMessage) as caught:
        publisher.publish_many([STEPS[0], bad, STEPS[2]])
    assert caught.value.field == field
    async with AsyncStepResultPublisher(queues.url, client=sqs) as async_publisher:
        with pytest.raises(InvalidMessage) as async_caught:
            await async_publisher.publish_many([STEPS[0], bad])
    assert async_caught.value.field == field
    assert await total_depth(sqs, queues.url) == 0


async def test_an_invalid_token_is_named_with_its_rule(
    publisher: StepResultPublisher, queues: Queues, sqs: SQSClient
) -> None:
    """The error says which rule the field broke, as the worker's dead-letter would."""
    with pytest.raises(InvalidMessage, match=re.escape(f"Token: must match {TOKEN_RULE}")):
        publisher.publish({**STEPS[0].to_request(), "Token": "a b"})
    assert await total_depth(sqs, queues.url) == 0


# --- FIFO queues ----------------------------------------------------------------------------


async def test_fifo_groups_by_execution_and_deduplicates_the_same_result(sqs: SQSClient) -> None:
    """On FIFO: group = execution id, deduplication id = hash of the four fields; the same
    result published twice, in two shapes and by both publishers, leaves one message."""
    fifo = await create_queue_pair(sqs, fifo=True)
    with StepResultPublisher(fifo.url) as publisher:
        publisher.publish_many(STEPS[:3])
        publisher.publish({**json.loads(event_body(STEPS[0])), "status": "SUCCESS"})
    async with AsyncStepResultPublisher(fifo.url, client=sqs) as async_publisher:
        await async_publisher.publish(sns_body(STEPS[1].to_body()))
        await async_publisher.publish(STEPS[3])
    received = await drain(sqs, fifo.url)
    assert sorted(m.body for m in received) == sorted(
        [s.to_body() for s in STEPS[:3]] + [STEPS[3].to_body()]
    )
    for message in received:
        step = parse(message.body)
        assert message.system["MessageGroupId"] == step.execution_id
        assert message.system["MessageDeduplicationId"] == step.dedup_id()


# --- the custom-step decorator and the README's Lambda example --------------------------------


async def test_example_lambda_returning_publishes_one_success(
    monkeypatch: pytest.MonkeyPatch, queues: Queues, sqs: SQSClient
) -> None:
    """examples/lambda_step.py on the example event: one SUCCESS message, the handler's value."""
    monkeypatch.setenv(QUEUE_URL_ENV, queues.url)
    example = load_example("lambda_step")
    assert example.handler(EVENT, None) == {"checked": "path/to/mykey"}
    [message] = await drain(sqs, queues.url)
    assert message.body == EVENT_STEP.to_body()


async def test_example_lambda_raising_publishes_one_failure_and_returns(
    monkeypatch: pytest.MonkeyPatch,
    queues: Queues,
    sqs: SQSClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The handler rejects the upload: one FAILURE message, no exception, the error logged
    with the token shortened."""
    monkeypatch.setenv(QUEUE_URL_ENV, queues.url)
    example = load_example("lambda_step")
    with caplog.at_level(logging.ERROR, logger="relay.producer"):
        assert example.handler(event_for("uploads/tool.exe"), None) is None
    [message] = await drain(sqs, queues.url)
    assert message.body == replace(EVENT_STEP, status=Status.FAILURE).to_body()
    [record] = caplog.records
    assert short_token(EVENT_STEP.token) in record.getMessage()
    assert "executable uploads are not accepted" in caplog.text
    assert EVENT_STEP.token not in caplog.text


async def test_on_error_raise_publishes_nothing_and_reraises(
    queues: Queues, sqs: SQSClient
) -> None:
    """With on_error="raise" the handler's exception propagates and the queue stays empty."""

    @custom_step(queue_url=queues.url, on_error="raise")
    def handler(event: dict[str, Any], context: Any) -> None:
        raise TimeoutError("scanner did not answer")

    with pytest.raises(TimeoutError, match="scanner did not answer"):
        handler(EVENT, None)
    assert await total_depth(sqs, queues.url) == 0


def unreachable_publisher(queue_url: str, port: int) -> StepResultPublisher:
    """A publisher whose client points at a closed port, retrying little."""
    client = botocore.session.get_session().create_client(
        "sqs",
        endpoint_url=f"http://127.0.0.1:{port}",
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=1),
    )
    return StepResultPublisher(queue_url, client=client, attempts=2, backoff_s=0.01)


def failing(event: dict[str, Any], context: Any) -> None:
    """A handler that always fails."""
    raise RuntimeError("conversion failed")


def succeeding(event: dict[str, Any], context: Any) -> str:
    """A handler that always succeeds."""
    return "done"


@pytest.mark.parametrize("handler", [succeeding, failing], ids=["returns", "raises"])
async def test_wrapper_raises_when_the_queue_is_unreachable(
    handler: Callable[[dict[str, Any], Any], Any], queues: Queues, closed_port: int
) -> None:
    """Nothing could be published (connection refused): the wrapper raises `PublishError`."""
    wrapped = custom_step(publisher=unreachable_publisher(queues.url, closed_port))(handler)
    with pytest.raises(PublishError) as caught:
        wrapped(EVENT, None)
    [failure] = caught.value.failures
    assert failure.code == "EndpointConnectionError"
    assert not failure.sender_fault
    assert failure.result is not None
    assert failure.result.status is (Status.SUCCESS if handler is succeeding else Status.FAILURE)


async def test_wrapper_raises_when_the_queue_does_not_exist(
    monkeypatch: pytest.MonkeyPatch, moto_url: str
) -> None:
    """RELAY_QUEUE_URL names no queue: the example Lambda's invocation fails visibly."""
    monkeypatch.setenv(QUEUE_URL_ENV, f"{moto_url}/123456789012/relay-missing-step")
    example = load_example("lambda_step")
    with pytest.raises(PublishError, match="NonExistentQueue"):
        example.handler(EVENT, None)


@pytest.mark.parametrize(
    ("key", "status", "code"), [("in/a.csv", "SUCCESS", 0), ("in/b.corrupt", "FAILURE", 1)]
)
async def test_example_container_publishes_its_result(
    key: str,
    status: str,
    code: int,
    monkeypatch: pytest.MonkeyPatch,
    queues: Queues,
    sqs: SQSClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """examples/container_step.py: the work succeeds → one SUCCESS, exit 0; it fails → one
    FAILURE, exit 1."""
    monkeypatch.setenv(QUEUE_URL_ENV, queues.url)
    monkeypatch.setenv("STEP_EVENT", json.dumps(event_for(key)))
    with caplog.at_level(logging.CRITICAL):
        assert await load_example("container_step").main() == code
    [message] = await drain(sqs, queues.url)
    assert message.body == replace(EVENT_STEP, status=Status(status)).to_body()


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_example_lambda_result_is_delivered_by_relay_run(
    monkeypatch: pytest.MonkeyPatch, queues: Queues, sqs: SQSClient, emulator: Emulator
) -> None:
    """The example Lambda publishes; `relay run --exit-when-empty` delivers that result to the
    emulator, whose call log holds the event's four fields."""
    emulator.state.register(*EVENT_STEP.step_key)
    monkeypatch.setenv(QUEUE_URL_ENV, queues.url)
    load_example("lambda_step").handler(EVENT, None)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "COPILOT_"))}
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "relay", "run", "--queue-url", queues.url],
        *["--exit-when-empty", "--http-port", "0", "--log-level", "WARNING"],
        env={**env, "AWS_ENDPOINT_URL_TRANSFER": emulator.url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    assert delivered_keys(emulator.state.calls) == [
        (
            "w-1234567890example",
            "abcd1234-aa11-bb22-cc33-abcdef123456",
            "MzI0Nzc4ZDktMGRmMi00MjFhLTgxMjUtYWZmZmRmODNkYjc0",
            "SUCCESS",
        )
    ]
    assert await total_depth(sqs, queues.url) == 0
    assert await drain(sqs, queues.dlq_url) == []
