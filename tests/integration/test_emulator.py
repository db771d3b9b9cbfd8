"""The Transfer Family emulator over real HTTP, through unmodified aiobotocore and boto3 clients."""

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import boto3
import pytest
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError

from relay.emulator import (
    EmulatorAdmin,
    EmulatorAdminError,
    FailureKind,
    Faults,
    RunningEmulator,
    run_emulator,
)

if TYPE_CHECKING:
    from aiobotocore.session import ClientCreatorContext
    from types_aiobotocore_transfer import TransferClient

# One attempt per call: the emulator's log then counts exactly what the caller sent.
NO_RETRIES = Config(retries={"total_max_attempts": 1})


def signed_headers() -> dict[str, str]:
    """A well-formed SigV4 header set for a raw request, dated now.

    The emulator checks the header's presence, its scope and its time (5 minutes either way),
    not the signature itself.
    """
    now = datetime.now(UTC)
    return {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": "TransferService.SendWorkflowStepState",
        "X-Amz-Date": now.strftime("%Y%m%dT%H%M%SZ"),
        "Authorization": "AWS4-HMAC-SHA256 "
        f"Credential=testing/{now:%Y%m%d}/us-east-1/transfer/aws4_request, "
        "SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=00",
    }


class Step(NamedTuple):
    """A custom step waiting for its callback."""

    workflow_id: str
    execution_id: str
    token: str


def new_step(token: str = "token_1") -> Step:
    """A fresh, well-formed step (not registered anywhere)."""
    return Step(
        workflow_id="w-" + uuid.uuid4().hex[:17],
        execution_id=str(uuid.uuid4()),
        token=token,
    )


def arguments(step: Step, status: str = "SUCCESS", **overrides: str) -> dict[str, Any]:
    """The keyword arguments of `send_workflow_step_state` for a step."""
    values: dict[str, Any] = {
        "WorkflowId": step.workflow_id,
        "ExecutionId": step.execution_id,
        "Token": step.token,
        "Status": status,
    }
    values.update(overrides)
    return values


async def send_failing(client: "TransferClient", **kwargs: Any) -> dict[str, Any]:
    """Send a callback that must fail; return botocore's parsed error response."""
    with pytest.raises(ClientError) as caught:
        await client.send_workflow_step_state(**kwargs)
    return dict(caught.value.response)


def transfer_client(
    url: str, config: Config = NO_RETRIES
) -> "ClientCreatorContext[TransferClient]":
    """An unmodified aiobotocore `transfer` client for an emulator URL, with test credentials."""
    # The stubs ask for AioConfig; a plain botocore Config is what relay passes, and it works.
    return get_session().create_client(  # type: ignore[call-overload,no-any-return]
        "transfer",
        region_name="us-east-1",
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=config,
    )


@pytest.fixture
async def emulator() -> AsyncIterator[RunningEmulator]:
    """An emulator on a free loopback port, seeded for repeatable faults."""
    async with run_emulator(seed=7) as running:
        yield running


@pytest.fixture
async def transfer(emulator: RunningEmulator) -> AsyncIterator["TransferClient"]:
    """An unmodified aiobotocore `transfer` client pointed at the emulator, retries off."""
    async with transfer_client(emulator.url) as client:
        yield client


@pytest.fixture
def step(emulator: RunningEmulator) -> Step:
    """A step registered as waiting in the emulator."""
    waiting = new_step()
    emulator.state.register(*waiting)
    return waiting


