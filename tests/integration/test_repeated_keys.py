"""A step result that repeats a key relay reads is refused everywhere the parser is used: the
worker dead-letters it as `validation`, the producer never sends it (issue 14)."""

import asyncio
from collections import Counter

import pytest

from relay.message import InvalidMessage
from relay.producer import StepResultPublisher
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import fast_config, register, run_to_empty
from tests.support import SQSClient, drain, make_steps, send_bodies


def repeating_status(body: str) -> str:
    """The body with `"Status": "SUCCESS"` added after its own `"Status": "FAILURE"`."""
    return body[:-1] + ',"Status":"SUCCESS"}'


async def test_the_worker_dead_letters_a_repeated_status_as_validation(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """`"Status": "FAILURE", "Status": "SUCCESS"` (called back as SUCCESS before) is
    dead-lettered with reason validation and `Status: duplicate key`, without a call."""
    step = make_steps(1, seed=61)[0]
    failure = step.to_body().replace('"SUCCESS"', '"FAILURE"')
    body = repeating_status(failure)
    register(emulator.state, [step])
    await send_bodies(sqs, queues.url, [body])
    await run_to_empty(fast_config(queues.url))
    assert not emulator.state.calls, "a callback was sent for an ambiguous result"
    (copy,) = await drain(sqs, queues.dlq_url)
    assert copy.body == body
    assert copy.attributes["relay-reason"] == "validation"
    assert copy.attributes["relay-error-message"] == "Status: duplicate key"
    assert await drain(sqs, queues.url) == []


async def test_the_producer_refuses_a_repeated_key_before_sending(
    sqs: SQSClient, queues: Queues
) -> None:
    """The producer validates with the same parser: the ambiguous body is refused, naming the
    key, and the queue stays empty; the unambiguous one is sent."""
    step = make_steps(1, seed=62)[0]
    good = step.to_body()

    def publish() -> None:
        with StepResultPublisher(queues.url) as publisher:
            with pytest.raises(InvalidMessage, match=r"^Status: duplicate key$"):
                publisher.publish(repeating_status(good))
            publisher.publish(good)

    await asyncio.to_thread(publish)
    assert Counter(m.body for m in await drain(sqs, queues.url)) == Counter([good])
