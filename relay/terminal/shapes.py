"""The DLQ commands' summaries, as much of each as the terminal shows. The commands sit above
the terminal, so it names the shape it reads rather than importing their classes; mypy checks
that `relay.dlq`'s summaries have it where `relay.cli` hands them over. Read-only properties
where a summary computes the value or holds a narrower type."""

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Protocol


class ReadEndShown(Protocol):
    """How a DLQ read ended (`relay.dlq.scan.ReadEnd`)."""

    stopped_by: str
    read_error: str | None
    release_errors: int


class TallyShown(Protocol):
    """Copies by their execution's state (`relay.dlq.selection.ExecutionTally`)."""

    checked: bool
    by_state: Counter[str]
    unknown_why: Counter[str]
    oldest_waiting_s: dict[str, float]
    notes: list[str]
    reads: Counter[str]
    throttled: Counter[str]

    @property
    def oldest_waiting_age_s(self) -> float | None: ...
    def workflows(self, top: int) -> list[tuple[str, Counter[str]]]: ...


class StatsShown(Protocol):
    """What `relay dlq stats` counted (`relay.dlq.stats.DlqStats`)."""

    dlq_url: str
    messages: int
    by_reason: Counter[str]
    by_error_code: Counter[tuple[str, str]]
    by_workflow: Counter[str]
    without_workflow: int
    oldest_dead_lettered_at: float | None
    newest_dead_lettered_at: float | None
    unreadable_dates: int
    skipped_by_execution_state: int

    @property
    def executions(self) -> TallyShown: ...
    @property
    def end(self) -> ReadEndShown: ...


class ExportShown(Protocol):
    """What `relay dlq export` wrote (`relay.dlq.export.ExportSummary`)."""

    out: str
    written: int
    by_reason: Counter[str]
    write_error: str | None
    saved: bool
    skipped_by_execution_state: int
    not_judged: int

    @property
    def executions(self) -> TallyShown | None: ...
    @property
    def end(self) -> ReadEndShown: ...


class PurgeShown(Protocol):
    """What `relay dlq purge` did (`relay.dlq.purge.PurgeSummary`)."""

    dlq_url: str
    out: str | None
    dry_run: bool
    read: int
    skipped_by_filter: int
    skipped_over_limit: int
    selected: int
    written: int
    saved: bool
    deleted: int
    delete_failed: int
    not_judged: int
    write_error: str | None
    selected_by_reason: Counter[str]
    selected_by_workflow: Counter[str]
    unreadable_dates: int

    @property
    def executions(self) -> TallyShown | None: ...
    @property
    def complete(self) -> bool: ...
    @property
    def kept(self) -> int: ...
    @property
    def end(self) -> ReadEndShown: ...


class ReplayShown(Protocol):
    """What `relay replay` did (`relay.dlq.replay_summary.ReplaySummary`)."""

    source: str
    destination: str
    dry_run: bool
    read: int
    selected: int
    replayed: int
    skipped_by_filter: int
    skipped_over_limit: int
    not_deleted: int
    failed_by_reason: Counter[str]
    failure_details: dict[str, str]
    selected_by_reason: Counter[str]
    selected_by_workflow: Counter[str]
    destinations: Counter[str]
    unchecked_why: str | None
    would_fail_by_reason: Counter[str]
    unreadable_dates: int
    skipped_finished: int
    selected_by_state: Counter[str]
    replayed_by_state: Counter[str]
    not_judged: int

    @property
    def executions(self) -> TallyShown: ...
    @property
    def allowed_by(self) -> Mapping[str, str]: ...
    @property
    def abandoned(self) -> int: ...
    @property
    def unchecked_destinations(self) -> Sequence[str]: ...
    @property
    def end(self) -> ReadEndShown: ...
