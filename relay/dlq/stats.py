"""`relay dlq stats`: what a DLQ holds, by reason, error code and workflow; changes nothing."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from relay.config.dlq import StatsConfig
from relay.dead_letter import DlqMessage
from relay.dlq.scan import ReadEnd, read_through
from relay.message import step_or_none
from relay.progress import ProgressView, Snapshot, no_progress, time_text


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
    end: ReadEnd = field(default_factory=ReadEnd)

    def add(self, message: DlqMessage) -> None:
        """Counts one message."""
        self.messages += 1
        self.by_reason[message.reason] += 1
        self.by_error_code[(message.reason, message.error_code or "-")] += 1
        step = step_or_none(message.body)
        if step is None:
            self.without_workflow += 1
        else:
            self.by_workflow[step.workflow_id] += 1
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
            "release_errors": self.end.release_errors,
        }


async def dlq_stats(config: StatsConfig, progress: ProgressView = no_progress) -> DlqStats:
    """Reads the whole DLQ, gives every message back, returns the counts."""
    stats = DlqStats(dlq_url=config.scan.dlq_url)

    async def take(message: DlqMessage) -> None:
        stats.add(message)

    def snapshot() -> Snapshot:
        return stats.messages, None, f"{stats.messages} read"

    stats.end = await read_through(config.scan, "dlq stats", take, snapshot, progress)
    return stats
