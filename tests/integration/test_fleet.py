"""A fleet answers each step once (DESIGN §10): workers sharing a delivered-memory table.

Each `open_worker` here is a separate worker with its own local memory, as separate tasks
would be; they share the queue, the emulator and moto's DynamoDB table. Every test accounts
for every message: delivered + duplicate + dead-lettered + still queued = sent.
"""

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from relay.aws import new_session
from relay.dedupe import DedupeTable, create_dedupe_table, dedupe_config
from relay.emulator import Faults
from relay.local import MotoServer
from relay.message import Status, StepResult
from relay.outcomes import OUTCOME_UNKNOWN
from relay.worker import Worker, open_worker
from tests.conftest import Emulator, Queues
from tests.dedupe_support import (
    STRIPPED,
    THROTTLED,
    serve_faulty_dynamodb,
    serve_switchable_dynamodb,
)
from tests.integration.worker_support import (
    fast_config,
    outcome_totals,
    register,
    run_until,
    sample,
)
from tests.support import (
    SQSClient,
    delivered_keys,
    drain,
    eventually,
    make_steps,
    send_bodies,
    total_depth,
)

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any


@pytest.fixture
async def table(local_dynamodb: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh delivered-memory table on moto's DynamoDB, found through the standard chain."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
    name = f"relay-fleet-{uuid.uuid4().hex[:12]}"
    async with new_session().create_client("dynamodb", config=dedupe_config()) as client:
        await create_dedupe_table(client, name)
    return name


async def run_fleet(configs: list[Any], *, timeout_s: float = 90.0) -> list[Worker]:
    """Runs the workers side by side until each finds the queue empty."""
    workers: list[Worker] = []

    async def one(config: Any) -> None:
        async with open_worker(config) as worker:
            workers.append(worker)
            await worker.run(handle_signals=False)

    await asyncio.wait_for(asyncio.gather(*(one(c) for c in configs)), timeout_s)
    return workers


def totals(workers: list[Worker]) -> dict[str, int]:
    """Finished messages by outcome over the fleet."""
    summed: dict[str, int] = {}
    for worker in workers:
        for outcome, count in outcome_totals(worker).items():
            summed[outcome] = summed.get(outcome, 0) + count
    return summed


async def assert_each_step_called_once(
    sqs: SQSClient,
    queues: Queues,
    emulator: Emulator,
    steps: list[StepResult],
    workers: list[Worker],
) -> None:
    """Every step sent twice was called once: delivered once, its copy a duplicate, no second
    call, nothing dead-lettered, the queue empty."""
    assert sorted(delivered_keys(emulator.state.calls)) == sorted(
        (*s.step_key, s.status.value) for s in steps
    )
    assert invalid_request_calls(emulator) == 0
    fleet = totals(workers)
    assert (fleet.get("delivered", 0), fleet.get("duplicate", 0)) == (len(steps), len(steps))
    assert fleet.get("dead_lettered", 0) == 0
    assert await drain(sqs, queues.dlq_url) == []
    assert await total_depth(sqs, queues.url) == 0


def invalid_request_calls(emulator: Emulator) -> int:
    """Calls the emulator refused as already answered: a second call for a step."""
    return sum(c.error_code == "InvalidRequestException" for c in emulator.state.calls)


async def test_two_workers_and_copies_call_each_step_exactly_once(
    sqs: SQSClient, queues: Queues, emulator: Emulator, table: str
) -> None:
    """Two workers on one queue, every step sent twice (copies side by side and copies sent
    later): one successful call per step, no second call, every copy a duplicate, no DLQ."""
    steps = make_steps(30, seed=150)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=20))
    bodies = [s.to_body() for s in steps]
    await send_bodies(sqs, queues.url, [b for body in bodies[:15] for b in (body, body)])
    await send_bodies(sqs, queues.url, bodies[15:])
    config = fast_config(queues.url, dedupe_table=table, max_in_flight=8, pollers=2)

    async def later_copies() -> None:
        await eventually(
            lambda: len(delivered_keys(emulator.state.calls)) >= 20, what="20 delivered"
        )
        await send_bodies(sqs, queues.url, bodies[15:])

    copies = asyncio.create_task(later_copies())
    workers = await run_fleet([config, config])
    await copies
    # The later copies may arrive after both workers found the queue empty: a third drains.
    workers += await run_fleet([config])

    await assert_each_step_called_once(sqs, queues, emulator, steps, workers)


