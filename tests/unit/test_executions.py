"""DESIGN §11's rules for a copy's execution state, and what reading them costs: the pure rules,
then `ExecutionStates` on an in-memory reader that counts its calls (the same behaviour is
proven against the emulator in tests/integration/test_execution_states.py)."""

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import pytest

from relay import executions
from relay.config.dlq import ExecutionReads
from relay.executions import (
    NOT_A_STEP_RESULT,
    NOT_CHECKED,
    ExecutionState,
    ExecutionStates,
    Read,
    Verdict,
    Why,
    decide,
    from_failure,
    from_listing,
    from_status,
    stops_reads,
)
from relay.limits import RetryPolicy
from relay.message import Status, StepResult
from relay.transfer import CallbackError, ExecutionPage

FAST_RETRY = ExecutionReads(
    retry=RetryPolicy(max_attempts=3, budget_s=5, base_s=0.001, cap_s=0.001)
)
WAITING, FINISHED, UNKNOWN = ExecutionState


def wf(name: str) -> str:
    """A valid workflow id spelling `name` (lower-case letters and digits)."""
    return "w-" + name.ljust(17, "0")


def step(workflow: str, n: int) -> StepResult:
    """A step of workflow `wf(workflow)` whose execution id ends in `n`."""
    return StepResult(wf(workflow), f"00000000-0000-0000-0000-{n:012d}", "tok", Status.SUCCESS)


# --- the rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("executions", "describe_up_to", "read"),
    [(1, 3, Read.DESCRIBE), (3, 3, Read.DESCRIBE), (4, 3, Read.LIST), (1, 0, Read.LIST)],
)
def test_few_executions_are_described_and_more_listed(
    executions: int, describe_up_to: int, read: Read
) -> None:
    """A workflow is described execution by execution up to `describe_up_to`, listed beyond."""
    assert decide(executions, describe_up_to) is read


@pytest.mark.parametrize(
    ("status", "state"),
    [("IN_PROGRESS", WAITING), ("COMPLETED", FINISHED), ("EXCEPTION", FINISHED),
     ("HANDLING_EXCEPTION", FINISHED), ("", FINISHED)],
)  # fmt: skip
def test_only_an_execution_in_progress_is_waiting(status: str, state: ExecutionState) -> None:
    """IN_PROGRESS waits; any other status (running exception steps, done) is finished."""
    assert from_status(status).state is state


def test_an_execution_missing_from_its_workflows_listing_is_finished() -> None:
    """Listed in progress: waiting; not listed while its workflow was read: finished."""
    listing = {"a": "IN_PROGRESS", "b": "HANDLING_EXCEPTION"}
    assert from_listing(listing, "a") == Verdict(WAITING, Why.IN_PROGRESS)
    assert from_listing(listing, "b").state is FINISHED
    assert from_listing(listing, "c") == Verdict(FINISHED, Why.NOT_IN_PROGRESS)


@pytest.mark.parametrize(
    ("read", "code", "verdict", "stops"),
    [
        (Read.LIST, "ResourceNotFoundException", Verdict(FINISHED, Why.WORKFLOW_NOT_FOUND), False),
        (Read.DESCRIBE, "ResourceNotFoundException", Verdict(FINISHED, Why.NOT_IN_PROGRESS), False),
        (Read.LIST, "AccessDeniedException", Verdict(UNKNOWN, Why.ACCESS_DENIED), False),
        (Read.DESCRIBE, "ThrottlingException", Verdict(UNKNOWN, Why.THROTTLED), True),
        (Read.LIST, "InternalServiceError", Verdict(UNKNOWN, Why.READ_FAILED), True),
        (Read.LIST, "ConnectionError", Verdict(UNKNOWN, Why.READ_FAILED), True),
    ],
)
def test_a_failed_read_makes_its_copies_finished_or_unknown(
    read: Read, code: str, verdict: Verdict, stops: bool
) -> None:
    """Not found means nothing of it runs (finished); a refusal or a failure leaves it unknown,
    and only a failure about the service (not one workflow) stops the reads."""
    assert from_failure(read, code) == verdict
    assert stops_reads(verdict) is stops


# --- the reading ---------------------------------------------------------------------------------


