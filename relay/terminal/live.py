"""The DLQ tools' progress on stderr: a live bar on a terminal, plain lines otherwise."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Final

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from relay.lifecycle import cancel_and_wait
from relay.progress import Snapshot

PLAIN_PROGRESS_EVERY_S: Final = 2.0


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