async def test_a_conflicting_status_from_another_process_is_caught_without_a_call(
    sqs: SQSClient, queues: Queues, emulator: Emulator, table: str
) -> None:
    """A step one worker delivered as SUCCESS, then a FAILURE for it seen by another worker
    (another process, empty local memory): conflict, dead-lettered, no second call."""
    step = make_steps(1, seed=151)[0]
    register(emulator.state, [step])
    await send_bodies(sqs, queues.url, [step.to_body()])
    # Short polls: a long poll cut short when the first worker stops could still take the next
    # message and hide it for the visibility timeout.
    config = fast_config(queues.url, dedupe_table=table, wait_time_s=0)
    first = await run_fleet([config])
    other = StepResult(step.workflow_id, step.execution_id, step.token, Status.FAILURE)
    await send_bodies(sqs, queues.url, [other.to_body()])

    second = await run_fleet([config])

    assert outcome_totals(first[0]) == {"delivered": 1}
    assert outcome_totals(second[0]) == {"conflict": 1}
    assert len(emulator.state.calls) == 1
    [copy] = await drain(sqs, queues.dlq_url)
    assert copy.attributes["relay-reason"] == "conflict"
    assert "SUCCESS" in copy.attributes["relay-error-message"]
    assert await total_depth(sqs, queues.url) == 0


async def test_a_claim_left_by_a_killed_task_is_taken_over_after_its_lease(
    sqs: SQSClient, queues: Queues, emulator: Emulator, table: str
) -> None:
    """A task claimed the step and died: the worker finds the live claim, releases the message
    (not a failure, so not dead-lettered on --max-receives 2), and delivers it once the lease
    has lapsed."""
    step = make_steps(1, seed=152)[0]
    register(emulator.state, [step])
    async with new_session().create_client("dynamodb", config=dedupe_config()) as client:
        killed = DedupeTable(client, table, "killed-task")
        await killed.claim(step.step_key, step.status, lease_s=2.0)
    await send_bodies(sqs, queues.url, [step.to_body()])

    [worker] = await run_fleet([fast_config(queues.url, dedupe_table=table, max_receives=2)])

    ended = outcome_totals(worker)
    assert ended["delivered"] == 1
    assert 1 <= ended["released"] <= 3  # looked again every second or so until the lease lapsed
    assert [c.http_status for c in emulator.state.calls] == [200]
    assert await drain(sqs, queues.dlq_url) == []
    assert await total_depth(sqs, queues.url) == 0