async def test_waiting_step_is_answered_200_with_an_empty_result(
    emulator: RunningEmulator, transfer: "TransferClient", step: Step
) -> None:
    """A callback for a waiting step gets 200, a `{}` that parses to nothing, and a request id."""
    response = await transfer.send_workflow_step_state(**arguments(step))

    metadata = response["ResponseMetadata"]
    assert set(response) == {"ResponseMetadata"}
    assert metadata["HTTPStatusCode"] == 200
    assert metadata["RetryAttempts"] == 0
    assert metadata["HTTPHeaders"]["content-type"] == "application/x-amz-json-1.1"
    assert metadata["RequestId"] == metadata["HTTPHeaders"]["x-amzn-requestid"]
    assert not emulator.state.is_waiting(*step)
    [call] = emulator.state.calls
    assert (call.workflow_id, call.execution_id, call.token, call.status) == (*step, "SUCCESS")
    assert (call.http_status, call.error_code, call.request_id) == (
        200,
        None,
        metadata["RequestId"],
    )
    assert call.received_at <= call.answered_at


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("WorkflowId", "w-ABCDEFGHIJKLMNOPQ"),
        ("WorkflowId", "x-0123456789abcdefg"),
        ("ExecutionId", "zzzzzzzz-1234-1234-1234-123456789abc"),
        ("ExecutionId", "12345678123412341234123456789abcdefg"),
        ("Token", "a" * 65),
        ("Token", "has-dash"),
        ("Token", "tökén"),
        ("Status", "DONE"),
        ("Status", "success"),
    ],
)
async def test_field_breaking_its_rule_is_invalid_request_naming_the_field(
    emulator: RunningEmulator, transfer: "TransferClient", step: Step, field: str, value: str
) -> None:
    """A field breaking its rule is InvalidRequestException naming it, and consumes nothing."""
    response = await send_failing(transfer, **arguments(step, **{field: value}))

    assert response["Error"]["Code"] == "InvalidRequestException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert f"'{field}'" in response["Error"]["Message"]
    assert response["Message"] == response["Error"]["Message"]
    assert emulator.state.is_waiting(*step)
    assert emulator.state.counts == {"InvalidRequestException": 1}


async def test_unknown_execution_is_resource_not_found_with_resource_and_type(
    transfer: "TransferClient",
) -> None:
    """An unregistered execution is ResourceNotFoundException with Resource and ResourceType."""
    unknown = new_step()

    response = await send_failing(transfer, **arguments(unknown))

    assert response["Error"]["Code"] == "ResourceNotFoundException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["Resource"] == unknown.execution_id
    assert response["ResourceType"] == "Execution"


async def test_wrong_token_of_a_known_execution_is_invalid_request(
    emulator: RunningEmulator, transfer: "TransferClient", step: Step
) -> None:
    """A token not waiting in a known execution is InvalidRequestException; the real one waits."""
    response = await send_failing(transfer, **arguments(step, Token="someone_else"))

    assert response["Error"]["Code"] == "InvalidRequestException"
    assert "step already completed" not in response["Error"]["Message"]
    assert emulator.state.is_waiting(*step)


@pytest.mark.parametrize("second_status", ["SUCCESS", "FAILURE"])
async def test_answered_token_is_invalid_request_step_already_completed(
    transfer: "TransferClient", step: Step, second_status: str
) -> None:
    """A repeat callback, either status, is InvalidRequestException "step already completed"."""
    await transfer.send_workflow_step_state(**arguments(step))

    response = await send_failing(transfer, **arguments(step, status=second_status))

    assert response["Error"]["Code"] == "InvalidRequestException"
    assert "step already completed" in response["Error"]["Message"]


