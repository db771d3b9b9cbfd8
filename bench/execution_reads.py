"""What knowing which DLQ copies can still help costs in Transfer Family calls (DESIGN §11).

    .venv/bin/python -m bench.execution_reads                 # 100 copies across 4 workflows
    .venv/bin/python -m bench.execution_reads --page-size 100 # pages smaller than asked

On the local stack (moto's SQS and the emulator, in this process, on 127.0.0.1): the scenario's
executions are started in the emulator, its copies put in a DLQ, then `relay dlq stats` runs
(its table is printed) and `relay replay --to transfer` runs once per read rule, each on a fresh
DLQ and emulator; the emulator's call log gives the calls by operation. The rules compared:
relay's (describe a workflow's executions when it has at most 3 copies' worth, else list it),
"always list" (describe_up_to 0) and "always describe" (no listing). Not part of `make test`;
tests/integration/test_execution_costs.py checks the default scenario's figures.
"""

import argparse
import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from relay.config.dlq import ExecutionReads, ReplayConfig, ScanConfig, StatsConfig
from relay.dead_letter import CopyFacts
from relay.dlq.replay import replay
from relay.dlq.stats import dlq_stats
from relay.emulator import Faults
from relay.local import aws_environment, local_emulator, point_aws_at, serve_moto
from relay.message import Status, StepResult
from relay.sqs import OutgoingMessage, create_queue_pair, open_sqs, send_messages
from relay.terminal import print_stats

SEND: Final = "SendWorkflowStepState"


@dataclass(frozen=True)
class Workflow:
    """One workflow: executions in progress, and its copies in the DLQ."""

    name: str
    in_progress: int
    waiting_copies: int
    finished_copies: int

    @property
    def workflow_id(self) -> str:
        """A valid id spelling the name."""
        return "w-" + self.name.ljust(17, "0")


DEFAULT: Final = (
    Workflow("busiest", 2500, 30, 10),
    Workflow("busy", 1200, 25, 15),
    Workflow("quiet", 10, 5, 12),
    Workflow("rare", 2, 2, 1),
)
RULES: Final = {
    "relay (describe <= 3, else list)": ExecutionReads(),
    "always list": ExecutionReads(describe_up_to=0),
    "always describe": ExecutionReads(describe_up_to=1_000_000),
}


def _steps(workflow: Workflow, count: int, start: int) -> list[StepResult]:
    return [
        StepResult(
            workflow.workflow_id, str(uuid.UUID(int=start + i)), f"t{start + i}", Status.SUCCESS
        )
        for i in range(count)
    ]


async def _run(
    scenario: Sequence[Workflow], reads: ExecutionReads, page_size: int, *, show_stats: bool
) -> Counter[str]:
    """One fresh DLQ and emulator: optionally `dlq stats` (printed), then the replay; the
    replay's calls by operation."""
    async with local_emulator(faults=Faults(page_size=page_size)) as emulator:
        copies: list[StepResult] = []
        for n, workflow in enumerate(scenario):
            base = (n + 1) * 1_000_000
            running = _steps(workflow, workflow.in_progress, base)
            emulator.state.register_many([s.step_key for s in running])
            copies += running[: workflow.waiting_copies]
            copies += _steps(workflow, workflow.finished_copies, base + 500_000)
        point_aws_at(aws_environment(transfer_url=emulator.url))
        async with open_sqs() as sqs:
            queues = await create_queue_pair(
                sqs, f"reads-{uuid.uuid4().hex[:8]}", max_receive_count=10
            )
            now = datetime.now(UTC)
            outgoing = [
                OutgoingMessage(
                    body=s.to_body(),
                    # Dead-lettered over the last 25 minutes, as an outage's copies would be.
                    attributes=CopyFacts(
                        "not_found",
                        "ResourceNotFoundException",
                        "-",
                        1,
                        queues.url,
                        "-",
                        dead_lettered_at=now - timedelta(seconds=(i * 37) % 1500),
                    ).attributes(),
                )
                for i, s in enumerate(copies)
            ]
            for start in range(0, len(outgoing), 10):
                assert not await send_messages(sqs, queues.dlq_url, outgoing[start : start + 10])
        scan = ScanConfig(dlq_url=queues.dlq_url, receive_wait_s=0)
        if show_stats:
            stats = await dlq_stats(StatsConfig(scan=scan, reads=reads))
            print_stats(stats, top=10)
            print()
        before = len(emulator.state.calls)
        summary = await replay(ReplayConfig(scan=scan, to="transfer", reads=reads))
        assert summary.ok, summary.to_json()
        return Counter(c.operation for c in emulator.state.calls[before:])


async def _measure(scenario: Sequence[Workflow], page_size: int) -> None:
    with serve_moto("sqs") as moto:
        point_aws_at(aws_environment(sqs_url=moto.url))
        copies = sum(w.waiting_copies + w.finished_copies for w in scenario)
        waiting = sum(w.waiting_copies for w in scenario)
        print(
            f"{copies} copies across {len(scenario)} workflows ({waiting} waiting); executions in "
            f"progress: {', '.join(str(w.in_progress) for w in scenario)}; page size {page_size}\n"
        )
        rows = []
        for n, (name, reads) in enumerate(RULES.items()):
            counts = await _run(scenario, reads, page_size, show_stats=n == 0)
            rows.append((name, counts))
        print(
            f"{'rule':34} {'ListExecutions':>14} {'DescribeExecution':>17} {SEND:>21} {'total':>6}"
        )
        for name, counts in rows:
            print(
                f"{name:34} {counts['ListExecutions']:>14} {counts['DescribeExecution']:>17} "
                f"{counts[SEND]:>21} {counts.total():>6}"
            )


def main(argv: Sequence[str] | None = None) -> None:
    """Runs the measurement and prints it."""
    parser = argparse.ArgumentParser(prog="python -m bench.execution_reads")
    parser.add_argument("--page-size", type=int, default=1000, help="the emulator's page size")
    args = parser.parse_args(argv)
    asyncio.run(_measure(DEFAULT, args.page_size))


if __name__ == "__main__":
    main()