async def test_the_table_going_away_mid_run_never_stops_callbacks(
    sqs: SQSClient,
    queues: Queues,
    emulator: Emulator,
    local_dynamodb: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The table stops answering halfway: the worker falls back to its own memory, counts the
    failed table calls, and delivers every message once."""
    steps = make_steps(24, seed=153)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=40))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    name = f"relay-fleet-{uuid.uuid4().hex[:12]}"
    async with serve_switchable_dynamodb(local_dynamodb.url) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint.url)
        async with new_session().create_client("dynamodb", config=dedupe_config()) as client:
            await create_dedupe_table(client, name)
        config = fast_config(queues.url, dedupe_table=name, max_in_flight=2, pollers=1)
        async with open_worker(config) as worker:
            run = asyncio.create_task(worker.run(handle_signals=False))
            await eventually(
                lambda: len(delivered_keys(emulator.state.calls)) >= 6, what="6 delivered"
            )
            endpoint.down = True
            await asyncio.wait_for(run, 120)

    # The first failed claims release their message to look again; once the table counts as
    # down, the rest go on with the local memory.
    ended = outcome_totals(worker)
    assert ended["delivered"] == 24
    assert set(ended) <= {"delivered", "released"}
    assert sorted(delivered_keys(emulator.state.calls)) == sorted(
        (*s.step_key, s.status.value) for s in steps
    )
    assert endpoint.refused > 0
    assert sample(worker, "relay_dedupe_table_errors_total", code="InternalServerError") > 0
    assert sample(worker, "relay_dedupe_table_errors_total", code="table_down") > 0
    assert await total_depth(sqs, queues.url) == 0


@pytest.mark.parametrize("tasks", [2, 3])
async def test_a_table_that_throttles_half_its_calls_still_gets_each_step_called_once(
    sqs: SQSClient,
    queues: Queues,
    emulator: Emulator,
    local_dynamodb: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    tasks: int,
) -> None:
    """Two or three tasks, every step sent twice, the table throttling half of its calls and
    failing a tenth with 500s (DESIGN §10): retried within their budget, the claims still
    arbitrate, so each step is called exactly once; nothing is dead-lettered or lost."""
    steps = make_steps(30, seed=155 + tasks)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=20))
    bodies = [s.to_body() for s in steps]
    await send_bodies(sqs, queues.url, [b for body in bodies for b in (body, body)])
    name = f"relay-fleet-{uuid.uuid4().hex[:12]}"
    async with serve_faulty_dynamodb(
        local_dynamodb.url, seed=tasks, throttle_share=0.5, error_share=0.1, after_share=0.5
    ) as table:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
        async with new_session().create_client("dynamodb", config=dedupe_config()) as client:
            await create_dedupe_table(client, name)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", table.url)
        config = fast_config(queues.url, dedupe_table=name, max_in_flight=8, pollers=2)
        workers = await run_fleet([config] * tasks, timeout_s=120)

    assert table.seen[THROTTLED] > 0
    await assert_each_step_called_once(sqs, queues, emulator, steps, workers)


async def test_a_store_that_answers_a_failed_condition_without_the_item_calls_each_step_once(
    sqs: SQSClient,
    queues: Queues,
    emulator: Emulator,
    local_dynamodb: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DynamoDB-compatible store that leaves `Item` out of a failed condition: the claim reads
    the holder back (a consistent GetItem) instead of failing open, so two tasks with every
    step sent twice call each step once."""
    steps = make_steps(30, seed=158)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=20))
    bodies = [s.to_body() for s in steps]
    await send_bodies(sqs, queues.url, [b for body in bodies for b in (body, body)])
    name = f"relay-fleet-{uuid.uuid4().hex[:12]}"
    async with serve_faulty_dynamodb(local_dynamodb.url, strip_item=True) as table:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
        async with new_session().create_client("dynamodb", config=dedupe_config()) as client:
            await create_dedupe_table(client, name)
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", table.url)
        config = fast_config(queues.url, dedupe_table=name, max_in_flight=8, pollers=2)
        workers = await run_fleet([config, config], timeout_s=120)

    assert table.seen[STRIPPED] > 0
    await assert_each_step_called_once(sqs, queues, emulator, steps, workers)


async def test_a_lost_answer_is_known_to_the_next_task_through_the_table(
    sqs: SQSClient, queues: Queues, emulator: Emulator, table: str
) -> None:
    """One task's call times out but lands; it stops. Another task, whose own memory knows
    nothing, claims the step, learns from the table that an earlier outcome is unknown, and
    dead-letters the service's refusal saying so (DESIGN §1), never as a plain bad request."""
    step = make_steps(1, seed=159)[0]
    register(emulator.state, [step])
    emulator.state.set_faults(Faults(latency_ms=1500))
    await send_bodies(sqs, queues.url, [step.to_body()])
    first_config = fast_config(
        queues.url,
        dedupe_table=table,
        call_timeout_s=0.5,
        max_attempts=1,
        release_base_s=0.0,
        exit_when_empty=False,
    )
    await run_until(first_config, lambda w: w.counts["released"] >= 1, what="a timed-out receive")
    await eventually(lambda: not emulator.state.is_waiting(*step.step_key), what="the lost call")
    emulator.state.set_faults(Faults())
    [second] = await run_fleet([fast_config(queues.url, dedupe_table=table)])

    assert outcome_totals(second) == {"dead_lettered": 1}
    assert [c.error_code for c in emulator.state.calls] == [None, "InvalidRequestException"]
    [copy] = await drain(sqs, queues.dlq_url)
    assert copy.attributes["relay-reason"] == "invalid_request"
    assert copy.attributes["relay-error-message"].startswith(OUTCOME_UNKNOWN)
    assert await total_depth(sqs, queues.url) == 0