async def test_accept_any_accepts_each_well_formed_step_once(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """With accept_any a well-formed step succeeds once; its repeat is "step already completed"."""
    emulator.state.accept_any = True
    first, other_token = new_step("a"), new_step("b")

    await transfer.send_workflow_step_state(**arguments(first))
    await transfer.send_workflow_step_state(**arguments(first, Token=other_token.token))
    response = await send_failing(transfer, **arguments(first, status="FAILURE"))

    assert "step already completed" in response["Error"]["Message"]
    assert emulator.state.counts == {"success": 2, "InvalidRequestException": 1}


async def test_fixed_latency_delays_each_answer_by_at_least_that_long(
    emulator: RunningEmulator, transfer: "TransferClient", step: Step
) -> None:
    """With latency_ms set, the emulator's log shows the answer at least that long after receipt."""
    emulator.state.set_faults(Faults(latency_ms=150))

    await transfer.send_workflow_step_state(**arguments(step))

    [call] = emulator.state.calls
    assert call.delay_ms == 150
    # asyncio may wake a timer up to its clock resolution early; 1 ms covers that and rounding.
    assert call.answered_at - call.received_at >= 0.150 - 0.001


async def test_jitter_draws_each_delay_between_latency_and_latency_plus_jitter(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """With jitter, each injected delay lies in [latency, latency + jitter] and delays differ."""
    emulator.state.accept_any = True
    emulator.state.set_faults(Faults(latency_ms=5, jitter_ms=20))

    for index in range(5):
        await transfer.send_workflow_step_state(**arguments(new_step(f"t{index}")))

    delays = [call.delay_ms for call in emulator.state.calls]
    assert all(5 <= delay <= 25 for delay in delays)
    assert len(set(delays)) == len(delays)
    assert all(
        c.answered_at - c.received_at >= c.delay_ms / 1000 - 0.001 for c in emulator.state.calls
    )


async def test_same_seed_draws_the_same_faults() -> None:
    """Two emulators with the same seed inject the same delays and 5xx kinds in the same order."""
    faults = Faults(jitter_ms=1, error_rate=0.5)
    outcomes: list[list[tuple[float, str | None]]] = []
    for _ in range(2):
        async with (
            run_emulator(accept_any=True, faults=faults, seed=42) as running,
            transfer_client(running.url) as client,
        ):
            for index in range(12):
                with contextlib.suppress(ClientError):
                    await client.send_workflow_step_state(**arguments(new_step(f"t{index}")))
            outcomes.append([(c.delay_ms, c.error_code) for c in running.state.calls])

    assert outcomes[0] == outcomes[1]
    assert {code for _, code in outcomes[0]} > {None}


async def test_throttling_lets_exactly_the_burst_through_and_tells_when_to_retry(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """Of a burst beyond the bucket, `burst` succeed; the rest get ThrottlingException and wait."""
    steps = [new_step(f"t{index}") for index in range(7)]
    emulator.state.register_many(steps)
    # A refill of one token per 100 s cannot add a token within the test.
    emulator.state.set_faults(Faults(throttle_rps=0.01, throttle_burst=3))

    results = await asyncio.gather(
        *(transfer.send_workflow_step_state(**arguments(s)) for s in steps),
        return_exceptions=True,
    )

    throttled = [r for r in results if isinstance(r, ClientError)]
    assert len(results) - len(throttled) == 3
    assert len(throttled) == 4
    for error in throttled:
        assert error.response["Error"]["Code"] == "ThrottlingException"
        assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
        retry_after = error.response["RetryAfterSeconds"]  # type: ignore[typeddict-item]
        assert isinstance(retry_after, str)
        assert float(retry_after) > 0
    assert emulator.state.call_count == 7
    assert emulator.state.waiting_tokens == 4


async def test_retry_after_override_is_sent_as_given(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """A fixed retry_after_s replaces the bucket's estimate in RetryAfterSeconds."""
    emulator.state.accept_any = True
    emulator.state.set_faults(Faults(throttle_rps=0.01, throttle_burst=1, retry_after_s=7))
    await transfer.send_workflow_step_state(**arguments(new_step("first")))

    response = await send_failing(transfer, **arguments(new_step("second")))

    assert response["Error"]["Code"] == "ThrottlingException"
    assert response["RetryAfterSeconds"] == "7"


@pytest.mark.parametrize(
    ("kind", "code", "http_status"),
    [
        (FailureKind.SERVICE_UNAVAILABLE, "ServiceUnavailableException", 500),
        (FailureKind.INTERNAL_SERVICE_ERROR, "InternalServiceError", 500),
        (FailureKind.BAD_GATEWAY, "502", 502),
    ],
)
async def test_injected_5xx_reaches_the_caller_after_exactly_one_call(
    emulator: RunningEmulator,
    transfer: "TransferClient",
    step: Step,
    kind: FailureKind,
    code: str,
    http_status: int,
) -> None:
    """Each 5xx kind parses to its code and status and, with one attempt, is sent exactly once."""
    emulator.state.set_faults(Faults(error_rate=1.0, error_kinds=(kind,)))

    response = await send_failing(transfer, **arguments(step))

    assert response["Error"]["Code"] == code
    assert response["ResponseMetadata"]["HTTPStatusCode"] == http_status
    assert response["ResponseMetadata"]["RetryAttempts"] == 0
    assert response["ResponseMetadata"]["MaxAttemptsReached"] is True
    assert emulator.state.call_count == 1
    assert emulator.state.is_waiting(*step)


async def test_botocore_retries_5xx_unless_told_not_to(emulator: RunningEmulator) -> None:
    """Allowed two attempts, botocore resends a 5xx, and the emulator's log shows both."""
    emulator.state.accept_any = True
    emulator.state.set_faults(
        Faults(error_rate=1.0, error_kinds=(FailureKind.SERVICE_UNAVAILABLE,))
    )
    two_attempts = Config(retries={"mode": "standard", "total_max_attempts": 2})
    async with transfer_client(emulator.url, two_attempts) as retrying:
        response = await send_failing(retrying, **arguments(new_step()))

    assert response["ResponseMetadata"]["RetryAttempts"] == 1
    assert emulator.state.call_count == 2


async def test_error_rate_splits_failures_across_the_chosen_kinds(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """A partial error_rate fails some calls, passes the others, and draws only the chosen kinds."""
    emulator.state.accept_any = True
    emulator.state.set_faults(
        Faults(
            error_rate=0.5,
            error_kinds=(FailureKind.SERVICE_UNAVAILABLE, FailureKind.BAD_GATEWAY),
        )
    )

    for index in range(30):
        with contextlib.suppress(ClientError):
            await transfer.send_workflow_step_state(**arguments(new_step(f"t{index}")))

    assert set(emulator.state.counts) == {"success", "ServiceUnavailableException", "502"}


async def test_denied_workflow_is_access_denied_and_consumes_nothing(
    emulator: RunningEmulator, transfer: "TransferClient", step: Step
) -> None:
    """A denied workflow is AccessDeniedException before any throttle, and its step still waits."""
    emulator.state.set_faults(
        Faults(
            deny_workflows=frozenset({step.workflow_id}),
            throttle_rps=0.01,
            throttle_burst=1,
        )
    )

    response = await send_failing(transfer, **arguments(step))
    emulator.state.set_faults(Faults(throttle_rps=0.01, throttle_burst=1))
    await transfer.send_workflow_step_state(**arguments(step))

    assert response["Error"]["Code"] == "AccessDeniedException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert emulator.state.counts == {"AccessDeniedException": 1, "success": 1}


async def test_invalid_field_is_answered_before_any_injected_latency(
    emulator: RunningEmulator, transfer: "TransferClient", step: Step
) -> None:
    """Field validation comes before latency: a malformed call gets no injected delay."""
    emulator.state.set_faults(Faults(latency_ms=60_000))

    await send_failing(transfer, **arguments(step, Status="DONE"))

    [call] = emulator.state.calls
    assert call.delay_ms == 0


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"X-Amz-Target": None}, "UnknownOperationException"),
        ({"X-Amz-Target": "TransferService.DescribeServer"}, "UnknownOperationException"),
        ({"Content-Type": "application/json"}, "UnknownOperationException"),
        ({"Authorization": None}, "MissingAuthenticationTokenException"),
        ({"Authorization": "Bearer abc"}, "IncompleteSignatureException"),
        ({"X-Amz-Date": None}, "IncompleteSignatureException"),
        (
            {
                "Authorization": "AWS4-HMAC-SHA256 "
                "Credential=testing/20240101/us-east-1/s3/aws4_request, "
                "SignedHeaders=host;x-amz-date, Signature=00"
            },
            "InvalidSignatureException",
        ),
    ],
)
async def test_request_the_service_would_not_route_is_rejected_in_json(
    emulator: RunningEmulator, step: Step, change: dict[str, str | None], code: str
) -> None:
    """A wrong target, content type or SigV4 header is a 400 JSON 1.1 error with the AWS code."""
    headers = {k: v for k, v in {**signed_headers(), **change}.items() if v is not None}
    body = json.dumps(arguments(step)).encode()

    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.url + "/", data=body, headers=headers) as answer,
    ):
        document = json.loads(await answer.read())
        assert answer.status == 400
        assert answer.headers["Content-Type"] == "application/x-amz-json-1.1"
        assert answer.headers["x-amzn-RequestId"]

    assert document["__type"].rsplit("#", 1)[-1] == code
    assert document["Message"]
    assert emulator.state.is_waiting(*step)
    assert emulator.state.counts == {code: 1}


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'{"Token": 5}'])
async def test_body_that_is_not_an_object_of_strings_is_a_serialization_error(
    emulator: RunningEmulator, body: bytes
) -> None:
    """A body that is not a JSON object of string members is SerializationException (400)."""
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.url + "/", data=body, headers=signed_headers()) as answer,
    ):
        document = json.loads(await answer.read())
        assert answer.status == 400

    assert document["__type"] == "SerializationException"


