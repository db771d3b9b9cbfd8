"""The demo's own display: the live panel while the story runs, and the summary it ends with
(outcomes by reason, callback latency, the DLQ by reason, the next step, the accounting).
It shows and nothing else: the story decides what runs, and where logs go while it shows.
"""

import asyncio
import collections
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from relay.demo.accounting import Accounting, DemoProgress, DlqTally
from relay.emulator import EmulatorState
from relay.lifecycle import cancel_and_wait
from relay.outcomes import Outcome
from relay.worker import WorkerStatus


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
    console: Console, progress: DemoProgress, status: Callable[[], WorkerStatus]
) -> AsyncIterator[None]:
    """A live panel on a terminal, a plain line every two seconds otherwise.

    While the panel is live it holds `sys.stderr` (what is written there scrolls above it).
    """
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
        task = asyncio.create_task(refresh(), name="progress")
        try:
            yield
        finally:
            await cancel_and_wait([task])
            progress.finished_at = time.monotonic()
            show(render())


def _outcome_text(status: WorkerStatus) -> str:
    counts = status.counts
    return "  ".join(f"{o.value} {counts[o.value]}" for o in Outcome if counts.get(o.value))


def _plain_line(progress: DemoProgress, status: WorkerStatus, per_s: float) -> Text:
    return Text(
        f"{progress.elapsed_s:5.1f}s  sent {progress.sent}/{progress.total}  "
        f"finished {status.finished}  {per_s:.0f} msg/s  in flight {status.in_flight}  "
        f"throttled {status.throttled}  {_outcome_text(status)}"
    )


def _panel(progress: DemoProgress, status: WorkerStatus, per_s: float) -> RenderableType:
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
    status: WorkerStatus,
    progress: DemoProgress,
    emulator: EmulatorState,
    dead: DlqTally,
    accounting: Accounting,
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
    latencies = sorted(
        (c.answered_at - c.received_at) * 1000
        for c in emulator.calls
        if c.operation == "SendWorkflowStepState"
    )
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
    if progress.send_failed:
        console.print(f"{progress.send_failed} message(s) SQS did not accept", style="bold red")
    console.print(
        accounting.line(), style="bold green" if accounting.balanced else "bold red", soft_wrap=True
    )
