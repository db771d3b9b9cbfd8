"""What people and scripts see: the DLQ tools' progress on stderr, their summary tables and
JSON documents on stdout, and the demo's live panel and summary. The commands compute; this
module only shows.

Everything read from a DLQ or an export file was written by whoever may send to that queue, so
it is shown as data: consoles here parse no markup and no emoji codes (`[/]`, `[link=...]` and
`:x:` print as they are), and `shown` escapes control and format characters (an escape
sequence, a right-to-left override) before a value reaches the terminal. JSON documents are
ASCII (`json.dumps` escapes the rest).
"""

import asyncio
import collections
import contextlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from relay.lifecycle import cancel_and_wait
from relay.observability import configure_logging
from relay.outcomes import Outcome
from relay.progress import Snapshot, time_text

if TYPE_CHECKING:
    from relay.demo import Accounting, DeadLetters, DemoProgress
    from relay.dlq.export import ExportSummary
    from relay.dlq.replay import ReplaySummary
    from relay.dlq.scan import ReadEnd
    from relay.dlq.stats import DlqStats
    from relay.emulator import EmulatorState
    from relay.sqs import QueuePair
    from relay.worker import WorkerStatus

PLAIN_PROGRESS_EVERY_S: Final = 2.0

SHOWN_MAX_CHARS: Final = 200
"""A value read from a DLQ is cut to this many characters in a table (an attribute may hold
256 KB); `--json` has them whole."""


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


def ending_text(end: "ReadEnd") -> Text:
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


def print_stats(stats: "DlqStats", top: int) -> None:
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


def print_export(summary: "ExportSummary") -> None:
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


def print_replay(summary: "ReplaySummary", top: int) -> None:
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


def _print_destinations(console: Console, summary: "ReplaySummary") -> None:
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


# --- relay demo --------------------------------------------------------------------------------


class RecentRate:
    """Messages per second over the last few seconds."""

    def __init__(self, window_s: float = 3.0) -> None:
        self._window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=256)
        self._samples.append((time.monotonic(), 0))

    def update(self, count: int) -> float:
        """Takes the count now; returns the rate over the window."""
        now = time.monotonic()
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window_s:
            self._samples.popleft()
        first_at, first = self._samples[0]
        return (count - first) / (now - first_at) if now > first_at else 0.0


@contextlib.asynccontextmanager
async def show_demo_progress(
    console: Console, progress: "DemoProgress", status: Callable[[], "WorkerStatus"]
) -> AsyncIterator[None]:
    """A live panel on a terminal, a plain line every two seconds otherwise."""
    rate = RecentRate()
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    interval_s = 0.25 if live else 2.0

    def render() -> RenderableType:
        now = status()
        per_s = rate.update(now.finished)
        if live:
            return _panel(progress, now, per_s)
        return _plain_line(progress, now, per_s)

    def show(renderable: RenderableType) -> None:
        if live:
            live.update(renderable, refresh=True)
        else:
            console.print(renderable, soft_wrap=True)

    async def refresh() -> None:
        # Bounded by count as well as by the run: an hour of refreshes at most.
        for _ in range(int(3600 / interval_s)):
            await asyncio.sleep(interval_s)
            show(render())

    with live or contextlib.nullcontext():
        if live:
            # The worker's rare ERROR lines go through the live display, not across it.
            configure_logging("text", "ERROR", stream=sys.stderr)
        task = asyncio.create_task(refresh(), name="progress")
        try:
            yield
        finally:
            await cancel_and_wait([task])
            progress.finished_at = time.monotonic()
            show(render())
    configure_logging("text", "ERROR", stream=sys.stderr)


def _outcome_text(status: "WorkerStatus") -> str:
    counts = status.counts
    return "  ".join(f"{o.value} {counts[o.value]}" for o in Outcome if counts.get(o.value))


def _plain_line(progress: "DemoProgress", status: "WorkerStatus", per_s: float) -> Text:
    return Text(
        f"{progress.elapsed_s:5.1f}s  sent {progress.sent}/{progress.total}  "
        f"finished {status.finished}  {per_s:.0f} msg/s  in flight {status.in_flight}  "
        f"throttled {status.throttled}  {_outcome_text(status)}"
    )