async def test_admin_api_registers_sets_faults_lists_calls_and_resets(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """The admin API registers steps, patches faults, lists calls since an index, counts, resets."""
    first, second = new_step("one"), new_step("two")
    async with EmulatorAdmin(emulator.url) as admin:
        assert await admin.register([first, second]) == 2
        await transfer.send_workflow_step_state(**arguments(first))

        faults = await admin.set_faults(deny_workflows=[second.workflow_id], latency_ms=1)
        assert faults["deny_workflows"] == [second.workflow_id]
        assert (await admin.set_faults(jitter_ms=2))["latency_ms"] == 1
        assert (await admin.faults())["jitter_ms"] == 2
        await send_failing(transfer, **arguments(second))

        calls, next_index = await admin.calls()
        assert [c["error_code"] for c in calls] == [None, "AccessDeniedException"]
        assert (calls[0]["token"], calls[0]["http_status"]) == (first.token, 200)
        assert calls[0]["user_agent"].startswith("aiobotocore/")
        assert next_index == 2
        later, _ = await admin.calls(since=1)
        assert [c["index"] for c in later] == [1]

        stats = await admin.stats()
        assert stats["by_result"] == {"success": 1, "AccessDeniedException": 1}
        assert (stats["waiting_tokens"], stats["answered_tokens"]) == (1, 1)

        await admin.reset()
        assert await admin.stats() == {
            "calls": 0,
            "by_result": {},
            "by_operation": {},
            "executions": 0,
            "in_progress": 0,
            "waiting_tokens": 0,
            "answered_tokens": 0,
            "accept_any": False,
            "step_timeout_s": 1800.0,
            "step_timeouts": {},
        }
        assert (await admin.faults())["deny_workflows"] == []


async def test_admin_api_picks_the_wire_form_and_the_error_a_workflow_gets(
    emulator: RunningEmulator, step: Step
) -> None:
    """Through the admin API a workflow can get ExpiredTokenException named only in the header."""
    body = json.dumps(arguments(step)).encode()
    async with EmulatorAdmin(emulator.url) as admin:
        faults = await admin.set_faults(
            error_form="header_uri", error_workflows={step.workflow_id: "ExpiredTokenException"}
        )
        assert (faults["error_form"], faults["error_workflows"]) == (
            "header_uri",
            {step.workflow_id: "ExpiredTokenException"},
        )
        async with (
            aiohttp.ClientSession() as session,
            session.post(emulator.url + "/", data=body, headers=signed_headers()) as answer,
        ):
            document = json.loads(await answer.read())
            error_type = answer.headers["X-Amzn-Errortype"]
            assert answer.status == 400

    assert error_type == (
        "com.amazon.coral.service#ExpiredTokenException"
        ":http://internal.amazon.com/coral/com.amazon.coral.validate/"
    )
    assert set(document) == {"Message"}
    assert emulator.state.counts == {"ExpiredTokenException": 1}
    assert emulator.state.is_waiting(*step)


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (FailureKind.BAD_GATEWAY, 502),
        (FailureKind.GATEWAY_UNAVAILABLE, 503),
        (FailureKind.GATEWAY_TIMEOUT, 504),
    ],
)
@pytest.mark.parametrize("page", ["html", "empty"])
async def test_gateway_faults_reach_botocore_as_a_bare_status(
    emulator: RunningEmulator,
    transfer: "TransferClient",
    step: Step,
    kind: FailureKind,
    status: int,
    page: str,
) -> None:
    """A gateway's 502/503/504, as a page or empty, reaches an unmodified client as the status."""
    async with EmulatorAdmin(emulator.url) as admin:
        await admin.set_faults(error_rate=1.0, error_kinds=[kind.value], gateway_body=page)

    response = await send_failing(transfer, **arguments(step))

    assert response["Error"]["Code"] == str(status)
    assert response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert "x-amzn-requestid" not in response["ResponseMetadata"]["HTTPHeaders"]
    assert emulator.state.counts == {str(status): 1}


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("POST", "/_emulator/executions", [{"workflow_id": "w-bad"}]),
        (
            "POST",
            "/_emulator/executions",
            [{"workflow_id": "w-bad", "execution_id": "e", "token": "t"}],
        ),
        ("POST", "/_emulator/executions", {"nothing": 1}),
        ("PUT", "/_emulator/faults", {"error_rate": 2}),
        ("PUT", "/_emulator/faults", {"no_such_fault": 1}),
        ("PUT", "/_emulator/faults", {"error_kinds": ["Teapot"]}),
        ("PUT", "/_emulator/faults", {"error_form": "xml"}),
        ("PUT", "/_emulator/faults", {"gateway_body": "json"}),
        ("PUT", "/_emulator/faults", {"error_workflows": {"w-a": 1}}),
        ("PUT", "/_emulator/faults", {"error_workflows": ["w-a"]}),
        ("GET", "/_emulator/calls?since=x", None),
    ],
)
async def test_admin_api_rejects_bad_requests_with_400(
    emulator: RunningEmulator, method: str, path: str, payload: object
) -> None:
    """A malformed admin request is HTTP 400 with an error text and changes nothing."""
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, emulator.url + path, json=payload) as answer,
    ):
        document = await answer.json()
        assert answer.status == 400

    assert document["error"]
    assert emulator.state.waiting_tokens == 0
    assert emulator.state.faults == Faults()


