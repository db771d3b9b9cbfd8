"""Where two events meet in time (DESIGN §1 "A call whose answer was lost", §3 shutdown and
copies): a stop while calls are on the wire, a delete under way when the grace ends, an answer
lost to a timeout, a fresh copy beside one at --max-receives, and relay-attempts across
receives. Every test accounts for every message it sent.
"""

import asyncio
from typing import Any

import pytest
from structlog.testing import capture_logs

from relay.emulator import CallRecord, Faults
from relay.message import Status, StepResult
from relay.outcomes import OUTCOME_UNKNOWN
from relay.worker import open_worker
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import fast_config, register, run_to_empty, run_until
from tests.proxy_support import serve_holding_proxy
from tests.support import (
    SQSClient,
    delivered_keys,
    drain,
    eventually,
    make_steps,
    send_bodies,
    total_depth,
)

SENDERS = pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])


@SENDERS
async def test_a_stop_while_calls_are_on_the_wire_awaits_them_and_a_second_task_redoes_none(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """SIGTERM with ten calls on the wire, each slower than the grace: they are awaited, not
    cut, and delivered; the messages not yet started go back at once; a second task then
    delivers those, and no step is called twice (no InvalidRequest, DLQ empty)."""
    steps = make_steps(25, seed=180)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=1000))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    config = fast_config(
        queues.url,
        lean_sender=lean,
        shutdown_grace_s=0.3,
        call_timeout_s=5.0,
        max_in_flight=10,
        exit_when_empty=False,
    )
    first = await run_until(config, lambda w: w.shutdown.settling >= 10, what="10 on the wire")
    second = await run_to_empty(fast_config(queues.url, lean_sender=lean))

    assert dict(first.counts) == {"delivered": 10}
    assert dict(second.counts) == {"delivered": 15}
    calls = emulator.state.calls
    assert [c.error_code for c in calls if c.http_status != 200] == []
    assert sorted(delivered_keys(calls)) == sorted((*s.step_key, s.status.value) for s in steps)
    assert await drain(sqs, queues.dlq_url) == []
    assert await total_depth(sqs, queues.url) == 0


