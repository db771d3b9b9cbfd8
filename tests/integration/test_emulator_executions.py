"""The emulator's `ListExecutions` and `DescribeExecution` (DESIGN §7, §11) over real HTTP,
through an unmodified aiobotocore client: shapes, paging, the life of an execution, faults."""

import json
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from relay.emulator import EmulatorAdmin, EmulatorState, Faults, RunningEmulator, run_emulator
from tests.integration.test_emulator import (
    arguments,
    new_step,
    signed_headers,
    transfer_client,
)

if TYPE_CHECKING:
    from types_aiobotocore_transfer import TransferClient


class FakeClock:
    """A monotonic clock the test moves by hand (the steps' timeouts run on it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    """The emulator's clock."""
    return FakeClock()


@pytest.fixture
async def emulator(clock: FakeClock) -> AsyncIterator[RunningEmulator]:
    """An emulator on a free loopback port whose clock the test moves."""
    async with run_emulator(state=EmulatorState(seed=7, clock=clock)) as running:
        yield running


@pytest.fixture
async def transfer(emulator: RunningEmulator) -> AsyncIterator["TransferClient"]:
    """An unmodified aiobotocore `transfer` client pointed at the emulator, retries off."""
    async with transfer_client(emulator.url) as client:
        yield client


WORKFLOW = "w-0123456789abcdef0"


def executions(count: int, workflow: str = WORKFLOW) -> list[tuple[str, str, str]]:
    """`count` steps of one workflow, each its own execution."""
    return [(workflow, str(uuid.UUID(int=i + 1)), f"token_{i}") for i in range(count)]


async def failing(call: Any, **kwargs: Any) -> dict[str, Any]:
    """botocore's parsed error response of a call that must fail."""
    with pytest.raises(ClientError) as caught:
        await call(**kwargs)
    return dict(caught.value.response)


async def listed_ids(transfer: "TransferClient", workflow: str = WORKFLOW) -> list[str]:
    """Every execution id a workflow's listing returns, all pages (botocore's paginator)."""
    paginator = transfer.get_paginator("list_executions")
    found: list[str] = []
    async for page in paginator.paginate(WorkflowId=workflow):
        found += [e["ExecutionId"] for e in page["Executions"]]
    return found