async def test_admin_client_raises_on_a_refused_request(emulator: RunningEmulator) -> None:
    """EmulatorAdmin turns an admin API refusal into EmulatorAdminError carrying its text."""
    async with EmulatorAdmin(emulator.url) as admin:
        with pytest.raises(EmulatorAdminError, match="error_rate"):
            await admin.set_faults(error_rate=-1)


@pytest.fixture
def served_emulator() -> Iterator[str]:
    """`serve(port=0, accept_any=True)` in a subprocess; yields the URL it printed."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from relay.emulator import serve; serve('127.0.0.1', 0, accept_any=True)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("emulator listening on http://127.0.0.1:"), line
        yield line.removeprefix("emulator listening on ").strip()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def test_served_emulator_answers_a_plain_boto3_client(served_emulator: str) -> None:
    """`serve` prints its real port and accepts a boto3 callback once, refusing the repeat."""
    port = int(served_emulator.rsplit(":", 1)[1])
    assert port > 0
    client = boto3.client(
        "transfer",
        region_name="us-east-1",
        endpoint_url=served_emulator,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=NO_RETRIES,
    )
    step = new_step()
    try:
        response = client.send_workflow_step_state(**arguments(step))
        assert response["ResponseMetadata"]["HTTPStatusCode"] == 200

        with pytest.raises(client.exceptions.InvalidRequestException) as caught:
            client.send_workflow_step_state(**arguments(step))
        assert "step already completed" in caught.value.response["Error"]["Message"]
    finally:
        client.close()
