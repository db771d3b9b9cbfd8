"""The DLQ commands' summaries on stdout: `dlq stats`, `dlq export`, `dlq purge`, `replay`."""

from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from relay.progress import time_text
from relay.terminal.executions import counts_text, print_tally, reads_text
from relay.terminal.shapes import ExportShown, PurgeShown, ReplayShown, StatsShown
from relay.terminal.text import ending_text, shown, summary_console, unreadable_dates


def print_stats(stats: StatsShown, top: int) -> None:
    """`relay dlq stats`: counts by reason and code, top workflows, the time span."""
    console = summary_console()
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
        console.print(unreadable_dates(stats.unreadable_dates), soft_wrap=True)
    if stats.skipped_by_execution_state:
        console.print(
            f"{stats.skipped_by_execution_state} message(s) read but not counted: their "
            "execution is in none of the --execution-state asked for",
            soft_wrap=True,
        )
    print_tally(console, stats.executions, top, title="Which copies can still help")
    console.print(ending_text(stats.end), soft_wrap=True)


def print_export(summary: ExportShown) -> None:
    """`relay dlq export`: what was written where (or, when reading did not complete, that the
    file was left as it was)."""
    console = summary_console()
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
    if summary.executions is not None:
        console.print(
            f"by execution: {counts_text(summary.executions.by_state)}; "
            f"{summary.skipped_by_execution_state} not in the --execution-state asked for "
            "(not written)",
            soft_wrap=True,
        )
        for note in summary.executions.notes:
            console.print(Text.assemble("note: ", shown(note)), soft_wrap=True)
        console.print(reads_text(summary.executions), soft_wrap=True)
    if summary.not_judged:
        console.print(f"{summary.not_judged} message(s) not judged: stopped", soft_wrap=True)
    console.print(ending_text(summary.end), soft_wrap=True)


def print_replay(summary: ReplayShown, top: int) -> None:
    """`relay replay`: what was read, selected, replayed and not, by reason and workflow, and
    the queues it went to."""
    console = summary_console()
    title = Text.assemble("Replay from ", shown(summary.source), " to ", shown(summary.destination))
    console.print(title + (" (dry run)" if summary.dry_run else ""), soft_wrap=True)
    table = Table()
    table.add_column("")
    table.add_column("messages", justify="right")
    table.add_column("detail")
    table.add_row("read", str(summary.read), "")
    table.add_row("skipped by filter", str(summary.skipped_by_filter), "")
    if summary.skipped_finished:
        table.add_row(
            "skipped: execution_finished",
            str(summary.skipped_finished),
            "no callback can help them: left in the DLQ",
        )
    if summary.skipped_over_limit:
        table.add_row("skipped, over --max-messages", str(summary.skipped_over_limit), "")
    table.add_row("selected", str(summary.selected), counts_text(summary.selected_by_state))
    unchecked = summary.selected_by_state["unknown"]
    if unchecked:
        why = ", ".join(
            f"{w.replace('_', ' ')} {n}" for w, n in summary.executions.unknown_why.most_common()
        )
        table.add_row("  unchecked", str(unchecked), f"execution unknown, replayed anyway: {why}")
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
        table.add_row("replayed", str(summary.replayed), counts_text(summary.replayed_by_state))
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
        console.print(unreadable_dates(summary.unreadable_dates), soft_wrap=True)
    if summary.executions.checked:
        for note in summary.executions.notes:
            console.print(Text.assemble("note: ", shown(note)), soft_wrap=True)
        console.print(reads_text(summary.executions), soft_wrap=True)
    else:
        console.print("executions not checked (--no-executions): every copy unchecked")
    console.print(ending_text(summary.end), soft_wrap=True)


def print_purge(summary: PurgeShown, top: int) -> None:
    """`relay dlq purge`: what was selected, written and deleted, and what stays."""
    console = summary_console()
    title = Text.assemble("Purge of ", shown(summary.dlq_url))
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
        table.add_row("would delete", str(summary.selected), "nothing was written or deleted")
    else:
        out = shown(summary.out or "")
        table.add_row(
            "written", str(summary.written), Text.assemble("to ", out) if summary.saved else ""
        )
        table.add_row("deleted", str(summary.deleted), "")
        if summary.kept:
            table.add_row("kept in the DLQ", str(summary.kept), _kept_why(summary))
    console.print(table)
    if summary.selected:
        by = Table(title=Text("Selected"), title_justify="left")
        by.add_column("reason / workflow")
        by.add_column("messages", justify="right")
        for reason, count in summary.selected_by_reason.most_common():
            by.add_row(shown(reason), str(count))
        by.add_section()
        for workflow, count in summary.selected_by_workflow.most_common(top):
            by.add_row("(not a step result)" if workflow == "-" else shown(workflow), str(count))
        console.print(by)
    if summary.executions is not None:
        print_tally(console, summary.executions, top, title="Copies the other filters chose")
    if summary.unreadable_dates:
        console.print(unreadable_dates(summary.unreadable_dates), soft_wrap=True)
    console.print(ending_text(summary.end), soft_wrap=True)


def _kept_why(summary: PurgeShown) -> Text:
    if summary.write_error is not None:
        return Text.assemble("nothing deleted: ", shown(summary.write_error))
    if not summary.complete:
        return Text(
            "nothing deleted: the reading did not complete (an existing file is left as it was)"
        )
    return Text(f"{summary.delete_failed} delete(s) refused by SQS; they are in the file too")


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
