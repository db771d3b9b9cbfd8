"""`relay dlq purge`: delete the DLQ copies an operator has given up on, after writing every one
of them to an export file (DESIGN §11).

Selects like `relay replay` (`--reason`, `--error-code`, `--workflow-id`, age,
`--execution-state`, `--max-messages`). The DLQ is read once through, holding every copy
selected; each is written to the export file as it is selected (the export's own rules: a
temporary file beside `--out`, mode 0600, never through a symbolic link). Only when the reading
ended whole (no interruption, no read or write error) is the file put in place, on disk, and
only then is each copy in it deleted. Anything less deletes nothing and leaves an existing file
as it was; a delete SQS refuses leaves that copy in the DLQ (and in the file).
"""

import asyncio
import contextlib
import functools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from relay.config.dlq import PurgeConfig
from relay.dead_letter import DlqMessage
from relay.dlq.export import ExportFile, ExportWriteFailed, open_export, to_record
from relay.dlq.scan import RECEIVERS, DlqReader, ReadEnd
from relay.dlq.selection import NOT_A_STEP_RESULT, ExecutionTally, Judging, in_states, selects
from relay.executions import Verdict, open_execution_states
from relay.lifecycle import Shutdown, handling_signals
from relay.message import step_or_none
from relay.progress import ProgressView, Snapshot, no_progress
from relay.sqs import check_queue, open_sqs


@dataclass(slots=True)
class PurgeSummary:
    """What a purge selected, wrote and deleted; `ok` when every copy selected was deleted
    (a dry run: when the DLQ was read whole)."""

    dlq_url: str
    out: str | None
    dry_run: bool
    read: int = 0
    skipped_by_filter: int = 0
    skipped_over_limit: int = 0
    selected: int = 0
    written: int = 0
    saved: bool = False
    """The export file is in place: the copies selected are in it, on disk."""
    deleted: int = 0
    delete_failed: int = 0
    not_judged: int = 0
    """Copies whose execution was still being read when the command stopped."""
    write_error: str | None = None
    selected_by_reason: Counter[str] = field(default_factory=Counter)
    selected_by_workflow: Counter[str] = field(default_factory=Counter)
    executions: ExecutionTally | None = None
    """With `--execution-state`: every copy the other filters chose, by its execution's state."""
    unreadable_dates: int = 0
    end: ReadEnd = field(default_factory=ReadEnd)
    duration_s: float = 0.0

    @property
    def complete(self) -> bool:
        """Read whole (or to a limit the user set) and written, with no error or stop."""
        return self.end.complete and self.write_error is None and not self.not_judged

    @property
    def kept(self) -> int:
        """Copies selected that are still in the DLQ."""
        return 0 if self.dry_run else self.selected - self.deleted

    @property
    def ok(self) -> bool:
        """Everything selected was deleted (a dry run: the reading was whole)."""
        return self.complete and (self.dry_run or self.deleted == self.selected)

    def progress(self) -> Snapshot:
        """For the progress display."""
        line = (
            f"{self.read} read, {self.selected} selected, {self.written} written, "
            f"{self.deleted} deleted"
        )
        return self.read, None, line

    def to_json(self, top: int) -> dict[str, Any]:
        """The machine-readable form (`--json`)."""
        return {
            "dlq_url": self.dlq_url,
            "out": self.out,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "complete": self.complete,
            "read": self.read,
            "skipped_by_filter": self.skipped_by_filter,
            "skipped_over_limit": self.skipped_over_limit,
            "selected": self.selected,
            "written": self.written,
            "saved": self.saved,
            "deleted": self.deleted,
            "delete_failed": self.delete_failed,
            "kept": self.kept,
            "not_judged": self.not_judged,
            "write_error": self.write_error,
            "selected_by_reason": dict(self.selected_by_reason.most_common()),
            "selected_by_workflow": dict(self.selected_by_workflow.most_common(top)),
            "executions": None if self.executions is None else self.executions.to_json(top),
            "unreadable_dates": self.unreadable_dates,
            **self.end.to_json(),
            "duration_s": round(self.duration_s, 3),
        }


