"""Publishing under a deadline, over real sockets: against an SQS endpoint that never answers,
`PublishError` comes before the deadline (a Lambda's remaining time, or `deadline_s`); against
moto's server, a deadline that leaves time changes nothing."""

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import relay.producer.lambda_step
from relay.producer import (
    AsyncStepResultPublisher,
    PublishError,
    Status,
    StepResult,
    StepResultPublisher,
    custom_step,
)
from relay.sqs.outgoing import DEADLINE_EXCEEDED
from tests.conftest import Queues
from tests.support import SQSClient, drain

EVENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "custom-step-event-s3.json").read_text()
)
EVENT_STEP = StepResult.from_event(EVENT, Status.SUCCESS)


class LambdaContext:
    """Lambda's context object as far as `custom_step` reads it, on this process's clock."""

    def __init__(self, remaining_s: float) -> None:
        self.ends_at = time.monotonic() + remaining_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.ends_at - time.monotonic()) * 1000))


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
    handler: Any, silent_sqs: str
) -> None:
    """With 3 s left and an SQS that never answers, the wrapper raises PublishError while the
    context still states time remaining (botocore alone would wait three attempts of 10 s)."""
    context = LambdaContext(remaining_s=3.0)
    wrapped = custom_step(queue_url=silent_sqs)(handler)
    with pytest.raises(PublishError) as caught:
        wrapped(EVENT, context)
    assert context.get_remaining_time_in_millis() > 0
    [failure] = caught.value.failures
    assert failure.code == DEADLINE_EXCEEDED
    assert "last try: ReadTimeoutError" in failure.message
    assert failure.result is not None
    assert failure.result.status is (Status.SUCCESS if handler is succeeding else Status.FAILURE)


def test_the_publisher_raises_within_its_deadline(silent_sqs: str) -> None:
    """`publish(deadline_s=1.5)` on a publisher that made its own client returns control
    within 1.5 s: its calls are cut to the time left, and no retry starts that cannot fit."""
    with StepResultPublisher(silent_sqs) as publisher:
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            publisher.publish(EVENT_STEP, deadline_s=1.5)
        elapsed_s = time.monotonic() - started
    assert elapsed_s < 1.5
    assert [f.code for f in caught.value.failures] == [DEADLINE_EXCEEDED]


async def test_the_async_publisher_raises_within_its_deadline(silent_sqs: str) -> None:
    """The aiobotocore publisher cancels a call still running at the deadline and raises."""
    async with AsyncStepResultPublisher(silent_sqs) as publisher:
        started = time.monotonic()
        with pytest.raises(PublishError) as caught:
            await publisher.publish(EVENT_STEP, deadline_s=1.5)
        elapsed_s = time.monotonic() - started
    assert elapsed_s < 1.5
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