def _panel(progress: "DemoProgress", status: "WorkerStatus", per_s: float) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    producing = "" if progress.producing else "  (all sent)"
    grid.add_row("sent", f"{progress.sent} / {progress.total}{producing}")
    finished = status.finished
    grid.add_row("finished", ProgressBar(total=progress.total, completed=finished, width=40))
    grid.add_row("", f"{finished}  ·  {per_s:.0f} msg/s")
    grid.add_row("in flight", str(status.in_flight))
    rate = f"  ·  send rate now {status.send_rate:.0f}/s" if status.send_rate else ""
    grid.add_row("throttled", f"{status.throttled} calls{rate}")
    grid.add_row("outcomes", _outcome_text(status) or "-")
    return Group(Text(f"relay demo  {progress.elapsed_s:.1f}s", style="bold"), grid)


def percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def print_demo_summary(
    console: Console,
    status: "WorkerStatus",
    progress: "DemoProgress",
    emulator: "EmulatorState",
    dead: "DeadLetters",
    accounting: "Accounting",
    queues: "QueuePair",
) -> None:
    """The outcome table, callback latency, the DLQ by reason, the next step, the accounting."""
    table = Table(title="outcomes by reason", title_justify="left")
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("messages", justify="right")
    order = {outcome.value: i for i, outcome in enumerate(Outcome)}
    counts = status.by_reason
    for (outcome, reason), count in sorted(counts.items(), key=lambda i: (order[i[0][0]], i[0][1])):
        if count:
            table.add_row(outcome, reason or "-", str(count))
    console.print(table)
    if counts.get((Outcome.RELEASED.value, "")):
        console.print("(released: handed back to SQS for a later receive, then finished)")

    finished = status.finished
    elapsed = max(progress.elapsed_s, 1e-9)
    console.print(f"{finished} messages finished in {elapsed:.1f}s ({finished / elapsed:.0f}/s)")
    latencies = sorted((c.answered_at - c.received_at) * 1000 for c in emulator.calls)
    console.print(
        f"callback latency ({len(latencies)} calls, as the emulator saw them): "
        f"p50 {percentile(latencies, 0.5):.1f} ms  p90 {percentile(latencies, 0.9):.1f} ms  "
        f"p99 {percentile(latencies, 0.99):.1f} ms",
        soft_wrap=True,
    )
    answers = ", ".join(f"{code} {n}" for code, n in sorted(emulator.counts.items()))
    console.print(f"emulator answered: {answers}", soft_wrap=True)
    if emulator.faults.throttle_rps:
        adapted = (
            f"adapted, now {status.send_rate:.0f}/s"
            if status.send_rate
            else "never needed to adapt"
        )
        console.print(
            f"throttled {status.throttled} calls (the emulator allows "
            f"{emulator.faults.throttle_rps:g}/s); the worker's send rate {adapted}",
            soft_wrap=True,
        )

    dlq = Table(title=f"dead-letter queue: {dead.total} messages", title_justify="left")
    dlq.add_column("relay-reason")
    dlq.add_column("messages", justify="right")
    dlq.add_column("example error")
    for reason, count in dead.by_reason.most_common():
        dlq.add_row(reason, str(count), Text(dead.example.get(reason, "")))
    console.print(dlq)
    if dead.of_delivered:
        console.print(
            f"{dead.of_delivered} DLQ cop(ies) of delivered steps: a message received twice "
            "(SQS is at-least-once); not counted as dead-lettered below"
        )
    console.print("next, replay the not_found ones once their executions exist:")
    console.print(f"  relay replay --dlq-url {queues.dlq_url} --reason not_found", soft_wrap=True)
    if progress.send_failed:
        console.print(f"{progress.send_failed} message(s) SQS did not accept", style="bold red")
    console.print(
        accounting.line(), style="bold green" if accounting.balanced else "bold red", soft_wrap=True
    )
