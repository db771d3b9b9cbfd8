"""What people and scripts see of the DLQ tools: progress on stderr, summary tables and JSON
documents on stdout. The commands compute; this module only shows.
"""

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from relay.dead_letter import iso_utc

if TYPE_CHECKING:
    from relay.dlq.export import ExportSummary
    from relay.dlq.replay import ReplaySummary
    from relay.dlq.scan import ReadEnd
    from relay.dlq.stats import DlqStats

PLAIN_PROGRESS_EVERY_S: Final = 2.0

Snapshot = tuple[int, int | None, str]
"""(done, total or None, a line of counts) for the progress display."""

ProgressView = Callable[[str, Callable[[], Snapshot]], AbstractAsyncContextManager[None]]
"""Shows a command's progress while open: a label and a function that reads its counts."""


@contextlib.asynccontextmanager
async def no_progress(label: str, snapshot: Callable[[], Snapshot]) -> AsyncIterator[None]:
    """Shows nothing (for callers that are not a person at a terminal)."""
    yield


@contextlib.asynccontextmanager
async def show_progress(label: str, snapshot: Callable[[], Snapshot]) -> AsyncIterator[None]:
    """Progress on stderr: a live bar on a terminal, otherwise a plain line every few seconds
    and a last one at the end."""
    console = Console(stderr=True, highlight=False)
    show = _live if console.is_terminal else _plain
    task = asyncio.create_task(show(console, label, snapshot), name="progress")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if not console.is_terminal:
            console.print(f"{label}: {snapshot()[2]}", soft_wrap=True)


async def _plain(console: Console, label: str, snapshot: Callable[[], Snapshot]) -> None:
    last = ""
    # Runs until the command ends (`show_progress` cancels it).
    while True:
        await asyncio.sleep(PLAIN_PROGRESS_EVERY_S)
        line = snapshot()[2]
        if line != last:
            console.print(f"{label}: {line}", soft_wrap=True)
            last = line


async def _live(console: Console, label: str, snapshot: Callable[[], Snapshot]) -> None:
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None, detail="")
        # Runs until the command ends (`show_progress` cancels it).
        while True:
            done, total, detail = snapshot()
            progress.update(task, completed=done, total=total, detail=detail)
            await asyncio.sleep(0.1)


def print_json(document: Mapping[str, Any]) -> None:
    """One JSON object on one line of stdout."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def time_text(moment: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC, or None."""
    return None if moment is None else iso_utc(datetime.fromtimestamp(moment, UTC))


def ending_text(end: "ReadEnd") -> str:
    """How the reading ended, in one line."""
    text = f"read until: {end.stopped_by}"
    if end.read_error:
        text += f"; receive failed: {end.read_error}"
    if end.release_errors:
        text += (
            f"; {end.release_errors} message(s) could not be made visible at once "
            "(back after their visibility timeout)"
        )
    return text


def print_stats(stats: "DlqStats", top: int) -> None:
    """`relay dlq stats`: counts by reason and code, top workflows, the time span."""
    console = Console(highlight=False)
    console.print(f"DLQ {stats.dlq_url}: {stats.messages} message(s)", soft_wrap=True)
    table = Table()
    table.add_column("reason")
    table.add_column("error code")
    table.add_column("messages", justify="right")
    for (reason, code), count in sorted(
        stats.by_error_code.items(), key=lambda item: (-stats.by_reason[item[0][0]], item[0])
    ):
        table.add_row(reason, code, str(count))
    table.add_section()
    table.add_row("total", "", str(stats.messages))
    console.print(table)
    if stats.by_workflow or stats.without_workflow:
        workflows = Table(
            title=f"Top workflows ({len(stats.by_workflow)} in all)", title_justify="left"
        )
        workflows.add_column("workflow id")
        workflows.add_column("messages", justify="right")
        for workflow, count in stats.by_workflow.most_common(top):
            workflows.add_row(workflow, str(count))
        if stats.without_workflow:
            workflows.add_row("(not a step result)", str(stats.without_workflow))
        console.print(workflows)
    oldest = time_text(stats.oldest_dead_lettered_at) or "-"
    newest = time_text(stats.newest_dead_lettered_at) or "-"
    console.print(f"dead-lettered from {oldest} to {newest} (unannotated: unknown)", soft_wrap=True)
    console.print(ending_text(stats.end), soft_wrap=True)


def print_export(summary: "ExportSummary") -> None:
    """`relay dlq export`: what was written where."""
    console = Console(highlight=False)
    reasons = ", ".join(f"{r} {n}" for r, n in summary.by_reason.most_common()) or "none"
    console.print(
        f"exported {summary.written} message(s) to {summary.out} ({reasons})", soft_wrap=True
    )
    console.print(ending_text(summary.end), soft_wrap=True)


def print_replay(summary: "ReplaySummary", top: int) -> None:
    """`relay replay`: what was read, selected, replayed and not, by reason and workflow."""
    console = Console(highlight=False)
    title = f"Replay from {summary.source} to {summary.destination}"
    console.print(title + (" (dry run)" if summary.dry_run else ""), soft_wrap=True)
    table = Table()
    table.add_column("")
    table.add_column("messages", justify="right")
    table.add_column("detail")
    table.add_row("read", str(summary.read), "")
    table.add_row("skipped by filter", str(summary.skipped_by_filter), "")
    if summary.skipped_over_limit:
        table.add_row("skipped, over --max-messages", str(summary.skipped_over_limit), "")
    table.add_row("selected", str(summary.selected), "")
    if summary.dry_run:
        table.add_row("would replay", str(summary.selected), "nothing was changed")
    else:
        table.add_row("replayed", str(summary.replayed), "")
        for reason, count in summary.failed_by_reason.most_common():
            table.add_row(f"failed: {reason}", str(count), summary.failure_details.get(reason, ""))
        if summary.abandoned:
            table.add_row("not tried (stopped)", str(summary.abandoned), "left in the DLQ")
        if summary.not_deleted:
            table.add_row("replayed, not deleted", str(summary.not_deleted), "still in the DLQ")
    console.print(table)
    if summary.selected:
        by = Table(title="Would replay" if summary.dry_run else "Selected", title_justify="left")
        by.add_column("reason / workflow")
        by.add_column("messages", justify="right")
        for reason, count in summary.selected_by_reason.most_common():
            by.add_row(reason, str(count))
        by.add_section()
        for workflow, count in summary.selected_by_workflow.most_common(top):
            by.add_row("(not a step result)" if workflow == "-" else workflow, str(count))
        hidden = len(summary.selected_by_workflow) - top
        if hidden > 0:
            by.add_row(f"… {hidden} more workflow(s)", "")
        console.print(by)
    console.print(ending_text(summary.end), soft_wrap=True)
