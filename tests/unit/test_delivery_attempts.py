"""relay-attempts (DESIGN §3, §4): the attempts a message made over all its receives, on every
exit of one message's path. The queue and Transfer Family are in-memory fakes here (control
flow only); every exit is also proven against moto's server and the emulator in
tests/integration.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from relay.config import RunConfig
from relay.delivery import Delivery, MessageResult
from relay.lifecycle import Shutdown
from relay.message import Status, StepResult
from relay.observability import Metrics
from relay.sqs import ReceivedMessage, SqsError
from relay.sqs.outgoing import OutgoingMessage
from relay.transfer import CallbackError
from tests.support import make_steps

QUEUE = "http://127.0.0.1:1/000000000000/relay-attempts"
DLQ = QUEUE + "-dlq"


@dataclass
class FakeQueue:
    """What `Delivery` asks of a queue; records each call, fails when told to."""

    url: str
    deleted: list[str] = field(default_factory=list)
    visibility: list[tuple[str, float]] = field(default_factory=list)
    sent: list[OutgoingMessage] = field(default_factory=list)
    fail: set[str] = field(default_factory=set)

    async def delete(self, receipt_handle: str) -> None:
        if "delete" in self.fail:
            raise SqsError("InternalError", "delete refused")
        self.deleted.append(receipt_handle)

    async def change_visibility(self, receipt_handle: str, timeout_s: float) -> None:
        self.visibility.append((receipt_handle, timeout_s))

    async def send(self, message: OutgoingMessage) -> None:
        if "send" in self.fail:
            raise SqsError("InternalError", "send refused")
        self.sent.append(message)


@dataclass
class ScriptedTransfer:
    """Answers each call with the next code of the script (None: 200)."""

    script: list[str | None]
    calls: int = 0

    async def send_workflow_step_state(self, **params: str) -> None:
        code = self.script[self.calls] if self.calls < len(self.script) else None
        self.calls += 1
        if code is not None:
            status = 500 if code == "InternalServiceError" else 400
            raise CallbackError(code, code, http_status=status)


STEP = make_steps(1, seed=190)[0]


def received(body: str, receive_count: int, handle: str) -> ReceivedMessage:
    """One receive of the same message (id `m-1`)."""
    now = time.time()
    return ReceivedMessage(
        message_id="m-1",
        receipt_handle=handle,
        body=body,
        receive_count=receive_count,
        sent_at=now - 1,
        received_at=now,
        group_id=None,
        attributes={},
    )


@dataclass
class Path:
    """A `Delivery` on fakes, for one message received twice."""

    delivery: Delivery
    queue: FakeQueue
    dlq: FakeQueue
    transfer: ScriptedTransfer

    def attempts_on_copy(self) -> int:
        [copy] = self.dlq.sent
        return int(copy.attributes["relay-attempts"])


def path(script: list[str | None], **config: Any) -> Path:
    """Two throttled attempts on the first receive, then `script`."""
    settings: dict[str, Any] = {
        "queue_url": QUEUE,
        "max_attempts": 2,
        "backoff_base_s": 0.0,
        "backoff_cap_s": 0.0,
        "release_base_s": 0.0,
        "release_cap_s": 0.0,
        "breaker_cooldown_s": 60.0,
        "max_receives": 5,
        "adaptive_rate": False,
        **config,
    }
    queue, dlq = FakeQueue(QUEUE), FakeQueue(DLQ)
    transfer = ScriptedTransfer(["ThrottlingException", "ThrottlingException", *script])
    delivery = Delivery(
        RunConfig(**settings),
        queue=queue,  # type: ignore[arg-type]
        dlq=dlq,  # type: ignore[arg-type]
        transfer=transfer,
        metrics=Metrics(),
    )
    return Path(delivery, queue, dlq, transfer)


async def twice(
    p: Path, step: StepResult = STEP, between: Callable[[Path], None] = lambda p: None
) -> tuple[MessageResult, MessageResult]:
    """The first receive (two throttled attempts: released), then the second."""
    first = await p.delivery.process(received(step.to_body(), 1, "r-1"))
    assert (first.outcome.value, first.attempts) == ("released", 2)
    between(p)
    second = await p.delivery.process(received(step.to_body(), 2, "r-2"))
    return first, second


async def test_a_200_after_a_released_receive_counts_both_receives() -> None:
    """Delivered on the second receive with one attempt: 3 in all."""
    p = path([None])
    _, second = await twice(p)
    assert (second.outcome.value, second.attempts) == ("delivered", 3)


async def test_a_dead_letter_after_a_released_receive_counts_both_receives() -> None:
    """InvalidRequestException on the second receive: the copy says 3 attempts."""
    p = path(["InvalidRequestException"])
    _, second = await twice(p)
    assert second.outcome.value == "dead_lettered"
    assert p.attempts_on_copy() == 3


async def test_a_conflict_counts_the_attempts_of_earlier_receives() -> None:
    """The step was delivered with the other status meanwhile: conflict with no call now, and
    the copy counts the two attempts of the first receive (it said 0)."""
    p = path([])

    def delivered_as_failure(p: Path) -> None:
        p.delivery.delivered.remember(STEP.step_key, Status.FAILURE.value)

    _, second = await twice(p, between=delivered_as_failure)
    assert second.outcome.value == "conflict"
    assert p.attempts_on_copy() == 2
    assert p.transfer.calls == 2


async def test_a_duplicate_counts_the_attempts_of_earlier_receives() -> None:
    """Delivered with the same status meanwhile: duplicate, attempts 2, no call."""
    p = path([])

    def delivered(p: Path) -> None:
        p.delivery.delivered.remember(STEP.step_key, STEP.status.value)

    _, second = await twice(p, between=delivered)
    assert (second.outcome.value, second.attempts) == ("duplicate", 2)


async def test_an_open_circuit_release_keeps_the_earlier_count() -> None:
    """The workflow's circuit opened meanwhile: released with no call, the count kept at 2
    (a release stored 0 over it), so a later dead-letter still says so."""
    p = path(["InvalidRequestException"])

    def denied(p: Path) -> None:
        p.delivery.circuits.denied(STEP.workflow_id)

    _, second = await twice(p, between=denied)
    assert (second.outcome.value, second.attempts) == ("released", 2)
    p.delivery.circuits.answered(STEP.workflow_id)
    third = await p.delivery.process(received(STEP.to_body(), 3, "r-3"))
    assert third.outcome.value == "dead_lettered"
    assert p.attempts_on_copy() == 3


async def test_a_shutdown_before_the_call_abandons_with_the_earlier_count() -> None:
    """No time left for a call: abandoned, visible at once, attempts 2."""
    p = path([None])
    shutdown = Shutdown(grace_s=0.0)
    p.delivery.shutdown = p.delivery.sender.shutdown = shutdown

    _, second = await twice(p, between=lambda p: shutdown("SIGTERM"))
    assert (second.outcome.value, second.attempts) == ("abandoned", 2)
    assert p.queue.visibility[-1] == ("r-2", 0.0)
    assert p.transfer.calls == 2


async def test_retries_exhausted_at_the_limit_counts_every_receive() -> None:
    """A 5xx again on the receive that reaches --max-receives: retries_exhausted, 4 attempts."""
    p = path(["InternalServiceError", "InternalServiceError"], max_receives=2)
    _, second = await twice(p)
    assert second.outcome.value == "dead_lettered"
    assert p.attempts_on_copy() == 4


@pytest.mark.parametrize("refused", ["send", "delete"])
async def test_a_refused_dead_letter_or_delete_keeps_the_count_for_the_next_receive(
    refused: str,
) -> None:
    """SQS refuses the copy or the delete: released, and the next receive's copy still counts
    every attempt made."""
    p = path(["InvalidRequestException", "InvalidRequestException"])
    target = p.dlq if refused == "send" else p.queue
    _, second = await twice(p, between=lambda p: target.fail.add(refused))
    assert (second.outcome.value, second.attempts) == ("released", 3)
    target.fail.clear()
    p.dlq.sent.clear()
    third = await p.delivery.process(received(STEP.to_body(), 3, "r-3"))
    assert third.outcome.value == "dead_lettered"
    assert p.attempts_on_copy() == 4


async def test_a_copy_that_waited_on_another_carries_its_own_count() -> None:
    """Two copies of a step (two message ids) in one process: each copy's count is its own."""
    p = path([None])
    first = await p.delivery.process(received(STEP.to_body(), 1, "r-1"))
    other = replace(received(STEP.to_body(), 1, "r-9"), message_id="m-2")
    copy = await p.delivery.process(other)
    assert (first.outcome.value, first.attempts) == ("released", 2)
    assert (copy.outcome.value, copy.attempts) == ("delivered", 1)


async def test_an_invalid_body_makes_no_attempt() -> None:
    """Validation: dead-lettered at once with 0 attempts."""
    p = path([])
    result = await p.delivery.process(received("{", 1, "r-1"))
    assert result.outcome.value == "dead_lettered"
    assert p.attempts_on_copy() == 0


async def test_a_message_held_back_by_a_probe_in_flight_does_not_free_that_probe() -> None:
    """The workflow's probe is out (taken by another message): this one is released without a
    call, and the probe stays taken, so no second probe goes out beside it."""
    p = path([], breaker_cooldown_s=0.0)
    p.delivery.circuits.denied(STEP.workflow_id)
    assert p.delivery.circuits.allow(STEP.workflow_id)  # the other message takes the probe
    result = await p.delivery.process(received(STEP.to_body(), 1, "r-1"))
    assert result.outcome.value == "released"
    assert p.transfer.calls == 0
    assert not p.delivery.circuits.allow(STEP.workflow_id)