@dataclass
class FakeTransfer:
    """Workflows' executions in progress, paged; errors scripted per operation; calls counted."""

    in_progress: dict[str, list[str]] = field(default_factory=dict)
    page_size: int = 1000
    errors: dict[str, list[str]] = field(default_factory=dict)
    """Per operation, the codes the next calls fail with, in order."""
    calls: Counter[str] = field(default_factory=Counter)
    repeat_token: bool = False
    endless: bool = False
    """Every page is empty and hands out a new token (an endpoint that never ends a listing)."""

    def _fail(self, operation: str) -> None:
        self.calls[operation] += 1
        codes = self.errors.get(operation)
        if codes:
            raise CallbackError(codes.pop(0), "scripted")

    async def list_executions(
        self, *, workflow_id: str, next_token: str | None = None, max_results: int = 1000
    ) -> ExecutionPage:
        self._fail("ListExecutions")
        await asyncio.sleep(0)
        if workflow_id not in self.in_progress:
            raise CallbackError("ResourceNotFoundException", "unknown workflow")
        ids = self.in_progress[workflow_id]
        if self.endless:
            return ExecutionPage((), str(int(next_token or 0) + 1))
        start = int(next_token or 0)
        end = start + min(max_results, self.page_size)
        more = end < len(ids) or self.repeat_token
        token = ("1" if self.repeat_token else str(end)) if more else None
        return ExecutionPage(tuple((i, "IN_PROGRESS") for i in ids[start:end]), token)

    async def describe_execution(self, *, workflow_id: str, execution_id: str) -> str:
        self._fail("DescribeExecution")
        await asyncio.sleep(0)
        if execution_id not in self.in_progress.get(workflow_id, []):
            raise CallbackError("ResourceNotFoundException", "not in progress")
        return "IN_PROGRESS"


async def states_of(states: ExecutionStates, steps: list[StepResult]) -> list[ExecutionState]:
    """Each step's state, asked concurrently (as the DLQ tools ask)."""
    verdicts = await asyncio.gather(*(states.state(s) for s in steps))
    return [v.state for v in verdicts]


async def test_without_a_reader_or_a_step_result_a_copy_is_unknown_and_nothing_is_called() -> None:
    """Reading turned off: unknown, not_checked; a body that is not a step result: unknown,
    not_a_step_result."""
    assert await ExecutionStates(None, FAST_RETRY).state(step("a", 1)) == NOT_CHECKED
    fake = FakeTransfer()
    assert await ExecutionStates(fake, FAST_RETRY).state(None) == NOT_A_STEP_RESULT
    assert fake.calls == Counter()


async def test_counts_known_up_front_describe_small_workflows_and_list_large_ones() -> None:
    """With every copy expected: a workflow of 2 executions costs 2 describes, one of 5 a
    listing of every page (3 pages of 2); asking again costs nothing."""
    small = [step("small", n) for n in (1, 2)]
    large = [step("large", n) for n in range(1, 6)]
    fake = FakeTransfer(
        in_progress={
            wf("small"): [small[0].execution_id],
            wf("large"): [s.execution_id for s in large[:4]],
        },
        page_size=2,
    )
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect([*small, *large], complete=True)

    assert await states_of(states, small) == [WAITING, FINISHED]
    assert await states_of(states, large) == [WAITING] * 4 + [FINISHED]
    assert fake.calls == Counter({"DescribeExecution": 2, "ListExecutions": 2})
    await states_of(states, [*small, *large])
    assert states.calls == fake.calls, "every answer is kept for the run"


async def test_streamed_copies_wait_for_the_decision_a_fourth_execution_or_the_end_brings() -> None:
    """Asked as a stream, a workflow's first three executions wait; a fourth has the workflow
    listed (and the first three answered from it, no describe); a workflow that never gets a
    fourth is described once reading ends (`all_known`)."""
    listed = [step("many", n) for n in range(1, 5)]
    described = [step("few", n) for n in (1, 2)]
    fake = FakeTransfer(in_progress={wf("many"): [listed[0].execution_id], wf("few"): []})
    states = ExecutionStates(fake, FAST_RETRY)

    early = [asyncio.ensure_future(states.state(s)) for s in [*listed[:3], *described]]
    for _ in range(20):  # every task gets to run as far as it can
        await asyncio.sleep(0)
    assert not any(task.done() for task in early)
    assert fake.calls == Counter()
    fourth = await states.state(listed[3])
    assert fourth.state is FINISHED
    assert [(await t).state for t in early[:3]] == [WAITING, FINISHED, FINISHED]
    assert fake.calls == Counter({"ListExecutions": 1})
    assert not early[3].done()

    states.all_known()
    assert [(await t).state for t in early[3:]] == [FINISHED, FINISHED]
    assert fake.calls == Counter({"ListExecutions": 1, "DescribeExecution": 2})


async def test_a_refused_read_makes_that_workflow_unknown_once_and_says_which_permission() -> None:
    """AccessDenied on a workflow's listing: all its copies unknown after one call, a note
    naming transfer:ListExecutions; other workflows are still read."""
    denied = [step("denied", n) for n in range(1, 6)]
    other = [step("other", n) for n in range(1, 6)]
    fake = FakeTransfer(
        in_progress={wf("denied"): [], wf("other"): [other[0].execution_id]},
        errors={"ListExecutions": ["AccessDeniedException"]},
    )
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect(denied, complete=False)
    assert await states_of(states, denied) == [UNKNOWN] * 5
    assert (await states.state(denied[0])).why is Why.ACCESS_DENIED
    states.expect(other, complete=True)
    assert await states_of(states, other) == [WAITING] + [FINISHED] * 4
    assert fake.calls == Counter({"ListExecutions": 2})
    [note] = states.notes()
    assert "transfer:ListExecutions was refused (AccessDeniedException)" in note
    assert wf("denied") in note


