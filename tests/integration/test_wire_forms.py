"""Every JSON 1.1 error form by every error Transfer Family can answer, through both senders.

The emulator writes each error in each form JSON 1.1 allows (relay.emulator.protocol.ErrorForm);
both senders must read the same code, message and RetryAfterSeconds out of it, and those must be
the values the service meant. This is the table that keeps the lean sender the default
(issue 12 item 6): it answers every case as the aiobotocore path does.
"""

import contextlib
import importlib.metadata
from collections.abc import AsyncIterator
from typing import NamedTuple

import pytest
from aiobotocore.session import get_session
from botocore.config import Config

import relay
from relay.emulator import FailureKind, Faults
from relay.emulator.protocol import ErrorForm, GatewayBody
from relay.message import StepResult
from relay.transfer import (
    AioTransferClient,
    CallbackError,
    RetryPolicy,
    TransferSender,
    open_lean_transfer,
    open_transfer,
    relay_user_agent,
)
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import fast_config, outcome_totals, run_to_empty
from tests.support import SQSClient, drain, make_steps, send_bodies, total_depth

SENDERS = ("lean", "aiobotocore")
ONE_ATTEMPT = Config(retries={"total_max_attempts": 1})


class Seen(NamedTuple):
    """What a sender made of one failed call."""

    code: str
    message: str
    retry_after_s: float | None
    http_status: int | None


@contextlib.asynccontextmanager
async def both_senders() -> AsyncIterator[dict[str, TransferSender]]:
    """A one-attempt sender on each client, against the emulator the environment names."""
    policy = RetryPolicy(max_attempts=1, budget_s=5.0, base_s=0.0, cap_s=0.0)
    async with (
        open_lean_transfer(max_pool_connections=4, call_timeout_s=5) as lean,
        open_transfer(max_pool_connections=4, call_timeout_s=5) as plain,
    ):
        yield {"lean": TransferSender(lean, policy), "aiobotocore": TransferSender(plain, policy)}


async def seen(sender: TransferSender, step: StepResult) -> Seen:
    """The classified error one call ends in (the test fails if the call succeeds)."""
    with pytest.raises(CallbackError) as caught:
        await sender.call(step)
    error = caught.value
    return Seen(error.code, error.message, error.retry_after_s, error.http_status)


def expected_error(code: str, step: StepResult) -> Seen:
    """What the emulator means when it answers `code` for this step (its words, its status)."""
    messages = {
        "ThrottlingException": "Rate exceeded",
        "ResourceNotFoundException": (
            f"Unknown execution {step.execution_id} of workflow {step.workflow_id}"
        ),
        "InvalidRequestException": (
            "Invalid request: the token does not belong to a step waiting in this execution"
        ),
        "AccessDeniedException": (
            "User is not authorized to perform: transfer:SendWorkflowStepState "
            f"on resource: workflow/{step.workflow_id}"
        ),
        "ServiceUnavailableException": "The service is temporarily unavailable. Please retry.",
        "InternalServiceError": "An internal error occurred. Please retry.",
        "ExpiredTokenException": "The security token included in the request is expired",
        "UnrecognizedClientException": "The security token included in the request is invalid.",
        "InvalidSignatureException": (
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details."
        ),
        "SomeNewException": "Injected SomeNewException",
    }
    status = 500 if code in ("ServiceUnavailableException", "InternalServiceError") else 400
    retry_after_s = 2.0 if code == "ThrottlingException" else None
    return Seen(code, messages[code], retry_after_s, status)


ERROR_NAMES = (
    "ThrottlingException",
    "ResourceNotFoundException",
    "InvalidRequestException",
    "AccessDeniedException",
    "ServiceUnavailableException",
    "InternalServiceError",
    "ExpiredTokenException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "SomeNewException",
)


@pytest.mark.parametrize("form", list(ErrorForm), ids=lambda form: form.value)
async def test_both_senders_read_every_error_in_every_form_alike(
    emulator: Emulator, form: ErrorForm
) -> None:
    """Each error, written in this form, gives both senders the code, message and
    RetryAfterSeconds the service meant."""
    # One workflow per error name, so one fault setting answers the whole row.
    rows = {
        name: StepResult(f"w-{index:017d}", step.execution_id, step.token, step.status)
        for index, (name, step) in enumerate(
            zip(ERROR_NAMES, make_steps(len(ERROR_NAMES), seed=120), strict=True)
        )
    }
    emulator.state.set_faults(
        Faults(
            error_form=form,
            error_workflows={step.workflow_id: name for name, step in rows.items()},
            retry_after_s=2,
        )
    )
    expected = {name: expected_error(name, step) for name, step in rows.items()}

    table: dict[str, dict[str, Seen]] = {}
    async with both_senders() as senders:
        for sender_name, sender in senders.items():
            table[sender_name] = {name: await seen(sender, step) for name, step in rows.items()}

    assert table["lean"] == expected
    assert table["aiobotocore"] == expected
    assert emulator.state.call_count == len(ERROR_NAMES) * len(SENDERS)


