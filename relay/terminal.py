"""What people and scripts see: the DLQ tools' progress on stderr, their summary tables and
JSON documents on stdout. The commands compute; this module only shows (the demo has a panel of
its own, `relay.demo.panel`).

Everything read from a DLQ or an export file was written by whoever may send to that queue, so
it is shown as data: consoles here parse no markup and no emoji codes (`[/]`, `[link=...]` and
`:x:` print as they are), and `shown` escapes control and format characters (an escape
sequence, a right-to-left override) before a value reaches the terminal. JSON documents are
ASCII (`json.dumps` escapes the rest).
"""

import asyncio
import contextlib
import json
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Final, Protocol

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
from rich.text import Text

from relay.lifecycle import cancel_and_wait
from relay.progress import Snapshot, time_text

PLAIN_PROGRESS_EVERY_S: Final = 2.0

SHOWN_MAX_CHARS: Final = 200
"""A value read from a DLQ is cut to this many characters in a table (an attribute may hold
256 KB); `--json` has them whole."""


# --- what the summaries hold -------------------------------------------------------------------
# The DLQ commands' summaries, as much of each as is shown here. The commands sit above this
# module, so it names the shape it reads rather than importing their classes; mypy checks that
# `relay.dlq`'s summaries have it where `relay.cli` hands them over. Read-only properties where a
# summary computes the value or holds a narrower type.


class ReadEndShown(Protocol):
    """How a DLQ read ended (`relay.dlq.scan.ReadEnd`)."""

    stopped_by: str
    read_error: str | None
    release_errors: int


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

    @property
    def end(self) -> ReadEndShown: ...


class ExportShown(Protocol):
    """What `relay dlq export` wrote (`relay.dlq.export.ExportSummary`)."""

    out: str
    written: int
    by_reason: Counter[str]
    write_error: str | None
    saved: bool

    @property
    def end(self) -> ReadEndShown: ...


class ReplayShown(Protocol):
    """What `relay replay` did (`relay.dlq.summary.ReplaySummary`)."""

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

    @property
    def allowed_by(self) -> Mapping[str, str]: ...
    @property
    def abandoned(self) -> int: ...
    @property
    def unchecked_destinations(self) -> Sequence[str]: ...
    @property
    def end(self) -> ReadEndShown: ...


@contextlib.asynccontextmanager
async def show_progress(label: str, snapshot: Callable[[], Snapshot]) -> AsyncIterator[None]:
    """Progress on stderr: a live bar on a terminal, otherwise a plain line every few seconds
    and a last one at the end."""
    console = Console(stderr=True, highlight=False, markup=False, emoji=False)
    show = _live if console.is_terminal else _plain
    task = asyncio.create_task(show(console, label, snapshot), name="progress")
    try:
        yield
    finally:
        await cancel_and_wait([task])
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
        TextColumn("{task.fields[detail]}", markup=False),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(label, total=None, detail="")
        # Runs until the command ends (`show_progress` cancels it).
        while True:
            done, total, detail = snapshot()
            progress.update(task, completed=done, total=total, detail=detail)
            await asyncio.sleep(0.1)


def shown(value: object) -> Text:
    """A value read from a DLQ or an export file as literal text for a table or a line: no
    markup, control and format characters escaped (`\\x1b`, `\\u202e`), cut to a readable length."""
    text = str(value)
    if len(text) > SHOWN_MAX_CHARS:
        text = text[:SHOWN_MAX_CHARS] + "…"
    if not text.isprintable():
        # unicode_escape also writes lone surrogates, which no terminal encoding can carry.
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
        )
    return Text(text)


def _console() -> Console:
    """stdout, for summaries: what it prints is data, so no markup, emoji codes or highlighting."""
    return Console(highlight=False, markup=False, emoji=False)


