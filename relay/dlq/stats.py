"""`relay dlq stats`: what a DLQ holds, by reason, error code and workflow, and which copies can
still help (their execution still waits, DESIGN §11); changes nothing.

The whole DLQ is read first, so each workflow's copies are counted before any execution is read:
Transfer Family is asked the cheapest way for each (`relay.executions`).
"""

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from relay.config.dlq import StatsConfig
from relay.dead_letter import DlqMessage
from relay.dlq.scan import ReadEnd, read_through
from relay.dlq.selection import ExecutionTally, in_states
from relay.executions import ExecutionStates, Verdict, open_execution_states
from relay.message import StepResult, step_or_none
from relay.progress import ProgressView, Snapshot, no_progress, time_text

BATCH: Final = 1000
"""Copies whose state is asked at once (the reads themselves are bounded apart)."""


@dataclass(frozen=True, slots=True)
class Copy:
    """What `dlq stats` keeps of a message read: no body."""

    reason: str
    error_code: str | None
    step: StepResult | None
    dead_lettered_at: float | None
    unreadable_date: bool
    age_s: float

    @classmethod
    def of(cls, message: DlqMessage, now: float) -> "Copy":
        """The facts of one message."""
        return cls(
            reason=message.reason,
            error_code=message.error_code,
            step=step_or_none(message.body),
            dead_lettered_at=message.dead_lettered_at,
            unreadable_date=message.unreadable_date,
            age_s=message.age_s(now),
        )


@dataclass(slots=True)
class DlqStats:
    """What a DLQ holds, by reason, error code and workflow."""

    dlq_url: str
    messages: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_error_code: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_workflow: Counter[str] = field(default_factory=Counter)
    without_workflow: int = 0
    oldest_dead_lettered_at: float | None = None
    newest_dead_lettered_at: float | None = None
    unreadable_dates: int = 0
    """Messages whose relay-dead-lettered-at is not a readable time (left out of the span)."""
    executions: ExecutionTally = field(default_factory=ExecutionTally)
    skipped_by_execution_state: int = 0
    """Messages read but not counted: their execution is not in a state `--execution-state`
    asked for."""
    end: ReadEnd = field(default_factory=ReadEnd)

    def add(self, message: Copy, verdict: Verdict) -> None:
        """Counts one message."""
        self.messages += 1
        self.by_reason[message.reason] += 1
        self.by_error_code[(message.reason, message.error_code or "-")] += 1
        step = message.step
        if step is None:
            self.without_workflow += 1
        else:
            self.by_workflow[step.workflow_id] += 1
        self.executions.add(step.workflow_id if step else None, verdict, message.age_s)
        moment = message.dead_lettered_at
        if message.unreadable_date:
            self.unreadable_dates += 1
        if moment is not None:
            oldest, newest = self.oldest_dead_lettered_at, self.newest_dead_lettered_at
            self.oldest_dead_lettered_at = moment if oldest is None else min(oldest, moment)
            self.newest_dead_lettered_at = moment if newest is None else max(newest, moment)

    @property
    def complete(self) -> bool:
        """Read to the end (or to a limit the user set), with no error or interruption."""
        return self.end.complete

    def to_json(self, top: int) -> dict[str, Any]:
        """The machine-readable form (`--json`)."""
        return {
            "dlq_url": self.dlq_url,
            "messages": self.messages,
            "complete": self.complete,
            "stopped_by": self.end.stopped_by,
            "read_error": self.end.read_error,
            "by_reason": dict(self.by_reason.most_common()),
            "by_error_code": [
                {"reason": reason, "error_code": None if code == "-" else code, "messages": n}
                for (reason, code), n in self.by_error_code.most_common()
            ],
            "workflows": len(self.by_workflow),
            "top_workflows": [
                {"workflow_id": workflow, "messages": n}
                for workflow, n in self.by_workflow.most_common(top)
            ],
            "without_workflow": self.without_workflow,
            "oldest_dead_lettered_at": time_text(self.oldest_dead_lettered_at),
            "newest_dead_lettered_at": time_text(self.newest_dead_lettered_at),
            "unreadable_dates": self.unreadable_dates,
            "executions": self.executions.to_json(top),
            "skipped_by_execution_state": self.skipped_by_execution_state,
            "release_errors": self.end.release_errors,
        }


async def dlq_stats(config: StatsConfig, progress: ProgressView = no_progress) -> DlqStats:
    """Reads the whole DLQ, gives every message back, then asks Transfer Family which copies'
    executions still wait; returns the counts."""
    stats = DlqStats(dlq_url=config.scan.dlq_url)
    started_at = time.time()
    copies: list[Copy] = []

    async def take(message: DlqMessage) -> None:
        copies.append(Copy.of(message, started_at))

    def snapshot() -> Snapshot:
        return len(copies), None, f"{len(copies)} read"

    stats.end = await read_through(config.scan, "dlq stats", take, snapshot, progress)
    interrupted = stats.end.stopped_by.startswith("signal")
    async with open_execution_states(
        config.reads, enabled=config.executions and not interrupted
    ) as states:
        judged = 0

        def checking() -> Snapshot:
            return judged, len(copies), f"{judged} of {len(copies)} checked"

        states.expect([c.step for c in copies if c.step is not None], complete=True)
        async with progress("executions", checking):
            for start in range(0, len(copies), BATCH):
                batch = copies[start : start + BATCH]
                for copy, verdict in zip(batch, await _states(states, batch), strict=True):
                    if in_states(config.execution_states, verdict):
                        stats.add(copy, verdict)
                    else:
                        stats.skipped_by_execution_state += 1
                judged += len(batch)
        stats.executions.read_from(states)
    return stats


async def _states(states: ExecutionStates, copies: Sequence[Copy]) -> list[Verdict]:
    return list(await asyncio.gather(*(states.state(c.step) for c in copies)))
