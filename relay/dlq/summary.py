"""What a `relay replay` did: counts by reason, workflow and destination, and its JSON form."""

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from relay.dlq.destinations import AllowedBy, ReplayFailure, Route
from relay.dlq.scan import ReadEnd
from relay.outcomes import Reason
from relay.progress import Snapshot


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did; `ok` when everything selected was replayed."""

    source: str
    destination: str
    dry_run: bool
    read: int = 0
    selected: int = 0
    replayed: int = 0
    skipped_by_filter: int = 0
    skipped_over_limit: int = 0
    not_deleted: int = 0
    """Replayed, but the DLQ copy could not be deleted: it will be replayed again next time."""
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    failure_details: dict[str, str] = field(default_factory=dict)
    """The first error text seen for each failure reason."""
    selected_by_reason: Counter[str] = field(default_factory=Counter)
    selected_by_workflow: Counter[str] = field(default_factory=Counter)
    replayed_by_reason: Counter[str] = field(default_factory=Counter)
    destinations: Counter[str] = field(default_factory=Counter)
    """Selected messages by the queue their copy goes (or, in a dry run, would go) to."""
    allowed_by: dict[str, AllowedBy] = field(default_factory=dict)
    unchecked_why: str | None = None
    would_fail_by_reason: Counter[str] = field(default_factory=Counter)
    """Dry run: selected messages a replay would fail before sending (no allowed destination)."""
    unreadable_dates: int = 0
    """Messages read whose relay-dead-lettered-at is not a readable time (aged as if absent)."""
    interrupted: bool = False
    end: ReadEnd = field(default_factory=ReadEnd)
    duration_s: float = 0.0

    @property
    def failed(self) -> int:
        """Selected messages whose replay failed (they stay in the DLQ)."""
        return sum(self.failed_by_reason.values())

    @property
    def abandoned(self) -> int:
        """Selected messages not tried because the command was stopped (they stay in the DLQ)."""
        return 0 if self.dry_run else self.selected - self.replayed - self.failed

    @property
    def ok(self) -> bool:
        """Everything selected was replayed and taken off the DLQ."""
        return not (self.failed or self.abandoned or self.not_deleted or self.end.read_error)

    @property
    def unchecked_destinations(self) -> list[str]:
        """Queues sent to on a message's word alone."""
        return [url for url, by in self.allowed_by.items() if by is AllowedBy.UNCHECKED]

    def fail(self, reason: Reason | ReplayFailure, detail: str) -> None:
        """Counts one failed replay."""
        self.failed_by_reason[reason] += 1
        self.failure_details.setdefault(reason, detail[:300])

    def would_fail(self, reason: Reason | ReplayFailure, detail: str) -> None:
        """Counts one replay a dry run found would fail."""
        self.would_fail_by_reason[reason] += 1
        self.failure_details.setdefault(reason, detail[:300])

    def route(self, route: Route) -> None:
        """Counts one copy going to a queue."""
        self.destinations[route.queue_url] += 1
        self.allowed_by[route.queue_url] = route.allowed_by

    def progress(self) -> Snapshot:
        """For the progress display."""
        done = self.replayed + self.failed
        line = (
            f"{self.read} read, {self.selected} selected, {self.replayed} replayed, "
            f"{self.failed} failed, {self.skipped_by_filter} skipped"
        )
        if self.dry_run:
            return self.selected, None, line
        return done, self.selected or None, line

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (`--json`): one object."""
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "read": self.read,
            "selected": self.selected,
            "replayed": self.replayed,
            "skipped_by_filter": self.skipped_by_filter,
            "skipped_over_limit": self.skipped_over_limit,
            "failed": self.failed,
            "failed_by_reason": dict(self.failed_by_reason.most_common()),
            "failure_details": self.failure_details,
            "abandoned": self.abandoned,
            "not_deleted": self.not_deleted,
            "selected_by_reason": dict(self.selected_by_reason.most_common()),
            "selected_by_workflow": dict(self.selected_by_workflow.most_common()),
            "replayed_by_reason": dict(self.replayed_by_reason.most_common()),
            "would_fail_by_reason": dict(self.would_fail_by_reason.most_common()),
            "destinations": [
                {"queue_url": url, "messages": n, "allowed_by": self.allowed_by[url].value}
                for url, n in self.destinations.most_common()
            ],
            "unchecked_destinations": self.unchecked_destinations,
            "unchecked_why": self.unchecked_why,
            "unreadable_dates": self.unreadable_dates,
            "interrupted": self.interrupted,
            **self.end.to_json(),
            "duration_s": round(self.duration_s, 3),
        }
