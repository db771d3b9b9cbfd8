"""Errors about relay's own request, unknown errors and a skewed clock, through the worker.

DESIGN §1: an expired session, a bad key or a clock outside the signing window is never the
message's fault, and neither is an error relay does not know; such messages are retried and
released, and dead-lettered only when their receive count reaches --max-receives.
"""

import pytest
from structlog.testing import capture_logs

from relay.emulator import Faults
from relay.message import Status
from relay.worker import open_worker
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import fast_config, outcome_totals, register, sample
from tests.support import SQSClient, drain, make_steps, send_bodies, total_depth

SENDERS = [pytest.param(True, id="lean"), pytest.param(False, id="aiobotocore")]


@pytest.mark.parametrize("lean", SENDERS)
@pytest.mark.parametrize(
    "code", ["ExpiredTokenException", "UnrecognizedClientException", "InvalidSignatureException"]
)
async def test_an_identity_error_releases_until_max_receives_then_retries_exhausted(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool, code: str
) -> None:
    """Every call refused for relay's own credentials: each message is released on every
    receive (none dead-lettered early), counted, logged at ERROR once, and dead-lettered as
    retries_exhausted with the code only on --max-receives."""
    steps = make_steps(4, seed=140)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(error_workflows={steps[0].workflow_id: code}))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    config = fast_config(queues.url, lean_sender=lean, max_receives=3, max_attempts=2)

    with capture_logs() as logs:
        async with open_worker(config) as worker:
            await worker.run(handle_signals=False)

    totals = outcome_totals(worker)
    assert totals["dead_lettered"] == 4
    assert totals["released"] == 4 * 2  # receives 1 and 2 of each message
    copies = await drain(sqs, queues.dlq_url)
    assert {c.attributes["relay-reason"] for c in copies} == {"retries_exhausted"}
    assert {c.attributes["relay-error-code"] for c in copies} == {code}
    assert {int(c.attributes["relay-attempts"]) for c in copies} == {3 * 2}
    assert sample(worker, "relay_identity_errors_total", code=code) == 4 * 3 * 2
    identity_lines = [
        line for line in logs if line["event"].startswith("AWS refused relay's own request")
    ]
    assert len(identity_lines) == 1
    assert identity_lines[0]["log_level"] == "error"
    assert await total_depth(sqs, queues.url) == 0
    assert len(copies) == len(steps)


@pytest.mark.parametrize("lean", SENDERS)
async def test_an_unknown_error_is_released_then_dead_lettered_as_unexpected_at_the_limit(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """A code relay does not know: released on each receive, unexpected_error only on
    --max-receives; the other workflow's messages are delivered meanwhile."""
    denied = make_steps(2, seed=141)
    fine = make_steps(3, seed=142)
    register(emulator.state, denied + fine)
    unknown = {denied[0].workflow_id: "BrandNewException"}
    emulator.state.set_faults(Faults(error_workflows=unknown))
    await send_bodies(sqs, queues.url, [s.to_body() for s in denied + fine])
    config = fast_config(queues.url, lean_sender=lean, max_receives=2, max_attempts=1)

    async with open_worker(config) as worker:
        await worker.run(handle_signals=False)

    totals = outcome_totals(worker)
    assert (totals["delivered"], totals["released"], totals["dead_lettered"]) == (3, 2, 2)
    copies = await drain(sqs, queues.dlq_url)
    assert [c.attributes["relay-reason"] for c in copies] == ["unexpected_error"] * 2
    assert {c.attributes["relay-error-code"] for c in copies} == {"BrandNewException"}
    assert await total_depth(sqs, queues.url) == 0


@pytest.mark.parametrize("lean", SENDERS)
async def test_a_skewed_clock_costs_one_call_and_the_gauge_shows_the_offset(
    sqs: SQSClient, queues: Queues, emulator: Emulator, lean: bool
) -> None:
    """The service 15 minutes ahead: the first call is refused, relay learns the offset, and
    every message is delivered on its first receive; relay_clock_offset_seconds shows it."""
    steps = make_steps(6, seed=143, status=Status.FAILURE)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(clock_skew_s=900))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    config = fast_config(queues.url, lean_sender=lean, max_in_flight=1, pollers=1)

    async with open_worker(config) as worker:
        await worker.run(handle_signals=False)
        offset = sample(worker, "relay_clock_offset_seconds")

    assert outcome_totals(worker) == {"delivered": 6}
    assert abs(offset - 900) < 3
    refused = [c for c in emulator.state.calls if c.error_code == "InvalidSignatureException"]
    assert len(refused) == 1
    assert await total_depth(sqs, queues.url) == 0
