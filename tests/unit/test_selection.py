"""How the DLQ commands choose copies and count them by their execution's state (DESIGN §11),
without a queue: the tally's per-workflow counts and ages, and the bound on copies waiting to
be judged."""

import asyncio
from collections import Counter

import pytest

from relay.config.dlq import ExecutionReads
from relay.dlq import selection
from relay.dlq.selection import ExecutionTally, Judging, in_states, time_left_s
from relay.executions import (
    NOT_A_STEP_RESULT,
    WAITING,
    ExecutionState,
    ExecutionStates,
    Verdict,
    Why,
)
from relay.message import Status, StepResult
from relay.transfer import ExecutionPage

FINISHED = Verdict(ExecutionState.FINISHED, Why.NOT_IN_PROGRESS)


def test_the_tally_counts_by_workflow_and_keeps_each_workflows_oldest_waiting_copy() -> None:
    """Copies are counted by state per workflow (not step results apart, listed last), unknown
    ones by why, and the oldest waiting copy's age is kept per workflow and in all."""
    tally = ExecutionTally()
    tally.add("w-a", WAITING, 120.0)
    tally.add("w-a", WAITING, 600.0)
    tally.add("w-a", FINISHED, 5000.0)
    tally.add("w-b", FINISHED, 10.0)
    tally.add(None, NOT_A_STEP_RESULT, 9000.0)

    assert tally.by_state == Counter({"waiting": 2, "finished": 2, "unknown": 1})
    assert tally.unknown_why == Counter({"not_a_step_result": 1})
    assert [w for w, _ in tally.workflows(10)] == ["w-a", "w-b", "-"]
    assert [w for w, _ in tally.workflows(1)] == ["w-a", "-"]
    assert tally.oldest_waiting_s == {"w-a": 600.0}
    assert tally.oldest_waiting_age_s == 600.0
    document = tally.to_json(10)
    assert document["oldest_waiting_at_most_left_s"] == 1200.0
    assert document["workflows"][2]["workflow_id"] is None
    assert ExecutionTally().oldest_waiting_age_s is None


def test_time_left_never_goes_below_zero_and_no_state_filter_takes_any_state() -> None:
    """A copy older than the longest step has no time left; an empty --execution-state takes
    every state, a given one only its own."""
    assert time_left_s(1799.5) == 0.5
    assert time_left_s(4000.0) == 0.0
    assert in_states(frozenset(), FINISHED)
    assert in_states(frozenset({"finished"}), FINISHED)
    assert not in_states(frozenset({"waiting"}), FINISHED)


class EmptyTransfer:
    """A Transfer Family with nothing in progress."""

    async def list_executions(
        self, *, workflow_id: str, next_token: str | None = None, max_results: int = 1000
    ) -> ExecutionPage:
        return ExecutionPage((), None)

    async def describe_execution(self, *, workflow_id: str, execution_id: str) -> str:
        return "COMPLETED"


async def test_judging_past_its_bound_reads_what_is_undecided_instead_of_waiting_forever(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With room for two copies, a third of other workflows (each undecided: too few copies to
    list, and the reading not over) has the waiting ones described so it can go on."""
    monkeypatch.setattr(selection, "JUDGING_MAX_COPIES", 2)
    judging = Judging(ExecutionStates(EmptyTransfer(), ExecutionReads()))
    seen: list[ExecutionState] = []

    async def then(verdict: Verdict) -> None:
        seen.append(verdict.state)

    for n in range(3):
        step = StepResult(f"w-{n:017d}", f"00000000-0000-0000-0000-{n:012d}", "t", Status.SUCCESS)
        await asyncio.wait_for(judging.judge(step, 10, then), timeout=5)
    await judging.finish()
    assert seen == [ExecutionState.FINISHED] * 3
