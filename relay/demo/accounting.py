"""What the demo counts, and how it adds up: what the producer sent, what the DLQ holds, what
the emulator delivered, and the accounting line that says nothing was lost."""

import asyncio
import collections
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from relay.dead_letter import DlqMessage
from relay.emulator import EmulatorState
from relay.message import step_or_none
from relay.sqs import BatchedQueue, queue_total, receive_messages
from relay.sqs.sizes import MAX_BATCH_ENTRIES

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any


@dataclass(slots=True)
class DemoProgress:
    """What the producer has done, and how the run ended."""

    total: int
    sent: int = 0
    send_failed: int = 0
    producing: bool = True
    interrupted: bool = False
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the first message, until the worker stopped."""
        return (self.finished_at or time.monotonic()) - self.started_at


@dataclass(frozen=True, slots=True)
class DlqTally:
    """What the DLQ holds, by `relay-reason`."""

    total: int
    by_reason: collections.Counter[str]
    example: dict[str, str]
    of_delivered: int
    """Copies of steps that were also delivered: a message received twice (at-least-once)."""


async def read_dead_letters(
    sqs: SQSClient, dlq_url: str, limit: int, delivered: set[tuple[str, str, str]]
) -> DlqTally:
    """Reads every DLQ message's `relay-reason`, then makes them all visible again."""
    by_reason: collections.Counter[str] = collections.Counter()
    example: dict[str, str] = {}
    of_delivered = 0
    handles: list[str] = []
    for _ in range(limit // MAX_BATCH_ENTRIES + 2):
        messages = await receive_messages(
            sqs, dlq_url, max_messages=MAX_BATCH_ENTRIES, wait_s=0, visibility_timeout_s=60
        )
        if not messages:
            break
        for message in messages:
            dead = DlqMessage.from_received(message)
            by_reason[dead.reason] += 1
            example.setdefault(dead.reason, dead.error_message[:48])
            step = step_or_none(message.body)
            of_delivered += step is not None and step.step_key in delivered
            handles.append(message.receipt_handle)
    dlq = BatchedQueue(sqs, dlq_url)
    await asyncio.gather(*(dlq.change_visibility(h, 0) for h in handles), return_exceptions=True)
    await dlq.drain()
    total = await queue_total(sqs, dlq_url)
    return DlqTally(total=total, by_reason=by_reason, example=example, of_delivered=of_delivered)


@dataclass(frozen=True, slots=True)
class Accounting:
    """Every message sent was delivered, dead-lettered, or is still on the queue."""

    sent: int
    delivered: int
    dead_lettered: int
    still_queued: int

    @property
    def balanced(self) -> bool:
        """Nothing lost, nothing counted twice."""
        return self.sent == self.delivered + self.dead_lettered + self.still_queued

    def line(self) -> str:
        """The accounting line the summary ends with."""
        verdict = "ok" if self.balanced else "MISMATCH"
        return (
            f"accounting: sent {self.sent} = delivered {self.delivered} + dead-lettered "
            f"{self.dead_lettered} + still queued {self.still_queued}  {verdict}"
        )


def delivered_steps(emulator: EmulatorState) -> set[tuple[str, str, str]]:
    """The steps the emulator answered 200 (each answers once: a second call is refused)."""
    steps: set[tuple[str, str, str]] = set()
    for call in emulator.calls:
        if call.http_status == 200 and call.workflow_id and call.execution_id and call.token:
            steps.add((call.workflow_id, call.execution_id, call.token))
    return steps