async def test_a_stop_leaves_no_time_for_a_new_attempt_and_gives_the_message_back_at_once(
    sqs: SQSClient, queues: Queues, emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the stop, a retry that could not finish within what is left of the grace is not
    started: the message goes back (released, with its failure) instead of a call being cut."""
    step = make_steps(1, seed=181)[0]
    register(emulator.state, [step])
    # Throttled with RetryAfterSeconds 1: the next attempt waits at least a second, so the stop
    # comes while the sender waits.
    emulator.state.set_faults(Faults(error_workflows={step.workflow_id: "ThrottlingException"}))
    await send_bodies(sqs, queues.url, [step.to_body()])
    config = fast_config(
        queues.url,
        shutdown_grace_s=0.5,
        call_timeout_s=5.0,
        max_attempts=10,
        retry_budget_s=20.0,
        exit_when_empty=False,
    )
    async with open_worker(config) as worker:
        record_call = emulator.state.record_call

        def stop_on_the_first_answer(**fields: Any) -> CallRecord:
            # The stop comes as the first attempt is answered, before its retry is due (a
            # test polling for that answer could come after the retry on a busy machine).
            record = record_call(**fields)
            if not worker.shutdown.is_requested:
                worker.stop("SIGTERM")
            return record

        monkeypatch.setattr(emulator.state, "record_call", stop_on_the_first_answer)
        await asyncio.wait_for(worker.run(handle_signals=False), 10)

    # One attempt was made before the stop, none after it: the grace never held a call timeout.
    assert len(emulator.state.calls) == 1
    assert dict(worker.counts) == {"released": 1}
    assert emulator.state.is_waiting(*step.step_key)
    assert await total_depth(sqs, queues.url) == 1


async def test_a_delete_under_way_when_the_grace_ends_counts_as_delivered(
    sqs: SQSClient,
    queues: Queues,
    emulator: Emulator,
    moto_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The deletes of delivered messages are held by SQS past the grace: they complete, and
    the messages count as delivered, not abandoned (no visibility change follows them)."""
    steps = make_steps(5, seed=182)
    register(emulator.state, steps)
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    async with serve_holding_proxy(moto_url) as proxy:
        proxy.hold_s["DeleteMessageBatch"] = 1.0
        monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
        config = fast_config(queues.url, shutdown_grace_s=0.1, exit_when_empty=False)
        held = proxy.held
        worker = await run_until(config, lambda w: held["DeleteMessageBatch"] >= 1, what="a delete")

    assert dict(worker.counts) == {"delivered": 5}
    assert sorted(delivered_keys(emulator.state.calls)) == sorted(
        (*s.step_key, s.status.value) for s in steps
    )
    assert proxy.seen["ChangeMessageVisibilityBatch"] == 0
    assert await total_depth(sqs, queues.url) == 0


@SENDERS
async def test_a_refusal_after_a_lost_answer_is_dead_lettered_as_outcome_unknown(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """The call times out but the service completes it; on the next receive the service says
    the step was already answered: the message is not deleted as delivered nor dead-lettered
    as a plain malformed request: its copy says the earlier outcome is unknown."""
    step = make_steps(1, seed=183)[0]
    register(emulator.state, [step])
    emulator.state.set_faults(Faults(latency_ms=1500))
    [message_id] = await send_bodies(sqs, queues.url, [step.to_body()])
    config = fast_config(
        queues.url,
        lean_sender=lean,
        call_timeout_s=0.5,
        max_attempts=1,
        release_base_s=4.0,
        release_cap_s=4.0,
    )
    async with open_worker(config) as worker:
        run = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: worker.counts["released"] >= 1, what="the timed-out receive")
        await eventually(
            lambda: not emulator.state.is_waiting(*step.step_key), what="the lost call landing"
        )
        emulator.state.set_faults(Faults())
        await asyncio.wait_for(run, 60)

    assert dict(worker.counts) == {"released": 1, "dead_lettered": 1}
    assert [c.error_code for c in emulator.state.calls] == [None, "InvalidRequestException"]
    [copy] = await drain(sqs, queues.dlq_url)
    assert copy.attributes["relay-source-message-id"] == message_id
    assert copy.attributes["relay-reason"] == "invalid_request"
    assert copy.attributes["relay-error-code"] == "InvalidRequestException"
    assert copy.attributes["relay-error-message"].startswith(OUTCOME_UNKNOWN)
    assert copy.attributes["relay-attempts"] == "2"
    assert await total_depth(sqs, queues.url) == 0


async def test_a_fresh_copy_beside_one_at_max_receives_is_released_to_try_itself(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """A copy on its first receive waits on a copy of the same step at --max-receives, which
    fails and is dead-lettered: the fresh copy does not inherit that failure; it is released,
    comes back, calls for itself and is delivered."""
    step = make_steps(1, seed=184)[0]
    register(emulator.state, [step])
    emulator.state.set_faults(
        Faults(latency_ms=100, error_workflows={step.workflow_id: "InternalServiceError"})
    )
    [worn] = await send_bodies(sqs, queues.url, [step.to_body()])
    # One receive that does not finish it: the next is its second, --max-receives here.
    received = await sqs.receive_message(QueueUrl=queues.url, WaitTimeSeconds=1)
    [raw] = received["Messages"]
    await sqs.change_message_visibility(
        QueueUrl=queues.url, ReceiptHandle=raw["ReceiptHandle"], VisibilityTimeout=0
    )
    [fresh] = await send_bodies(sqs, queues.url, [step.to_body()])
    config = fast_config(
        queues.url, max_receives=2, pollers=1, release_base_s=2.0, release_cap_s=2.0
    )
    async with open_worker(config) as worker:
        run = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: worker.counts["dead_lettered"] >= 1, what="the worn copy's end")
        emulator.state.set_faults(Faults())
        await asyncio.wait_for(run, 60)

    assert dict(worker.counts) == {"dead_lettered": 1, "released": 1, "delivered": 1}
    [dead] = await drain(sqs, queues.dlq_url)
    assert dead.attributes["relay-source-message-id"] == worn
    assert dead.attributes["relay-reason"] == "retries_exhausted"
    # Three here, and one for the receive no relay process saw (counted one per receive).
    assert dead.attributes["relay-attempts"] == "4"
    assert delivered_keys(emulator.state.calls) == [(*step.step_key, "SUCCESS")]
    assert fresh != worn
    assert await total_depth(sqs, queues.url) == 0


async def test_relay_attempts_counts_earlier_receives_on_a_conflict(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """A FAILURE throttled twice is released; meanwhile a SUCCESS for the step is delivered;
    the FAILURE comes back as a conflict, and its copy counts the two attempts it made."""
    success = make_steps(1, seed=185)[0]
    failure = StepResult(success.workflow_id, success.execution_id, success.token, Status.FAILURE)
    register(emulator.state, [success])
    emulator.state.set_faults(Faults(error_workflows={success.workflow_id: "ThrottlingException"}))
    [failure_id] = await send_bodies(sqs, queues.url, [failure.to_body()])
    config = fast_config(
        queues.url, max_attempts=2, retry_budget_s=5.0, release_base_s=6.0, release_cap_s=6.0
    )
    async with open_worker(config) as worker:
        run = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: worker.counts["released"] >= 1, what="the throttled receive")
        emulator.state.set_faults(Faults())
        await send_bodies(sqs, queues.url, [success.to_body()])
        await asyncio.wait_for(run, 60)

    assert dict(worker.counts) == {"released": 1, "delivered": 1, "conflict": 1}
    [copy] = await drain(sqs, queues.dlq_url)
    assert copy.attributes["relay-source-message-id"] == failure_id
    assert copy.attributes["relay-reason"] == "conflict"
    assert copy.attributes["relay-attempts"] == "2"
    assert [c.error_code for c in emulator.state.calls] == [
        "ThrottlingException",
        "ThrottlingException",
        None,
    ]
    assert await total_depth(sqs, queues.url) == 0


async def test_a_grace_shorter_than_the_call_timeout_is_warned_about_at_start(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """--shutdown-grace below --call-timeout: after SIGTERM no attempt could start, and a call
    on the wire may hold the stop for up to the call timeout; relay says so at start-up."""
    config = fast_config(queues.url, shutdown_grace_s=1.0, call_timeout_s=5.0)
    with capture_logs() as logs:
        async with open_worker(config):
            pass
    [warning] = [e for e in logs if "--shutdown-grace is shorter" in e["event"]]
    assert warning["log_level"] == "warning"
    assert (warning["shutdown_grace_s"], warning["call_timeout_s"]) == (1.0, 5.0)
    with capture_logs() as quiet:
        async with open_worker(fast_config(queues.url, shutdown_grace_s=5.0, call_timeout_s=5.0)):
            pass
    assert not [e for e in quiet if "--shutdown-grace is shorter" in e["event"]]
    assert await total_depth(sqs, queues.url) == 0
