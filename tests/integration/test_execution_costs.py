"""What finding out which copies can still help costs in Transfer Family calls (DESIGN §11): a
replay of 100 copies across 4 workflows, two of them with over 1,000 executions in progress,
counted call by call in the emulator's log (the figures the README quotes)."""

import uuid
from collections import Counter
from dataclasses import dataclass

import pytest

from relay.emulator import Faults
from relay.message import Status, StepResult
from tests.conftest import Emulator, Queues
from tests.integration.test_replay import FAST, account, dead, put_dlq, relay
from tests.support import SQSClient

SEND = "SendWorkflowStepState"


@dataclass(frozen=True)
class Workflow:
    """One workflow of the scenario: executions in progress, and its copies in the DLQ."""

    workflow_id: str
    in_progress: int
    waiting_copies: int
    finished_copies: int


SCENARIO = (
    Workflow("w-busiest0000000000", 2500, 30, 10),
    Workflow("w-busy0000000000000", 1200, 25, 15),
    Workflow("w-quiet000000000000", 10, 5, 12),
    Workflow("w-rare0000000000000", 2, 2, 1),
)
"""100 copies, 62 of them waiting: A is listed in 3 pages, B in 2, C in 1, D described 3
times."""


def _steps(workflow: str, count: int, start: int) -> list[StepResult]:
    return [
        StepResult(workflow, str(uuid.UUID(int=start + i)), f"t{start + i}", Status.SUCCESS)
        for i in range(count)
    ]


@dataclass(frozen=True)
class Copies:
    """The bodies in the DLQ: the waiting copies' and the finished ones'."""

    waiting: Counter[str]
    finished: Counter[str]


@pytest.fixture
async def scenario(sqs: SQSClient, queues: Queues, emulator: Emulator) -> Copies:
    """The scenario's executions started and its 100 copies in the DLQ."""
    copies = Copies(Counter(), Counter())
    for n, workflow in enumerate(SCENARIO):
        base = (n + 1) * 1_000_000
        running = _steps(workflow.workflow_id, workflow.in_progress, base)
        emulator.state.register_many([s.step_key for s in running])
        copies.waiting.update(s.to_body() for s in running[: workflow.waiting_copies])
        ended = _steps(workflow.workflow_id, workflow.finished_copies, base + 500_000)
        copies.finished.update(s.to_body() for s in ended)
    entries = [
        dead(body, reason="not_found", code="ResourceNotFoundException", source=queues.url)
        for body in copies.waiting + copies.finished
    ]
    await put_dlq(sqs, queues.dlq_url, entries)
    assert (copies.waiting.total(), copies.finished.total()) == (62, 38)
    return copies


def calls(emulator: Emulator) -> Counter[str]:
    """The calls the emulator answered, by operation."""
    return Counter(c.operation for c in emulator.state.calls)


async def test_a_replay_of_100_copies_across_4_workflows_costs_71_calls(
    sqs: SQSClient, queues: Queues, emulator: Emulator, scenario: Copies,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """--to transfer: 6 ListExecutions pages (3 + 2 + 1), 3 DescribeExecution (the workflow of
    3 copies) and 62 callbacks, one per waiting copy: 71 calls, where describing every copy
    would cost 100 reads and 162 calls; the 38 finished copies stay in the DLQ."""
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--to", "transfer",
                      "--json", *FAST, executions=True)  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["replayed"], run.json()["skipped_execution_finished"]) == (62, 38)
    assert calls(emulator) == Counter({"ListExecutions": 6, "DescribeExecution": 3, SEND: 62})
    listed = [c.listed for c in emulator.state.calls if c.operation == "ListExecutions"]
    assert sorted(listed) == [10, 200, 500, 1000, 1000, 1000]
    await account(sqs, dlq=(queues.dlq_url, scenario.finished), source=(queues.url, Counter()))


async def test_stats_reads_the_same_and_smaller_pages_cost_more_calls(
    sqs: SQSClient, queues: Queues, emulator: Emulator, scenario: Copies,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`dlq stats` costs the same 9 reads; with pages of 100 (fewer than the 1000 asked) the
    listings follow every page: 25 + 12 + 1 = 38 ListExecutions, the same counts."""
    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--json", *FAST,
                      executions=True)  # fmt: skip
    assert run.code == 0, run.err
    assert run.json()["executions"]["by_state"] == {"waiting": 62, "finished": 38, "unknown": 0}
    assert calls(emulator) == Counter({"ListExecutions": 6, "DescribeExecution": 3})

    emulator.state.set_faults(Faults(page_size=100))
    before = calls(emulator)
    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--json", *FAST,
                      executions=True)  # fmt: skip
    assert run.json()["executions"]["by_state"] == {"waiting": 62, "finished": 38, "unknown": 0}
    assert calls(emulator) - before == Counter({"ListExecutions": 38, "DescribeExecution": 3})
    await account(sqs, dlq=(queues.dlq_url, scenario.waiting + scenario.finished))
