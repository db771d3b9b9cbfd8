"""The worker against moto's SQS server and the emulator: every outcome and reason, the
dead-letter format, retries, and the accounting of every message."""

import asyncio
import json
import re
from typing import Any

import pytest
from aiobotocore.session import get_session

from relay.emulator import FailureKind, Faults
from relay.message import Status
from relay.worker import open_worker
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import (
    fast_config,
    outcome_totals,
    register,
    run_to_empty,
    sample,
)
from tests.support import (
    SQSClient,
    delivered_keys,
    drain,
    event_body,
    eventually,
    make_steps,
    send_bodies,
    sns_body,
    total_depth,
)

ISO_Z = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


async def test_all_three_shapes_are_delivered(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Canonical bodies, custom-step events and SNS envelopes around either are all delivered."""
    steps = make_steps(8, seed=1)
    register(emulator.state, steps)
    bodies = [
        steps[0].to_body(),
        steps[1].to_body(),
        event_body(steps[2]),
        event_body(steps[3]),
        sns_body(steps[4].to_body()),
        sns_body(steps[5].to_body()),
        sns_body(event_body(steps[6])),
        sns_body(event_body(steps[7])),
    ]
    await send_bodies(sqs, queues.url, bodies)

    worker = await run_to_empty(fast_config(queues.url))

    expected = sorted((s.workflow_id, s.execution_id, s.token, s.status.value) for s in steps)
    assert sorted(delivered_keys(emulator.state.calls)) == expected
    assert outcome_totals(worker) == {"delivered": 8}
    assert await total_depth(sqs, queues.url) == 0
    assert await drain(sqs, queues.dlq_url) == []


async def test_permanent_failures_are_dead_lettered_with_every_attribute(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Validation, not_found and invalid_request go to the DLQ once, verbatim, fully annotated."""
    good, unknown, answered = make_steps(3, seed=2)
    register(emulator.state, [good, answered])
    await _answer_directly(emulator, answered)
    bodies = {
        "validation": '{"WorkflowId": "w-bad", "ExecutionId": 1}',
        "not_found": unknown.to_body(),
        "invalid_request": answered.to_body(),
        "delivered": good.to_body(),
    }
    ids = dict(zip(bodies, await send_bodies(sqs, queues.url, list(bodies.values())), strict=True))

    worker = await run_to_empty(fast_config(queues.url))

    dead = {m.attributes["relay-reason"]: m for m in await drain(sqs, queues.dlq_url)}
    assert set(dead) == {"validation", "not_found", "invalid_request"}
    expected_codes = {
        "validation": "ValidationError",
        "not_found": "ResourceNotFoundException",
        "invalid_request": "InvalidRequestException",
    }
    for reason, copy in dead.items():
        assert copy.body == bodies[reason]
        assert copy.attributes["relay-error-code"] == expected_codes[reason]
        assert copy.attributes["relay-error-message"]
        assert copy.attributes["relay-source-queue"] == queues.url
        assert copy.attributes["relay-source-message-id"] == ids[reason]
        assert ISO_Z.fullmatch(copy.attributes["relay-dead-lettered-at"])
        assert int(copy.attributes["relay-attempts"]) == (0 if reason == "validation" else 1)
    assert "WorkflowId" in dead["validation"].attributes["relay-error-message"]
    assert outcome_totals(worker) == {"delivered": 1, "dead_lettered": 3}
    assert await total_depth(sqs, queues.url) == 0


async def test_retryable_failures_are_released_then_exhausted(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """A callback that keeps failing with 5xx is released each receive, then dead-lettered as
    retries_exhausted on receive --max-receives."""
    steps = make_steps(3, seed=3)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(error_rate=1.0))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    worker = await run_to_empty(fast_config(queues.url, max_receives=3, max_attempts=2))

    dead = await drain(sqs, queues.dlq_url)
    assert [m.attributes["relay-reason"] for m in dead] == ["retries_exhausted"] * 3
    # Two attempts on each of three receives, all counted.
    assert {m.attributes["relay-attempts"] for m in dead} == {"6"}
    assert len(emulator.state.calls) == 3 * 3 * 2
    totals = outcome_totals(worker)
    assert totals == {"released": 6, "dead_lettered": 3}
    assert sample(worker, "relay_callback_retries_total") == 9  # one per receive
    assert await total_depth(sqs, queues.url) == 0


async def test_storm_of_5xx_then_recovery_delivers_everything(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Every kind of 5xx and connection-level failure is retried until the service recovers."""
    steps = make_steps(20, seed=4)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(error_rate=1.0))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    async with open_worker(fast_config(queues.url, max_receives=1000)) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: len(emulator.state.calls) >= 60, what="60 failed calls")
        emulator.state.set_faults(Faults())
        await asyncio.wait_for(running, 60)

    failures = {c.error_code for c in emulator.state.calls if c.http_status != 200}
    assert failures == {"ServiceUnavailableException", "InternalServiceError", "502"}
    assert len(delivered_keys(emulator.state.calls)) == 20
    assert outcome_totals(worker)["delivered"] == 20
    assert await total_depth(sqs, queues.url) == 0
    assert await drain(sqs, queues.dlq_url) == []


async def test_throttling_is_retried_no_sooner_than_retry_after(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """After a ThrottlingException the next attempt for that step waits RetryAfterSeconds."""
    steps = make_steps(4, seed=5)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(throttle_rps=2.0, throttle_burst=1, retry_after_s=1.0))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    worker = await run_to_empty(fast_config(queues.url, retry_budget_s=10.0, max_attempts=8))

    calls = emulator.state.calls
    throttled = [c for c in calls if c.error_code == "ThrottlingException"]
    assert throttled, "the bucket never throttled: the test proves nothing"
    for call in throttled:
        later = [c for c in calls if c.token == call.token and c.index > call.index]
        assert later, "a throttled step was never retried"
        assert later[0].received_at - call.answered_at >= 1.0 - 0.02
    assert len(delivered_keys(calls)) == 4
    assert sample(worker, "relay_throttles_total") == len(throttled)
    assert await total_depth(sqs, queues.url) == 0


async def test_access_denied_releases_until_max_receives(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """AccessDeniedException releases the message and dead-letters it as access_denied only
    once the receive count reaches --max-receives."""
    denied = make_steps(2, seed=6)
    register(emulator.state, denied)
    emulator.state.set_faults(Faults(deny_workflows=frozenset({denied[0].workflow_id})))
    await send_bodies(sqs, queues.url, [s.to_body() for s in denied])

    worker = await run_to_empty(fast_config(queues.url, max_receives=3))

    dead = await drain(sqs, queues.dlq_url)
    assert [m.attributes["relay-reason"] for m in dead] == ["access_denied"] * 2
    assert {m.attributes["relay-error-code"] for m in dead} == {"AccessDeniedException"}
    assert outcome_totals(worker) == {"released": 4, "dead_lettered": 2}
    assert await total_depth(sqs, queues.url) == 0


async def test_past_the_callback_deadline_a_retryable_failure_expires(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """A message older than --callback-deadline that fails retryably is dead-lettered as expired."""
    steps = make_steps(2, seed=7)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(error_rate=1.0))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    worker = await run_to_empty(fast_config(queues.url, callback_deadline_s=0.0, max_attempts=2))

    dead = await drain(sqs, queues.dlq_url)
    assert [m.attributes["relay-reason"] for m in dead] == ["expired"] * 2
    assert len(emulator.state.calls) == 4  # not retried past this receive
    assert outcome_totals(worker) == {"dead_lettered": 2}


async def test_two_large_dead_letter_copies_go_in_separate_requests(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Two ~700 KB bad messages in one receive batch both reach the DLQ with their bodies."""
    bodies = [json.dumps({"WorkflowId": "w-bad", "padding": str(i) * 700_000}) for i in range(2)]
    await send_bodies(sqs, queues.url, bodies)

    worker = await run_to_empty(fast_config(queues.url))

    dead = await drain(sqs, queues.dlq_url)
    assert sorted(m.body for m in dead) == sorted(bodies)
    assert {m.attributes["relay-reason"] for m in dead} == {"validation"}
    assert outcome_totals(worker) == {"dead_lettered": 2}
    assert await total_depth(sqs, queues.url) == 0


async def test_a_failing_dlq_leaves_messages_on_the_source_queue(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """With the DLQ gone, nothing is deleted that was not delivered: bad messages stay queued."""
    steps = make_steps(3, seed=8)
    register(emulator.state, steps)
    bad = ['{"not": "a step result"}', "not json at all"]

    config = fast_config(queues.url, exit_when_empty=False, release_base_s=1.0, release_cap_s=1.0)
    async with open_worker(config) as worker:
        # The DLQ disappears after the start-up check found it.
        await sqs.delete_queue(QueueUrl=queues.dlq_url)
        await send_bodies(sqs, queues.url, [s.to_body() for s in steps] + bad)
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(
            lambda: (
                worker.metrics.total(worker.metrics.dead_letter_errors) >= 2
                and len(delivered_keys(emulator.state.calls)) == 3
            ),
            what="deliveries and failed dead-letters",
        )
        worker.stop()
        await asyncio.wait_for(running, 30)

    assert await total_depth(sqs, queues.url) == 2
    left = await _receive_all_eventually(sqs, queues.url, 2)
    assert sorted(left) == sorted(bad)
    assert outcome_totals(worker).get("dead_lettered", 0) == 0
    assert outcome_totals(worker)["delivered"] == 3


async def test_a_mix_of_everything_accounts_for_every_message(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Throttling, 5xx, bad bodies and unknown executions at once: delivered + dead-lettered
    equals sent, and the metrics agree with the queues."""
    good = make_steps(120, seed=9)
    unknown = make_steps(10, seed=10)
    register(emulator.state, good)
    emulator.state.set_faults(
        Faults(
            throttle_rps=400,
            throttle_burst=20,
            error_rate=0.1,
            error_kinds=(FailureKind.SERVICE_UNAVAILABLE, FailureKind.BAD_GATEWAY),
        )
    )
    bad = [f'{{"broken": {i}' for i in range(10)]
    bodies = [s.to_body() for s in good] + [s.to_body() for s in unknown] + bad
    await send_bodies(sqs, queues.url, bodies)

    worker = await run_to_empty(fast_config(queues.url, max_receives=100, max_attempts=6))

    dead = await drain(sqs, queues.dlq_url)
    delivered = delivered_keys(emulator.state.calls)
    assert len(delivered) == len(set(delivered)) == 120
    reasons = sorted(m.attributes["relay-reason"] for m in dead)
    assert reasons == ["not_found"] * 10 + ["validation"] * 10
    assert len(delivered) + len(dead) == len(bodies)
    totals = outcome_totals(worker)
    assert totals["delivered"] == 120
    assert totals["dead_lettered"] == 20
    assert await total_depth(sqs, queues.url) == 0


async def test_a_slow_callback_keeps_its_message_invisible(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """A callback slower than the visibility timeout is not received twice: the heartbeat
    extends the lease."""
    steps = make_steps(3, seed=11)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=7_000))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    config = fast_config(
        queues.url, visibility_timeout_s=5, retry_budget_s=4.0, call_timeout_s=15.0
    )
    worker = await run_to_empty(config)

    assert len(emulator.state.calls) == 3
    assert sample(worker, "relay_received_messages_total") == 3
    assert sample(worker, "relay_heartbeat_extensions_total") >= 3
    assert outcome_totals(worker) == {"delivered": 3}


async def _answer_directly(emulator: Emulator, step: Any) -> None:
    async with get_session().create_client("transfer", endpoint_url=emulator.url) as client:
        await client.send_workflow_step_state(**step.to_request())


async def _receive_all_eventually(sqs: SQSClient, queue_url: str, count: int) -> list[str]:
    """Bodies of `count` messages, waiting for released ones to become visible (bounded)."""
    bodies: list[str] = []

    async def more() -> bool:
        bodies.extend(m.body for m in await drain(sqs, queue_url))
        return len(bodies) >= count

    await eventually(more, timeout_s=20, interval_s=0.2, what=f"{count} messages visible")
    return bodies


@pytest.mark.parametrize("status", [Status.SUCCESS, Status.FAILURE])
async def test_both_statuses_reach_the_service(
    sqs: SQSClient, queues: Queues, emulator: Emulator, status: Status
) -> None:
    """SUCCESS and FAILURE results are both sent with their status unchanged."""
    steps = make_steps(2, status=status, seed=12)
    register(emulator.state, steps)
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    await run_to_empty(fast_config(queues.url))

    assert {c.status for c in emulator.state.calls} == {status.value}
    assert len(delivered_keys(emulator.state.calls)) == 2
