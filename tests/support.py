"""Test helpers: step results, sending bodies, reading queues back, accounting for messages."""

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relay.message import Status, StepResult
from relay.message import event_body as event_body  # the demo and the tests build shapes alike
from relay.message import sns_body as sns_body
from relay.sqs import queue_counts
from relay.sqs.sizes import plan_batches

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def workflow_id(rng: random.Random | None = None) -> str:
    """A valid workflow id: w- and 17 lowercase alphanumerics."""
    rng = rng or random.Random()
    return "w-" + "".join(rng.choice(_ALNUM) for _ in range(17))


def make_steps(
    count: int,
    *,
    workflow: str | None = None,
    status: Status = Status.SUCCESS,
    seed: int | None = None,
) -> list[StepResult]:
    """`count` distinct valid step results (one workflow unless told otherwise)."""
    rng = random.Random(seed)
    workflow = workflow or workflow_id(rng)
    return [
        StepResult(
            workflow,
            str(uuid.UUID(int=rng.getrandbits(128))),
            f"tok_{i}_{rng.getrandbits(32)}",
            status,
        )
        for i in range(count)
    ]


async def send_bodies(sqs: SQSClient, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Sends bodies in batches within SQS's limits; returns their message ids in order."""
    ids: list[str] = []
    for chunk in plan_batches(bodies, lambda body: len(body.encode())):
        response = await sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)],
        )
        assert not response.get("Failed"), response.get("Failed")
        by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids += [by_id[str(i)] for i in range(len(chunk))]
    return ids


@dataclass
class QueueMessage:
    """A message read back from a queue (for assertions)."""

    message_id: str
    body: str
    attributes: dict[str, str]
    system: dict[str, str] = field(default_factory=dict)


async def drain(sqs: SQSClient, queue_url: str, *, limit: int = 10_000) -> list[QueueMessage]:
    """Receives and deletes every visible message (bounded), returning them."""
    found: list[QueueMessage] = []
    for _ in range(limit // 10 + 1):
        response = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            break
        for raw in messages:
            found.append(
                QueueMessage(
                    message_id=raw["MessageId"],
                    body=raw["Body"],
                    attributes={
                        k: v["StringValue"] for k, v in raw.get("MessageAttributes", {}).items()
                    },
                    system=dict(raw.get("Attributes", {})),
                )
            )
        await sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": raw["ReceiptHandle"]}
                for i, raw in enumerate(messages)
            ],
        )
    return found


async def queue_depth(sqs: SQSClient, queue_url: str) -> dict[str, int]:
    """Visible, not visible and delayed counts."""
    counts = await queue_counts(sqs, queue_url)
    return {
        "visible": counts["ApproximateNumberOfMessages"],
        "in_flight": counts["ApproximateNumberOfMessagesNotVisible"],
        "delayed": counts["ApproximateNumberOfMessagesDelayed"],
    }


async def total_depth(sqs: SQSClient, queue_url: str) -> int:
    """Every message the queue still holds, visible or not."""
    return sum((await queue_depth(sqs, queue_url)).values())


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout_s: float = 30.0,
    interval_s: float = 0.05,
    what: str = "condition",
) -> None:
    """Polls `check` until it is true or the deadline passes (then fails the test)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
            result = await result  # type: ignore[misc]
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(interval_s)


def delivered_keys(calls: Iterable[Any]) -> list[tuple[str, str, str, str]]:
    """(workflow, execution, token, status) of every successful callback in the emulator log
    (its execution reads left out)."""
    return [
        (c.workflow_id, c.execution_id, c.token, c.status)
        for c in calls
        if c.http_status == 200 and c.operation == "SendWorkflowStepState"
    ]