def print_json(document: Mapping[str, Any]) -> None:
    """One JSON object on one line of stdout (ASCII: any other character is escaped)."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def ending_text(end: ReadEndShown) -> Text:
    """How the reading ended, in one line."""
    text = Text.assemble("read until: ", shown(end.stopped_by))
    if end.read_error:
        text.append_text(Text.assemble("; receive failed: ", shown(end.read_error)))
    if end.release_errors:
        text.append(
            f"; {end.release_errors} message(s) could not be made visible at once "
            "(back after their visibility timeout)"
        )
    return text


def print_stats(stats: StatsShown, top: int) -> None:
    """`relay dlq stats`: counts by reason and code, top workflows, the time span."""
    console = _console()
    console.print(
        Text.assemble("DLQ ", shown(stats.dlq_url), f": {stats.messages} message(s)"),
        soft_wrap=True,
    )
    table = Table()
    table.add_column("reason")
    table.add_column("error code")
    table.add_column("messages", justify="right")
    for (reason, code), count in sorted(
        stats.by_error_code.items(), key=lambda item: (-stats.by_reason[item[0][0]], item[0])
    ):
        table.add_row(shown(reason), shown(code), str(count))
    table.add_section()
    table.add_row("total", "", str(stats.messages))
    console.print(table)
    if stats.by_workflow or stats.without_workflow:
        workflows = Table(
            title=Text(f"Top workflows ({len(stats.by_workflow)} in all)"), title_justify="left"
        )
        workflows.add_column("workflow id")
        workflows.add_column("messages", justify="right")
        for workflow, count in stats.by_workflow.most_common(top):
            workflows.add_row(shown(workflow), str(count))
        if stats.without_workflow:
            workflows.add_row("(not a step result)", str(stats.without_workflow))
        console.print(workflows)
    oldest = time_text(stats.oldest_dead_lettered_at) or "-"
    newest = time_text(stats.newest_dead_lettered_at) or "-"
    console.print(f"dead-lettered from {oldest} to {newest} (unannotated: unknown)", soft_wrap=True)
    if stats.unreadable_dates:
        console.print(_unreadable_dates(stats.unreadable_dates), soft_wrap=True)
    console.print(ending_text(stats.end), soft_wrap=True)


def _unreadable_dates(count: int) -> str:
    return (
        f"{count} message(s) with a relay-dead-lettered-at that is not a readable time "
        "(counted as unknown)"
    )


def print_export(summary: ExportShown) -> None:
    """`relay dlq export`: what was written where (or, when reading did not complete, that the
    file was left as it was)."""
    console = _console()
    reasons = Text(", ").join(
        Text.assemble(shown(r), f" {n}") for r, n in summary.by_reason.most_common()
    ) or Text("none")
    if summary.saved:
        line = Text.assemble(
            f"exported {summary.written} message(s) to ", shown(summary.out), " (", reasons, ")"
        )
    elif summary.write_error is not None:
        line = Text.assemble(
            "cannot write ",
            shown(summary.out),
            ": ",
            shown(summary.write_error),
            "; an existing file is left as it was",
        )
    else:
        line = Text.assemble(
            f"read {summary.written} message(s); ",
            shown(summary.out),
            " not written: reading did not complete (an existing file is left as it was)",
        )
    console.print(line, soft_wrap=True)
    console.print(ending_text(summary.end), soft_wrap=True)


def print_replay(summary: ReplayShown, top: int) -> None:
    """`relay replay`: what was read, selected, replayed and not, by reason and workflow, and
    the queues it went to."""
    console = _console()
    title = Text.assemble("Replay from ", shown(summary.source), " to ", shown(summary.destination))
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
    details = summary.failure_details
    if summary.dry_run:
        would = summary.selected - sum(summary.would_fail_by_reason.values())
        table.add_row("would replay", str(would), "nothing was changed")
        for reason, count in summary.would_fail_by_reason.most_common():
            table.add_row(
                Text.assemble("would fail: ", shown(reason)),
                str(count),
                shown(details.get(reason, "")),
            )
    else:
        table.add_row("replayed", str(summary.replayed), "")
        for reason, count in summary.failed_by_reason.most_common():
            table.add_row(
                Text.assemble("failed: ", shown(reason)), str(count), shown(details.get(reason, ""))
            )
        if summary.abandoned:
            table.add_row("not tried (stopped)", str(summary.abandoned), "left in the DLQ")
        if summary.not_deleted:
            table.add_row("replayed, not deleted", str(summary.not_deleted), "still in the DLQ")
    console.print(table)
    if summary.destinations:
        _print_destinations(console, summary)
    if summary.selected:
        by = Table(
            title=Text("Would replay" if summary.dry_run else "Selected"), title_justify="left"
        )
        by.add_column("reason / workflow")
        by.add_column("messages", justify="right")
        for reason, count in summary.selected_by_reason.most_common():
            by.add_row(shown(reason), str(count))
        by.add_section()
        for workflow, count in summary.selected_by_workflow.most_common(top):
            by.add_row("(not a step result)" if workflow == "-" else shown(workflow), str(count))
        hidden = len(summary.selected_by_workflow) - top
        if hidden > 0:
            by.add_row(f"… {hidden} more workflow(s)", "")
        console.print(by)
    if summary.unreadable_dates:
        console.print(_unreadable_dates(summary.unreadable_dates), soft_wrap=True)
    console.print(ending_text(summary.end), soft_wrap=True)


_ALLOWED_BY: Final = {
    "queue_url": "--queue-url",
    "dead_letter_source": "a source of the DLQ (SQS lists it)",
    "unchecked": "UNCHECKED: the message's relay-source-queue only",
}


def _print_destinations(console: Console, summary: ReplayShown) -> None:
    """Every queue copies went (or would go) to, and what allowed it; unchecked ones stand out."""
    table = Table(title=Text("Destination queues"), title_justify="left")
    table.add_column("queue")
    table.add_column("messages", justify="right")
    table.add_column("allowed by")
    for queue_url, count in summary.destinations.most_common():
        table.add_row(shown(queue_url), str(count), _ALLOWED_BY[summary.allowed_by[queue_url]])
    console.print(table)
    if summary.unchecked_why is not None and summary.unchecked_destinations:
        console.print(
            f"UNCHECKED destinations ({len(summary.unchecked_destinations)}): taken from the "
            f"messages' relay-source-queue as they are, because {summary.unchecked_why}; "
            "check each one, or pass --queue-url",
            soft_wrap=True,
        )