async def test_listing_shows_each_execution_in_progress_in_the_models_shape(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """ListExecutions returns the workflow id and each execution in progress with its id, the
    file that started it, its user details and IN_PROGRESS; no NextToken when all fit."""
    emulator.state.register_many(executions(3))
    emulator.state.register_many(executions(2, "w-fffffffffffffffff"))

    page = await transfer.list_executions(WorkflowId=WORKFLOW)

    assert page["WorkflowId"] == WORKFLOW
    assert "NextToken" not in page
    assert [e["ExecutionId"] for e in page["Executions"]] == [s[1] for s in executions(3)]
    first = page["Executions"][0]
    assert first["Status"] == "IN_PROGRESS"
    assert first["InitialFileLocation"]["S3FileLocation"]["Key"].startswith("uploads/")
    user = first["ServiceMetadata"]["UserDetails"]
    assert set(user) == {"UserName", "ServerId", "SessionId"}
    assert user["ServerId"].startswith("s-")
    assert len(user["ServerId"]) == 19
    [call] = [c for c in emulator.state.calls if c.operation == "ListExecutions"]
    assert (call.workflow_id, call.listed, call.http_status) == (WORKFLOW, 3, 200)


async def test_pages_hold_at_most_the_page_size_whatever_max_results_asks(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """With page_size 2, MaxResults 1000 still gets pages of 2 and a NextToken until the last;
    MaxResults 1 gets pages of 1; the pages together list every execution once."""
    emulator.state.register_many(executions(5))
    emulator.state.set_faults(Faults(page_size=2))

    sizes: list[int] = []
    token: dict[str, str] = {}
    seen: list[str] = []
    for _ in range(10):  # three pages expected; a listing that never ends fails below
        page = await transfer.list_executions(WorkflowId=WORKFLOW, MaxResults=1000, **token)
        sizes.append(len(page["Executions"]))
        seen += [e["ExecutionId"] for e in page["Executions"]]
        if "NextToken" not in page:
            break
        token = {"NextToken": page["NextToken"]}
    assert sizes == [2, 2, 1]
    assert seen == [s[1] for s in executions(5)]
    single = await transfer.list_executions(WorkflowId=WORKFLOW, MaxResults=1)
    assert len(single["Executions"]) == 1
    assert "NextToken" in single
    assert await listed_ids(transfer) == seen


async def test_an_execution_answered_meanwhile_leaves_the_next_pages_alone(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """A NextToken goes on after the last execution listed: one finishing between pages is
    not listed, and none is skipped or listed twice."""
    steps = executions(4)
    emulator.state.register_many(steps)
    emulator.state.set_faults(Faults(page_size=2))
    first = await transfer.list_executions(WorkflowId=WORKFLOW)
    workflow, execution, token = steps[2]
    await transfer.send_workflow_step_state(
        WorkflowId=workflow, ExecutionId=execution, Token=token, Status="SUCCESS"
    )

    rest = await transfer.list_executions(WorkflowId=WORKFLOW, NextToken=first["NextToken"])

    assert [e["ExecutionId"] for e in rest["Executions"]] == [steps[3][1]]
    assert "NextToken" not in rest


async def test_an_answered_execution_is_forgotten_by_both_reads_and_by_callbacks(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """DescribeExecution answers IN_PROGRESS until the step is answered; then it is
    ResourceNotFoundException, the listing leaves it out, a repeat of the token is still "step
    already completed" and any other callback for it is answered as for an unknown execution."""
    step = new_step()
    emulator.state.register(*step)
    ids = {"WorkflowId": step.workflow_id, "ExecutionId": step.execution_id}

    described = await transfer.describe_execution(**ids)
    assert described["WorkflowId"] == step.workflow_id
    assert described["Execution"]["ExecutionId"] == step.execution_id
    assert described["Execution"]["Status"] == "IN_PROGRESS"
    assert described["Execution"]["ExecutionRole"].startswith("arn:aws:iam::")

    await transfer.send_workflow_step_state(**arguments(step))

    gone = await failing(transfer.describe_execution, **ids)
    assert gone["Error"]["Code"] == "ResourceNotFoundException"
    assert (gone["Resource"], gone["ResourceType"]) == (step.execution_id, "Execution")
    assert await listed_ids(transfer, step.workflow_id) == []
    repeat = await failing(transfer.send_workflow_step_state, **arguments(step))
    assert "step already completed" in repeat["Error"]["Message"]
    other = await failing(transfer.send_workflow_step_state, **arguments(step, Token="other"))
    assert other["Error"]["Code"] == "ResourceNotFoundException"


async def test_the_steps_timeout_ends_an_execution(
    emulator: RunningEmulator, transfer: "TransferClient", clock: FakeClock
) -> None:
    """An execution is in progress until its workflow's step timeout (1800 s by default)
    passes; then neither read shows it and its callback is ResourceNotFoundException."""
    step = new_step()
    emulator.state.register(*step)
    ids = {"WorkflowId": step.workflow_id, "ExecutionId": step.execution_id}

    clock.now += 1799
    assert (await transfer.describe_execution(**ids))["Execution"]["Status"] == "IN_PROGRESS"
    clock.now += 1
    assert (await failing(transfer.describe_execution, **ids))["Error"]["Code"] == (
        "ResourceNotFoundException"
    )
    assert await listed_ids(transfer, step.workflow_id) == []
    late = await failing(transfer.send_workflow_step_state, **arguments(step))
    assert late["Error"]["Code"] == "ResourceNotFoundException"
    assert emulator.state.is_waiting(*step), "a timed-out step is not answered"


async def test_admin_api_sets_step_timeouts_and_starts_executions_in_the_past(
    emulator: RunningEmulator, transfer: "TransferClient", clock: FakeClock
) -> None:
    """Through the admin API: a workflow's step timeout (applying to executions already
    waiting), every workflow's default, and executions started long enough ago to have timed
    out already; bad values are HTTP 400 and change nothing."""
    short, other = "w-aaaaaaaaaaaaaaaaa", "w-bbbbbbbbbbbbbbbbb"
    async with EmulatorAdmin(emulator.url) as admin:
        assert await admin.register(executions(2, short)) == 2
        await admin.register(executions(2, other))
        await admin.register([(other, str(uuid.UUID(int=99)), "late")], started_s_ago=1800)
        timeouts = await admin.set_step_timeouts(workflows={short: 60})
        assert timeouts == {"default": 1800.0, "workflows": {short: 60.0}}
        clock.now += 60
        assert await listed_ids(transfer, short) == []
        assert len(await listed_ids(transfer, other)) == 2, "the one started 1800 s ago ended"
        await admin.set_step_timeouts(default=30)
        assert await listed_ids(transfer, other) == []
        assert (await admin.step_timeouts())["default"] == 30.0
        stats = await admin.stats()
        assert (stats["executions"], stats["in_progress"]) == (5, 0)
        for bad in ({"default": 1801}, {"default": "1"}, {"workflows": {"w-bad": 5}}, {"x": 1}):
            async with (
                aiohttp.ClientSession() as session,
                session.put(f"{emulator.url}/_emulator/step-timeouts", json=bad) as answer,
            ):
                assert answer.status == 400, bad
                assert (await answer.json())["error"]
        assert await admin.step_timeouts() == {"default": 30.0, "workflows": {short: 60.0}}


async def test_unknown_workflow_is_resource_not_found_and_bad_tokens_are_refused(
    emulator: RunningEmulator, transfer: "TransferClient"
) -> None:
    """ListExecutions of a workflow the service does not know is ResourceNotFoundException
    (ResourceType Workflow); a NextToken not handed out for this workflow is
    InvalidNextTokenException."""
    unknown = await failing(transfer.list_executions, WorkflowId="w-zzzzzzzzzzzzzzzzz")
    assert unknown["Error"]["Code"] == "ResourceNotFoundException"
    assert (unknown["Resource"], unknown["ResourceType"]) == ("w-zzzzzzzzzzzzzzzzz", "Workflow")

    emulator.state.register_many(executions(3))
    emulator.state.register_many(executions(3, "w-fffffffffffffffff"))
    emulator.state.set_faults(Faults(page_size=1))
    other = await transfer.list_executions(WorkflowId="w-fffffffffffffffff")
    for token in (other["NextToken"], "not-a-token"):
        refused = await failing(transfer.list_executions, WorkflowId=WORKFLOW, NextToken=token)
        assert refused["Error"]["Code"] == "InvalidNextTokenException"


@pytest.mark.parametrize(
    ("target", "body", "code", "says"),
    [
        ("ListExecutions", {"WorkflowId": WORKFLOW, "MaxResults": 0}, "InvalidRequestException",
         "'MaxResults'"),
        ("ListExecutions", {"WorkflowId": WORKFLOW, "MaxResults": 1001},
         "InvalidRequestException", "less than or equal to 1000"),
        ("ListExecutions", {"WorkflowId": WORKFLOW, "MaxResults": "5"}, "SerializationException",
         "MaxResults"),
        ("ListExecutions", {}, "InvalidRequestException", "'WorkflowId'"),
        ("DescribeExecution", {"WorkflowId": WORKFLOW}, "InvalidRequestException",
         "'ExecutionId'"),
        ("DescribeExecution", {"WorkflowId": "w-x", "ExecutionId": "e"},
         "InvalidRequestException", "2 validation errors"),
        ("ListServers", {}, "UnknownOperationException", "TransferService.ListServers"),
    ],
)  # fmt: skip
async def test_requests_breaking_the_model_are_refused_as_the_service_would(
    emulator: RunningEmulator, target: str, body: dict[str, Any], code: str, says: str
) -> None:
    """Members the model constrains (botocore checks them before sending, so these are raw
    requests) and operations the emulator does not serve are refused in JSON 1.1 form."""
    headers = {**signed_headers(), "X-Amz-Target": f"TransferService.{target}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(emulator.url + "/", data=json.dumps(body), headers=headers) as answer,
    ):
        document = json.loads(await answer.read())
        assert answer.status == 400
    assert document["__type"].rpartition("#")[2] == code
    assert says in document["Message"]


async def test_faults_deny_throttle_or_fail_one_operation_only(
    emulator: RunningEmulator, transfer: "TransferClient", clock: FakeClock
) -> None:
    """deny_operations refuses one operation as IAM does, naming the permission;
    throttle_operations gives it a bucket of its own with RetryAfterSeconds; error_operations
    answers it with an error; the other operations are untouched, and the call log and the
    counts by operation show each call."""
    step = new_step()
    emulator.state.register(*step)
    ids = {"WorkflowId": step.workflow_id, "ExecutionId": step.execution_id}
    emulator.state.set_faults(Faults(deny_operations=frozenset({"ListExecutions"})))

    denied = await failing(transfer.list_executions, WorkflowId=step.workflow_id)
    assert denied["Error"]["Code"] == "AccessDeniedException"
    assert "transfer:ListExecutions" in denied["Error"]["Message"]
    assert step.workflow_id in denied["Error"]["Message"]
    assert (await transfer.describe_execution(**ids))["Execution"]["Status"] == "IN_PROGRESS"

    emulator.state.set_faults(Faults(throttle_operations={"DescribeExecution": 1.0}))
    await transfer.describe_execution(**ids)
    throttled = await failing(transfer.describe_execution, **ids)
    assert throttled["Error"]["Code"] == "ThrottlingException"
    assert throttled["RetryAfterSeconds"] == "1"
    clock.now += 1
    await transfer.describe_execution(**ids)
    assert len((await transfer.list_executions(WorkflowId=step.workflow_id))["Executions"]) == 1

    emulator.state.set_faults(Faults(error_operations={"ListExecutions": "InternalServiceError"}))
    failed = await failing(transfer.list_executions, WorkflowId=step.workflow_id)
    assert (failed["Error"]["Code"], failed["ResponseMetadata"]["HTTPStatusCode"]) == (
        "InternalServiceError",
        500,
    )
    assert emulator.state.counts == {}, "no callback was made"
    assert emulator.state.counts_by_operation() == {
        "ListExecutions": {"AccessDeniedException": 1, "success": 1, "InternalServiceError": 1},
        "DescribeExecution": {"success": 3, "ThrottlingException": 1},
    }
    async with EmulatorAdmin(emulator.url) as admin:
        calls, _ = await admin.calls()
        assert [c["operation"] for c in calls][:2] == ["ListExecutions", "DescribeExecution"]
        faults = await admin.set_faults(throttle_operations={"ListExecutions": 2}, page_size=5)
        assert (faults["throttle_operations"], faults["page_size"]) == ({"ListExecutions": 2}, 5)
        for bad in ({"deny_operations": ["ListServers"]}, {"page_size": 0},
                    {"throttle_operations": {"ListExecutions": 0}}):  # fmt: skip
            async with (
                aiohttp.ClientSession() as session,
                session.put(f"{emulator.url}/_emulator/faults", json=bad) as answer,
            ):
                assert answer.status == 400, bad