@pytest.mark.parametrize(
    ("kind", "status", "reason"),
    [
        (FailureKind.BAD_GATEWAY, 502, "Bad Gateway"),
        (FailureKind.GATEWAY_UNAVAILABLE, 503, "Service Unavailable"),
        (FailureKind.GATEWAY_TIMEOUT, 504, "Gateway Timeout"),
    ],
)
@pytest.mark.parametrize("body", list(GatewayBody), ids=lambda body: body.value)
async def test_both_senders_read_a_gateway_answer_as_its_bare_status(
    emulator: Emulator, kind: FailureKind, status: int, reason: str, body: GatewayBody
) -> None:
    """A gateway's 502/503/504, an HTML page or empty, is the status and its reason on both."""
    step = make_steps(1, seed=121)[0]
    emulator.state.register_many([step.step_key])
    emulator.state.set_faults(Faults(error_rate=1.0, error_kinds=(kind,), gateway_body=body))

    async with both_senders() as senders:
        table = {name: await seen(sender, step) for name, sender in senders.items()}

    assert table == {name: Seen(str(status), reason, None, status) for name in SENDERS}
    assert emulator.state.is_waiting(*step.step_key)


async def test_a_client_not_opened_by_relay_still_reads_the_header_form(
    emulator: Emulator,
) -> None:
    """On a plain aiobotocore client (without the error hook `open_transfer` registers), the
    X-Amzn-Errortype header still names the error."""
    base = make_steps(1, seed=122)[0]
    step = StepResult("w-" + "h" * 17, base.execution_id, base.token, base.status)
    policy = RetryPolicy(max_attempts=1, budget_s=5.0, base_s=0.0, cap_s=0.0)
    for form in (ErrorForm.HEADER, ErrorForm.HEADER_URI):
        emulator.state.set_faults(
            Faults(error_form=form, error_workflows={step.workflow_id: "ExpiredTokenException"})
        )
        async with get_session().create_client("transfer", config=ONE_ATTEMPT) as client:
            result = await seen(TransferSender(AioTransferClient(client), policy), step)

        assert (result.code, result.http_status) == ("ExpiredTokenException", 400)
        assert result.message == "The security token included in the request is expired"


async def test_both_senders_say_who_is_calling(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both send botocore's User-Agent with the app id, the caller's extra and relay/<version>."""
    monkeypatch.setenv("AWS_SDK_UA_APP_ID", "step-callbacks")
    steps = make_steps(2, seed=126)
    emulator.state.accept_any = True
    policy = RetryPolicy(max_attempts=1, budget_s=5.0, base_s=0.0, cap_s=0.0)
    async with (
        open_lean_transfer(user_agent_extra="team/files") as lean,
        open_transfer(user_agent_extra="team/files") as plain,
    ):
        await TransferSender(lean, policy).call(steps[0])
        await TransferSender(plain, policy).call(steps[1])

    lean_agent, plain_agent = (call.user_agent or "" for call in emulator.state.calls)
    assert relay_user_agent() == "relay/" + importlib.metadata.version(relay.DISTRIBUTION)
    assert lean_agent.endswith(" team/files " + relay_user_agent())
    assert " app/step-callbacks " in lean_agent
    assert lean_agent.startswith("aiobotocore/")
    assert lean_agent == plain_agent


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])
@pytest.mark.parametrize("form", list(ErrorForm), ids=lambda form: form.value)
async def test_the_worker_decides_alike_on_every_form(
    sqs: SQSClient, queues: Queues, emulator: Emulator, form: ErrorForm, lean: bool
) -> None:
    """End to end, in every form: throttles are retried to delivery, unknown executions and
    invalid requests are dead-lettered with their reasons, every message accounted for."""
    delivered = make_steps(4, seed=123)
    unknown = make_steps(2, seed=124)
    invalid = make_steps(1, seed=125)
    emulator.state.register_many(step.step_key for step in delivered)
    emulator.state.set_faults(
        Faults(
            error_form=form,
            error_workflows={invalid[0].workflow_id: "InvalidRequestException"},
            # One call, then one each 100 ms: calls made together meet a throttle however
            # slowly a busy machine makes them (at 50 a second after 3, they might not).
            throttle_rps=10,
            throttle_burst=1,
            retry_after_s=0.01,
        )
    )
    steps = delivered + unknown + invalid
    await send_bodies(sqs, queues.url, [step.to_body() for step in steps])

    # A throttled call is retried until its token comes, within the retry budget, rather than
    # released and received a poll later; and the worker's own rate, not at issue here, does
    # not fall to a call a second after the first throttle.
    config = fast_config(
        queues.url, lean_sender=lean, max_receives=100, max_attempts=20, adaptive_rate=False
    )
    worker = await run_to_empty(config)

    dead = await drain(sqs, queues.dlq_url)
    assert sorted(m.attributes["relay-reason"] for m in dead) == [
        "invalid_request",
        "not_found",
        "not_found",
    ]
    assert sorted(m.attributes["relay-error-code"] for m in dead) == [
        "InvalidRequestException",
        "ResourceNotFoundException",
        "ResourceNotFoundException",
    ]
    totals = outcome_totals(worker)  # throttled ones may also have been released and received again
    assert (totals["delivered"], totals["dead_lettered"]) == (4, 3)
    assert set(totals) <= {"delivered", "dead_lettered", "released"}
    assert await total_depth(sqs, queues.url) == 0
    assert emulator.state.counts.get("ThrottlingException", 0) > 0