class Purger:
    """Selects copies as they are read; holds the selected ones and writes each to the file."""

    def __init__(
        self,
        config: PurgeConfig,
        summary: PurgeSummary,
        reader: DlqReader,
        judging: Judging,
        export: ExportFile | None,
    ) -> None:
        self.config = config
        self.summary = summary
        self.reader = reader
        self.judging = judging
        self.export = export
        self.chosen: list[str] = []
        """The message ids selected, written and held, in the order they were selected."""
        self.started_at = time.time()

    def wants_more(self) -> bool:
        """Whether reading should go on: fewer than `--max-messages` selected so far."""
        return self.summary.selected < self.config.max_messages

    async def offer(self, message: DlqMessage) -> None:
        """Takes one message read: the filters other than the execution's state first."""
        summary = self.summary
        summary.read += 1
        summary.unreadable_dates += message.unreadable_date
        step = step_or_none(message.body)
        workflow_id = step.workflow_id if step is not None else None
        if not selects(self.config.filters, message, workflow_id, self.started_at):
            summary.skipped_by_filter += 1
            await self.reader.give_back(message.message_id)
            return
        then = functools.partial(self._judged, message, workflow_id)
        if not self.config.filters.execution_states or step is None:
            await then(await self.judging.states.state(step))
            return
        await self.judging.judge(step, len(message.body), then)

    async def _judged(self, message: DlqMessage, workflow_id: str | None, verdict: Verdict) -> None:
        summary = self.summary
        if summary.executions is not None:
            summary.executions.add(workflow_id, verdict, message.age_s(self.started_at))
        if not in_states(self.config.filters.execution_states, verdict):
            summary.skipped_by_filter += 1
            await self.reader.give_back(message.message_id)
            return
        if not self.wants_more():
            summary.skipped_over_limit += 1
            await self.reader.give_back(message.message_id)
            return
        summary.selected += 1
        summary.selected_by_reason[message.reason] += 1
        summary.selected_by_workflow[workflow_id or NOT_A_STEP_RESULT] += 1
        if self.export is None or summary.write_error is not None:
            await self.reader.give_back(message.message_id)
            return
        try:
            self.export.file.write(json.dumps(to_record(message)) + "\n")
        except OSError as exc:
            summary.write_error = f"{exc.strerror or exc}"
            await self.reader.give_back(message.message_id)
            return
        summary.written += 1
        self.chosen.append(message.message_id)  # held (not given back) until it is deleted

    async def delete_chosen(self) -> None:
        """Puts the file in place, then deletes every copy in it."""
        summary = self.summary
        if self.export is None or not summary.complete:
            return
        try:
            self.export.save()
        except ExportWriteFailed as exc:
            summary.write_error = str(exc)
            return
        summary.saved = True
        deleted = await asyncio.gather(*(self.reader.delete(mid) for mid in self.chosen))
        await self.reader.queue.drain()
        summary.deleted = sum(deleted)
        summary.delete_failed = len(deleted) - summary.deleted


async def dlq_purge(config: PurgeConfig, progress: ProgressView = no_progress) -> PurgeSummary:
    """Selects, writes, then deletes; returns the summary. ConfigError (exit 2) for a DLQ that
    does not exist or an `--out` that cannot be written, before anything is read."""
    started = time.monotonic()
    summary = PurgeSummary(dlq_url=config.scan.dlq_url, out=config.out, dry_run=config.dry_run)
    if config.filters.execution_states:
        summary.executions = ExecutionTally()
    shutdown = Shutdown()
    async with contextlib.AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(open_sqs(max_pool_connections=RECEIVERS + 16))
        await check_queue(sqs, config.scan.dlq_url, "DLQ")
        export = None
        if not config.dry_run:
            assert config.out is not None  # PurgeConfig requires it without --dry-run
            export = stack.enter_context(open_export(config.out))
        states = await stack.enter_async_context(
            open_execution_states(config.reads, enabled=bool(config.filters.execution_states))
        )
        stack.enter_context(handling_signals(shutdown))
        reader = await stack.enter_async_context(DlqReader(sqs, config.scan, shutdown).holding())
        purger = Purger(config, summary, reader, Judging(states), export)
        async with progress("dlq purge", summary.progress):
            try:
                await reader.scan(purger.offer, more=purger.wants_more)
                await purger.judging.finish(shutdown.requested)
            finally:
                await purger.judging.cancel()  # only after an error is anything left to cancel
                summary.not_judged = purger.judging.cancelled
                summary.end = reader.end
            await purger.delete_chosen()
        if summary.executions is not None:
            summary.executions.read_from(states)
    summary.duration_s = time.monotonic() - started
    return summary
