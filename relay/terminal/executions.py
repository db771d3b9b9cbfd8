"""Which copies can still help (DESIGN §11), as the DLQ commands' summaries show it: copies by
their execution's state per workflow, how long the oldest waiting copy has been in the DLQ, why
some are unknown, and the Transfer Family reads it took."""

from collections import Counter
from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from relay.terminal.shapes import TallyShown
from relay.terminal.text import shown

STATES: Final = ("waiting", "finished", "unknown")
STEP_TIMEOUT_MAX_S: Final = 1800.0
NOT_A_STEP_RESULT: Final = "-"


def age_text(seconds: float) -> str:
    """A duration as people say it: `35s`, `14m 2s`, `3h 5m`, `2d 4h`."""
    whole = int(seconds)
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def counts_text(counts: Counter[str]) -> str:
    """`waiting 2, unknown 1` (states in DESIGN §11's order; none: `-`)."""
    return ", ".join(f"{s} {counts[s]}" for s in STATES if counts[s]) or "-"


def print_tally(console: Console, tally: TallyShown, top: int, *, title: str) -> None:
    """The copies by state per workflow, the oldest waiting copy, why unknown, notes, reads."""
    if not tally.checked:
        console.print(
            "executions not checked: no Transfer Family call was made (every copy unknown)",
            soft_wrap=True,
        )
        return
    table = Table(title=Text(title), title_justify="left")
    table.add_column("workflow id")
    for state in STATES:
        table.add_column(state, justify="right")
    table.add_column("oldest waiting", justify="right")
    for workflow, counts in tally.workflows(top):
        oldest = tally.oldest_waiting_s.get(workflow)
        table.add_row(
            "(not a step result)" if workflow == NOT_A_STEP_RESULT else shown(workflow),
            *(str(counts[state]) for state in STATES),
            "-" if oldest is None else age_text(oldest),
        )
    table.add_section()
    oldest_of_all = tally.oldest_waiting_age_s
    table.add_row(
        "total",
        *(str(tally.by_state[state]) for state in STATES),
        "-" if oldest_of_all is None else age_text(oldest_of_all),
    )
    console.print(table)
    if oldest_of_all is not None:
        left = STEP_TIMEOUT_MAX_S - oldest_of_all
        console.print(
            f"oldest waiting copy dead-lettered {age_text(oldest_of_all)} ago: "
            + (
                f"its step has at most {age_text(left)} left"
                if left > 0
                else "longer than a custom step can wait"
            )
            + " (a custom step waits 30 min at most)",
            soft_wrap=True,
        )
    if tally.unknown_why:
        why = ", ".join(f"{w.replace('_', ' ')} {n}" for w, n in tally.unknown_why.most_common())
        console.print(f"unknown: {why}", soft_wrap=True)
    for note in tally.notes:
        console.print(Text.assemble("note: ", shown(note)), soft_wrap=True)
    console.print(reads_text(tally), soft_wrap=True)


def reads_text(tally: TallyShown) -> str:
    """The Transfer Family reads made, e.g. `3 ListExecutions, 2 DescribeExecution`."""
    made = ", ".join(f"{n} {operation}" for operation, n in sorted(tally.reads.items())) or "none"
    throttled = sum(tally.throttled.values())
    return f"Transfer Family reads: {made}" + (f" ({throttled} throttled)" if throttled else "")