async def test_a_describe_refused_spares_the_workflows_other_describes() -> None:
    """AccessDenied on one DescribeExecution: the workflow's other executions are unknown
    without a call of their own."""
    steps = [step("denied", n) for n in (1, 2, 3)]
    fake = FakeTransfer(errors={"DescribeExecution": ["AccessDeniedException"]})
    states = ExecutionStates(fake, ExecutionReads(retry=FAST_RETRY.retry, concurrency=1))
    states.expect(steps, complete=True)
    assert await states_of(states, steps) == [UNKNOWN] * 3
    assert fake.calls == Counter({"DescribeExecution": 1})
    assert "transfer:DescribeExecution" in states.notes()[0]


async def test_throttling_is_retried_and_counted() -> None:
    """Two throttles, then an answer: three calls, two of them counted as throttled."""
    steps = [step("a", n) for n in range(1, 6)]
    fake = FakeTransfer(
        in_progress={wf("a"): [steps[0].execution_id]},
        errors={"ListExecutions": ["ThrottlingException", "ThrottlingException"]},
    )
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect(steps, complete=True)
    assert await states_of(states, steps) == [WAITING] + [FINISHED] * 4
    assert states.calls == Counter({"ListExecutions": 3})
    assert states.throttled == Counter({"ListExecutions": 2})
    assert states.notes() == []


async def test_a_failure_past_the_retries_stops_reading_for_the_run() -> None:
    """A listing that fails on every attempt makes its workflow unknown, and every workflow
    not read by then is unknown (reads_stopped) without a call; a note says why."""
    first = [step("first", n) for n in range(1, 6)]
    later = [step("later", 1)]
    fake = FakeTransfer(
        in_progress={wf("first"): [], wf("later"): [later[0].execution_id]},
        errors={"ListExecutions": ["InternalServiceError"] * 3},
    )
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect(first, complete=False)
    assert {(await states.state(s)).why for s in first} == {Why.READ_FAILED}
    states.expect(later, complete=True)
    assert await states.state(later[0]) == Verdict(UNKNOWN, Why.READS_STOPPED)
    assert fake.calls == Counter({"ListExecutions": 3})
    assert "no more executions were read" in states.notes()[0]


async def test_an_unknown_workflow_is_finished_and_said() -> None:
    """A workflow Transfer Family does not know: its copies are finished, and a note asks to
    check the region and account."""
    steps = [step("gone", n) for n in range(1, 5)]
    states = ExecutionStates(FakeTransfer(), FAST_RETRY)
    states.expect(steps, complete=True)
    assert {await states.state(s) for s in steps} == {Verdict(FINISHED, Why.WORKFLOW_NOT_FOUND)}
    assert f"knows no 1 workflow(s) ({wf('gone')})" in states.notes()[0]


async def test_a_listing_that_hands_out_a_token_twice_ends_as_unknown() -> None:
    """A NextToken seen before ends the listing (it would never end) as a failed read."""
    steps = [step("loop", n) for n in range(1, 5)]
    fake = FakeTransfer(in_progress={wf("loop"): ["x"]}, repeat_token=True)
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect(steps, complete=True)
    assert (await states.state(steps[0])).why is Why.READ_FAILED
    assert fake.calls["ListExecutions"] == 2


async def test_a_listing_that_never_ends_stops_at_its_page_bound_as_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """New tokens without end (empty pages) end the listing after MAX_PAGES pages as a failed
    read: bounded in calls, never a hang."""
    monkeypatch.setattr(executions, "MAX_PAGES", 7)
    steps = [step("endless", n) for n in range(1, 5)]
    fake = FakeTransfer(in_progress={wf("endless"): []}, endless=True)
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect(steps, complete=True)
    verdict = await states.state(steps[0])
    assert verdict.why is Why.READ_FAILED
    assert fake.calls["ListExecutions"] == 7
    assert "ListingTooLong" in " ".join(states.notes())


async def test_a_cancelled_caller_does_not_cancel_a_read_others_wait_on() -> None:
    """Reads are shared: one caller cancelled leaves the listing running for the others."""
    steps = [step("a", n) for n in range(1, 6)]
    fake = FakeTransfer(in_progress={wf("a"): [steps[0].execution_id]})
    states = ExecutionStates(fake, FAST_RETRY)
    states.expect(steps, complete=True)
    doomed = asyncio.ensure_future(states.state(steps[0]))
    await asyncio.sleep(0)
    doomed.cancel()
    assert (await states.state(steps[0])).state is WAITING
    await states.aclose()
