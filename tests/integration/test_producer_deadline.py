"""Publishing under a deadline, over real sockets: against an SQS endpoint that never answers,
`PublishError` comes before the deadline (a Lambda's remaining time, or `deadline_s`); against
moto's server, a deadline that leaves time changes nothing."""

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import relay.producer.aio
import relay.producer.lambda_step
from relay.producer import (
    AsyncStepResultPublisher,
    PublishError,
    Status,
    StepResult,
    StepResultPublisher,
    custom_step,
    publish_deadline_s,
)
from relay.producer.publishing import CANCEL_S
from relay.sqs.outgoing import DEADLINE_EXCEEDED
from tests.conftest import Queues
from tests.support import SQSClient, drain

EVENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "custom-step-event-s3.json").read_text()
)
EVENT_STEP = StepResult.from_event(EVENT, Status.SUCCESS)


class LambdaContext:
    """Lambda's context object as far as `custom_step` reads it: `remaining_s` left when the
    wrapper asks (it asks once, as it publishes)."""

    def __init__(self, remaining_s: float) -> None:
        self.remaining_s = remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return int(self.remaining_s * 1000)


@dataclass(frozen=True)
class BoundedCall:
    """One SendMessageBatch call of the botocore publisher: the time its deadline left when it
    started, and what the client it went through can take at most."""

    left_s: float | None
    timeouts_s: float
    """The client's connect and read timeouts added up."""
    attempts: int


@pytest.fixture
def bounded_calls(monkeypatch: pytest.MonkeyPatch) -> list[BoundedCall]:
    """Every call the botocore publisher makes in this test, as it starts (the publisher picks
    a client for the time left; botocore has no per-call timeout)."""
    calls: list[BoundedCall] = []
    pick = StepResultPublisher._client_within

    def noting(publisher: StepResultPublisher, left_s: float | None) -> Any:
        client = pick(publisher, left_s)
        config = client.meta.config
        timeouts_s = config.connect_timeout + config.read_timeout
        calls.append(BoundedCall(left_s, timeouts_s, config.retries["total_max_attempts"]))
        return client

    monkeypatch.setattr(StepResultPublisher, "_client_within", noting)
    return calls


def assert_each_call_fits(calls: list[BoundedCall], deadline_s: float) -> None:
    """At least one call was made, each through a client of one attempt that cannot outlast
    what was left of `deadline_s` when the call started: none can run past the deadline."""
    assert calls
    for call in calls:
        assert call.left_s is not None
        assert call.left_s <= deadline_s
        assert call.attempts == 1
        assert call.timeouts_s <= call.left_s


class NotedTimeouts:
    """`asyncio` as `relay.producer.aio` sees it, noting the delay of each `asyncio.timeout`
    it opens (the bound it puts on one call)."""

    def __init__(self) -> None:
        self.delays_s: list[float | None] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)

    def timeout(self, delay_s: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
        self.delays_s.append(delay_s)
        return asyncio.timeout(delay_s)


@pytest.fixture
def silent_sqs(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An SQS endpoint on loopback that takes connections and never answers (a hung network
    path): only timeouts end a call to it. Publishers made here point at it."""
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", url)
        yield f"{url}/123456789012/relay-results"


@pytest.fixture(autouse=True)
def fresh_shared_publishers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """`custom_step`'s process-wide publishers start empty and are closed after the test."""
    shared: dict[str, StepResultPublisher] = {}
    monkeypatch.setattr(relay.producer.lambda_step, "_shared", shared)
    yield
    for publisher in shared.values():
        publisher.close()


def succeeding(event: dict[str, Any], context: Any) -> str:
    """A handler that always succeeds."""
    return "done"


def failing(event: dict[str, Any], context: Any) -> None:
    """A handler that always fails."""
    raise RuntimeError("conversion failed")


@pytest.mark.parametrize("handler", [succeeding, failing], ids=["returns", "raises"])
def test_custom_step_raises_before_the_lambda_runs_out_of_time(
    handler: Any, silent_sqs: str, bounded_calls: list[BoundedCall]
) -> None:
    """With 3 s left and an SQS that never answers, the wrapper raises PublishError before the
    invocation's time is up: it publishes under a deadline a margin short of the time left,
    and no call can outlast that deadline (botocore alone would wait three attempts of 10 s)."""
    context = LambdaContext(remaining_s=3.0)
    deadline_s = publish_deadline_s(context)
    assert deadline_s is not None
    assert deadline_s < 3.0
    wrapped = custom_step(queue_url=silent_sqs)(handler)
    with pytest.raises(PublishError) as caught:
        wrapped(EVENT, context)
    assert_each_call_fits(bounded_calls, deadline_s)
    [failure] = caught.value.failures
    assert failure.code == DEADLINE_EXCEEDED
    assert "last try: ReadTimeoutError" in failure.message
    assert failure.result is not None
    assert failure.result.status is (Status.SUCCESS if handler is succeeding else Status.FAILURE)


def test_the_publisher_raises_within_its_deadline(
    silent_sqs: str, bounded_calls: list[BoundedCall]
) -> None:
    """`publish(deadline_s=1.5)` on a publisher that made its own client returns control
    within 1.5 s: its calls are cut to the time left, and no retry starts that cannot fit."""
    with StepResultPublisher(silent_sqs) as publisher, pytest.raises(PublishError) as caught:
        publisher.publish(EVENT_STEP, deadline_s=1.5)
    assert_each_call_fits(bounded_calls, deadline_s=1.5)
    [failure] = caught.value.failures
    assert failure.code == DEADLINE_EXCEEDED
    # It stopped because the next attempt could not fit, not because the attempts ran out.
    assert failure.message.startswith("no time")
    assert "last try: ReadTimeoutError" in failure.message


async def test_the_async_publisher_raises_within_its_deadline(
    silent_sqs: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The aiobotocore publisher cancels a call still running at the deadline and raises: its
    one call is bounded by a timeout that ends before the deadline, and the call it cut is
    the failure it reports."""
    noted = NotedTimeouts()
    monkeypatch.setattr(relay.producer.aio, "asyncio", noted)
    async with AsyncStepResultPublisher(silent_sqs) as publisher:
        with pytest.raises(PublishError) as caught:
            await publisher.publish(EVENT_STEP, deadline_s=1.5)
    [delay_s] = noted.delays_s
    assert delay_s is not None
    assert 0 < delay_s <= 1.5 - CANCEL_S
    [failure] = caught.value.failures
    assert failure.code == DEADLINE_EXCEEDED
    assert failure.message.startswith("the call was still running at the deadline")


@pytest.mark.parametrize("remaining_s", [2.0, 600.0], ids=["short", "long"])
async def test_a_deadline_with_time_left_publishes_as_usual(
    remaining_s: float, queues: Queues, sqs: SQSClient
) -> None:
    """With 2 s left (a client of short timeouts) or 10 min (the usual client), the step's
    SUCCESS reaches the queue, once."""
    wrapped = custom_step(queue_url=queues.url)(succeeding)
    assert wrapped(EVENT, LambdaContext(remaining_s)) == "done"
    [message] = await drain(sqs, queues.url)
    assert message.body == EVENT_STEP.to_body()
