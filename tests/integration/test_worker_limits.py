"""What relay does beyond a generic SQS consumer: duplicates and conflicts, a circuit per
workflow, FIFO order, the rate cap, and a bounded duplicate memory."""

import asyncio
import uuid
from collections import defaultdict

from relay.emulator import Faults
from relay.message import Status, StepResult
from relay.worker import open_worker
from tests.conftest import Emulator, Queues, create_queue_pair
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
    eventually,
    make_steps,
    send_bodies,
    total_depth,
    workflow_id,
)


async def test_two_copies_in_one_batch_make_one_call(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """Two copies of a step result received together: one call, one delivered, one duplicate."""
    step = make_steps(1, seed=51)[0]
    register(emulator.state, [step])
    emulator.state.set_faults(Faults(latency_ms=200))
    await send_bodies(sqs, queues.url, [step.to_body(), step.to_body()])

    worker = await run_to_empty(fast_config(queues.url, pollers=1))

    assert len(emulator.state.calls) == 1
    assert outcome_totals(worker) == {"delivered": 1, "duplicate": 1}
    assert await total_depth(sqs, queues.url) == 0
    assert await drain(sqs, queues.dlq_url) == []


async def test_later_copies_are_duplicates_or_conflicts_without_a_call(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """A copy redelivered later is deleted as duplicate; the same step with the other status is
    dead-lettered as conflict; neither reaches Transfer Family."""
    step = make_steps(1, seed=52)[0]
    other = StepResult(step.workflow_id, step.execution_id, step.token, Status.FAILURE)
    register(emulator.state, [step])
    await send_bodies(sqs, queues.url, [step.to_body()])

    async with open_worker(fast_config(queues.url, exit_when_empty=False)) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: worker.counts["delivered"] == 1, what="first delivery")
        await send_bodies(sqs, queues.url, [step.to_body()])
        await eventually(lambda: worker.counts["duplicate"] == 1, what="the duplicate")
        await send_bodies(sqs, queues.url, [other.to_body()])
        await eventually(lambda: worker.counts["conflict"] == 1, what="the conflict")
        worker.stop()
        await asyncio.wait_for(running, 30)

    assert len(emulator.state.calls) == 1
    dead = await drain(sqs, queues.dlq_url)
    assert [m.attributes["relay-reason"] for m in dead] == ["conflict"]
    assert dead[0].body == other.to_body()
    assert outcome_totals(worker) == {"delivered": 1, "duplicate": 1, "conflict": 1}
    assert await total_depth(sqs, queues.url) == 0


async def test_denied_workflow_is_held_back_while_others_flow(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """AccessDenied for one workflow opens its circuit: its messages are released without
    calls and dead-lettered only at --max-receives, while another workflow is all delivered."""
    denied = make_steps(30, workflow=workflow_id(), seed=53)
    allowed = make_steps(30, workflow=workflow_id(), seed=54)
    register(emulator.state, denied + allowed)
    emulator.state.set_faults(Faults(deny_workflows=frozenset({denied[0].workflow_id})))
    bodies = [s.to_body() for pair in zip(denied, allowed, strict=True) for s in pair]
    await send_bodies(sqs, queues.url, bodies)

    config = fast_config(queues.url, max_receives=3, breaker_cooldown_s=0.5, max_in_flight=6)
    worker = await run_to_empty(config)

    calls = emulator.state.calls
    allowed_calls = [c for c in calls if c.workflow_id == allowed[0].workflow_id]
    denied_calls = [c for c in calls if c.workflow_id == denied[0].workflow_id]
    assert len(allowed_calls) == 30
    assert all(c.http_status == 200 for c in allowed_calls)
    # Without the circuit: a call per denied message on each of 3 receives (90).
    assert 1 <= len(denied_calls) < 30
    dead = await drain(sqs, queues.dlq_url)
    assert len(dead) == 30
    assert {m.attributes["relay-reason"] for m in dead} == {"access_denied"}
    assert outcome_totals(worker)["delivered"] == 30
    assert sample(worker, "relay_open_circuits") == 1
    assert await total_depth(sqs, queues.url) == 0


async def test_denied_workflow_flows_again_once_access_returns(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """When the service stops denying before --max-receives, the probe closes the circuit and
    every message of that workflow is delivered."""
    steps = make_steps(10, seed=55)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(deny_workflows=frozenset({steps[0].workflow_id})))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    config = fast_config(queues.url, max_receives=50, breaker_cooldown_s=0.3)
    async with open_worker(config) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: worker.counts["released"] >= 10, what="messages held back")
        emulator.state.set_faults(Faults())
        await asyncio.wait_for(running, 60)

    assert len(delivered_keys(emulator.state.calls)) == 10
    assert outcome_totals(worker)["delivered"] == 10
    assert sample(worker, "relay_open_circuits") == 0
    assert await drain(sqs, queues.dlq_url) == []
    assert await total_depth(sqs, queues.url) == 0


async def test_fifo_groups_keep_their_order_under_concurrency(
    sqs: SQSClient, emulator: Emulator
) -> None:
    """On a FIFO queue the calls of each group happen in send order, groups run in parallel,
    and dead-letter copies to the FIFO DLQ are accepted with their group id.

    Two moto quirks shape this test (real SQS has neither): moto hands out a FIFO group's
    returned messages last-first, so there are no 5xx here to release a head; and concurrent
    receives can split one group between them, so one poller.
    """
    queues = await create_queue_pair(sqs, fifo=True)
    workflow = workflow_id()
    groups = [str(uuid.uuid4()) for _ in range(8)]
    steps = {
        g: [StepResult(workflow, g, f"t{g[:4]}_{i}", Status.SUCCESS) for i in range(8)]
        for g in groups
    }
    register(emulator.state, [s for group in steps.values() for s in group])
    emulator.state.set_faults(Faults(latency_ms=2, jitter_ms=30))
    sent = 0
    for index in range(8):
        for group in groups:
            entries = [
                {
                    "Id": "0",
                    "MessageBody": steps[group][index].to_body(),
                    "MessageGroupId": group,
                    "MessageDeduplicationId": steps[group][index].dedup_id(),
                }
            ]
            if index == 4:  # one bad message in the middle of each group
                entries.append(
                    {
                        "Id": "1",
                        "MessageBody": '{"bad": true}',
                        "MessageGroupId": group,
                        "MessageDeduplicationId": f"bad-{group}",
                    }
                )
            response = await sqs.send_message_batch(QueueUrl=queues.url, Entries=entries)
            assert not response.get("Failed")
            sent += len(entries)

    worker = await run_to_empty(fast_config(queues.url, pollers=1))

    order: dict[str, list[str]] = defaultdict(list)
    for call in sorted(emulator.state.calls, key=lambda c: c.index):
        if call.http_status == 200 and call.execution_id is not None and call.token is not None:
            order[call.execution_id].append(call.token)
    for group in groups:
        assert order[group] == [s.token for s in steps[group]], f"group {group} out of order"
    dead = await drain(sqs, queues.dlq_url)
    assert len(dead) == 8
    assert {m.system["MessageGroupId"] for m in dead} == set(groups)
    totals = outcome_totals(worker)
    assert totals["delivered"] == 64
    assert totals["dead_lettered"] == 8
    assert 64 + len(dead) == sent
    assert await total_depth(sqs, queues.url) == 0


async def test_max_rps_caps_the_call_rate_seen_by_the_service(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """With --max-rps 25 the overall call rate at the emulator stays at the cap, and no
    one-second window holds more than 30 (the cap, the bucket's one token of burst, and some
    slack: the emulator shares the test's event loop, so arrivals can bunch on its side)."""
    steps = make_steps(60, seed=56)
    register(emulator.state, steps)
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    await run_to_empty(fast_config(queues.url, max_rps=25.0))

    times = sorted(c.received_at for c in emulator.state.calls)
    assert len(times) == 60
    for i, start in enumerate(times):
        in_window = sum(1 for t in times[i:] if t - start < 1.0)
        assert in_window <= 30, f"{in_window} calls within one second"
    assert (len(times) - 1) / (times[-1] - times[0]) <= 25 * 1.05
    assert await total_depth(sqs, queues.url) == 0


async def test_duplicate_memory_stays_within_its_size(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """After far more distinct step results than --dedupe-size, the memory holds exactly so many."""
    steps = make_steps(40, seed=57)
    register(emulator.state, steps)
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    worker = await run_to_empty(fast_config(queues.url, dedupe_size=7))

    assert len(worker.delivery.delivered) == 7
    assert outcome_totals(worker) == {"delivered": 40}
    assert await total_depth(sqs, queues.url) == 0
