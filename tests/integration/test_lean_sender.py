"""The lean sender answers exactly like aiobotocore's client for every emulator answer."""

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from relay.emulator import FailureKind, Faults
from relay.message import StepResult
from relay.transfer import (
    CallbackError,
    RetryPolicy,
    TransferSender,
    open_lean_transfer,
    open_transfer,
)
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import fast_config, outcome_totals, run_to_empty
from tests.support import SQSClient, drain, make_steps, send_bodies, total_depth


@contextlib.asynccontextmanager
async def both_senders() -> AsyncIterator[dict[str, TransferSender]]:
    """A sender on each client, against the same endpoint."""
    policy = RetryPolicy(max_attempts=1, budget_s=5.0, base_s=0.0, cap_s=0.0)
    async with (
        open_transfer(max_pool_connections=4, call_timeout_s=5) as plain,
        open_lean_transfer(max_pool_connections=4, call_timeout_s=5) as lean,
    ):
        yield {"aiobotocore": TransferSender(plain, policy), "lean": TransferSender(lean, policy)}


async def outcome(sender: TransferSender, step: StepResult) -> tuple[Any, ...]:
    """What one call ended in: success, or the classified error's facts."""
    try:
        await sender.call(step)
    except CallbackError as error:
        return (error.code, error.http_status, error.retry_after_s, error.rule, error.message)
    return ("ok",)


SCENARIOS: dict[str, Faults] = {
    "throttled": Faults(throttle_rps=0.5, throttle_burst=1, retry_after_s=3.0),
    "service_unavailable": Faults(error_rate=1.0, error_kinds=(FailureKind.SERVICE_UNAVAILABLE,)),
    "internal_error": Faults(error_rate=1.0, error_kinds=(FailureKind.INTERNAL_SERVICE_ERROR,)),
    "bad_gateway": Faults(error_rate=1.0, error_kinds=(FailureKind.BAD_GATEWAY,)),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_faults_look_the_same_through_both_clients(emulator: Emulator, scenario: str) -> None:
    """Throttling (with RetryAfterSeconds) and each 5xx classify identically on both clients."""
    steps = make_steps(4, seed=71)
    emulator.state.register_many(s.step_key for s in steps)
    emulator.state.set_faults(SCENARIOS[scenario])
    async with both_senders() as senders:
        if scenario == "throttled":  # spend the one token so both calls are throttled
            await senders["lean"].call(steps[3])
        plain = await outcome(senders["aiobotocore"], steps[0])
        lean = await outcome(senders["lean"], steps[1])
    assert plain[0] != "ok"
    assert lean == plain


async def test_state_answers_look_the_same_through_both_clients(emulator: Emulator) -> None:
    """Success, unknown execution, already answered and access denied classify identically."""
    known, unknown, denied = make_steps(3, seed=72)
    other = make_steps(1, seed=73)[0]
    emulator.state.register_many([known.step_key, other.step_key, denied.step_key])
    async with both_senders() as senders:
        results = {}
        for name, sender in senders.items():
            first = known if name == "aiobotocore" else other
            results[name] = [
                await outcome(sender, first),
                await outcome(sender, first),  # already answered
                await outcome(sender, unknown),
            ]
        emulator.state.set_faults(Faults(deny_workflows=frozenset({denied.workflow_id})))
        for name, sender in senders.items():
            results[name].append(await outcome(sender, denied))
    assert results["lean"] == results["aiobotocore"]
    codes = [r[0] for r in results["lean"]]
    assert codes == [
        "ok",
        "InvalidRequestException",
        "ResourceNotFoundException",
        "AccessDeniedException",
    ]


async def test_an_unreachable_endpoint_is_a_connection_error_on_both(
    monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    """Nothing listening: both clients report a retryable connection error."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", f"http://127.0.0.1:{closed_port}")
    step = make_steps(1, seed=74)[0]
    async with both_senders() as senders:
        plain = await outcome(senders["aiobotocore"], step)
        lean = await outcome(senders["lean"], step)
    assert plain[0] == lean[0] == "ConnectionError"
    assert plain[3] == lean[3]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])
async def test_the_worker_delivers_through_either_client(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """With either client the whole pipeline works: deliveries, dead letters, every message
    accounted for."""
    steps = make_steps(20, seed=75)
    emulator.state.register_many(s.step_key for s in steps[:15])
    emulator.state.set_faults(Faults(error_rate=0.2, error_kinds=(FailureKind.BAD_GATEWAY,)))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps] + ["not json"])

    worker = await run_to_empty(fast_config(queues.url, lean_sender=lean, max_receives=100))

    dead = await drain(sqs, queues.dlq_url)
    assert sorted(m.attributes["relay-reason"] for m in dead) == ["not_found"] * 5 + ["validation"]
    assert outcome_totals(worker) == {"delivered": 15, "dead_lettered": 6}
    assert await total_depth(sqs, queues.url) == 0
