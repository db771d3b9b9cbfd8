"""`relay.executions` against the emulator through the aiobotocore Transfer client: which
copies' executions still wait, and what finding out costs in calls (DESIGN §11)."""

import uuid
from collections import Counter

import pytest

from relay.config.dlq import ExecutionReads
from relay.emulator import Faults
from relay.executions import ExecutionState, Why, open_execution_states
from relay.limits import RetryPolicy
from relay.message import Status, StepResult
from tests.conftest import Emulator
from tests.hostile_endpoint import Answer, hostile_endpoint

QUICK = RetryPolicy(max_attempts=4, budget_s=10, base_s=0.01, cap_s=0.05)


def steps_of(workflow: str, count: int, start: int = 0) -> list[StepResult]:
    """`count` steps of a workflow, each its own execution."""
    return [
        StepResult(workflow, str(uuid.UUID(int=start + i + 1)), f"t{i}", Status.SUCCESS)
        for i in range(count)
    ]


def reads(emulator: Emulator) -> Counter[str]:
    """The execution reads the emulator answered, by operation."""
    return Counter(
        c.operation for c in emulator.state.calls if c.operation != "SendWorkflowStepState"
    )


async def test_pages_smaller_than_asked_are_followed_to_the_end(emulator: Emulator) -> None:
    """A workflow with 7 executions in progress and pages of 2 costs 4 ListExecutions calls
    for any number of its copies; each copy is waiting or finished as the emulator says."""
    workflow = "w-pagedpagedpaged00"
    waiting = steps_of(workflow, 7)
    finished = steps_of(workflow, 3, start=100)
    emulator.state.register_many([s.step_key for s in waiting])
    emulator.state.set_faults(Faults(page_size=2))
    async with open_execution_states(ExecutionReads(retry=QUICK)) as states:
        states.expect([*waiting, *finished], complete=True)
        found = [(await states.state(s)).state for s in [*waiting, *finished]]
    assert found == [ExecutionState.WAITING] * 7 + [ExecutionState.FINISHED] * 3
    assert reads(emulator) == Counter({"ListExecutions": 4})
    assert [c.listed for c in emulator.state.calls] == [2, 2, 2, 1]


async def test_a_workflow_with_few_copies_is_described_and_ended_executions_are_finished(
    emulator: Emulator,
) -> None:
    """Two copies of a workflow cost two DescribeExecution calls: the one in progress is
    waiting; one whose step timed out is finished."""
    workflow = "w-fewfewfewfewfew00"
    live, late = steps_of(workflow, 2)
    emulator.state.register_many([live.step_key])
    emulator.state.register_many([late.step_key], started_s_ago=1800)
    async with open_execution_states(ExecutionReads(retry=QUICK)) as states:
        states.expect([live, late], complete=True)
        assert (await states.state(live)).state is ExecutionState.WAITING
        assert (await states.state(late)).why is Why.NOT_IN_PROGRESS
    assert reads(emulator) == Counter({"DescribeExecution": 2})


async def test_throttled_listings_are_retried_until_answered(emulator: Emulator) -> None:
    """ListExecutions allowed once a second (RetryAfterSeconds 0.05 here): the pages still come,
    after retries; the throttles are counted."""
    workflow = "w-throttledthrott00"
    waiting = steps_of(workflow, 5)
    emulator.state.register_many([s.step_key for s in waiting])
    emulator.state.set_faults(
        Faults(page_size=2, throttle_operations={"ListExecutions": 1.0}, retry_after_s=0.05)
    )
    async with open_execution_states(
        ExecutionReads(retry=RetryPolicy(max_attempts=100, budget_s=20, base_s=0.05, cap_s=0.2))
    ) as states:
        states.expect(waiting, complete=True)
        assert {(await states.state(s)).state for s in waiting} == {ExecutionState.WAITING}
        assert states.throttled["ListExecutions"] > 0
        answered = [c for c in emulator.state.calls if c.http_status == 200]
        assert len(answered) == 3
        assert states.calls["ListExecutions"] == len(emulator.state.calls)


async def test_a_refused_permission_leaves_copies_unknown_and_names_it(emulator: Emulator) -> None:
    """With transfer:ListExecutions denied, a workflow with many copies is unknown after one
    call, and the note names the permission."""
    workflow = "w-denieddenieddenie"
    copies = steps_of(workflow, 5)
    emulator.state.register_many([s.step_key for s in copies])
    emulator.state.set_faults(Faults(deny_operations=frozenset({"ListExecutions"})))
    async with open_execution_states(ExecutionReads(retry=QUICK)) as states:
        states.expect(copies, complete=True)
        assert {(await states.state(s)).why for s in copies} == {Why.ACCESS_DENIED}
        assert "transfer:ListExecutions was refused" in states.notes()[0]
    assert reads(emulator) == Counter({"ListExecutions": 1})


async def test_full_pages_of_a_thousand_are_read_whole(emulator: Emulator) -> None:
    """1,200 executions in progress: two pages (1,000 and 200); a full page's answer (about
    300 KB) is read whole, past the 64 KiB cap on error answers."""
    workflow = "w-busybusybusybusy0"
    waiting = steps_of(workflow, 1200)
    emulator.state.register_many([s.step_key for s in waiting])
    async with open_execution_states(ExecutionReads(retry=QUICK)) as states:
        states.expect([waiting[0], waiting[-1], *steps_of(workflow, 3, start=5000)], complete=True)
        assert (await states.state(waiting[-1])).state is ExecutionState.WAITING
        assert (await states.state(steps_of(workflow, 1, start=5000)[0])).state is (
            ExecutionState.FINISHED
        )
    assert [c.listed for c in emulator.state.calls] == [1000, 200]


@pytest.mark.parametrize(
    "body",
    [b"{}", b'{"WorkflowId": "w-cutcutcutcutcut00", "Executions": [{"Executio', b"<html>"],
)
async def test_a_listing_answer_without_its_executions_is_unknown_never_finished(
    monkeypatch: pytest.MonkeyPatch, body: bytes
) -> None:
    """A 200 whose body lacks the required Executions (empty, cut short, not JSON) is a failed
    read, so the workflow's copies are unknown: it must never read as "nothing in progress"."""
    copies = steps_of("w-cutcutcutcutcut00", 5)
    answer = Answer(status=200, headers={"Content-Type": "application/x-amz-json-1.1"}, body=body)
    async with hostile_endpoint([], then=answer) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", endpoint.url)
        async with open_execution_states(ExecutionReads(retry=QUICK)) as states:
            states.expect(copies, complete=True)
            assert {(await states.state(s)).state for s in copies} == {ExecutionState.UNKNOWN}
            assert "UnreadableAnswer" in states.notes()[0]
