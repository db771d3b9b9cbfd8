"""The progress protocol the DLQ tools report through: a command hands a `ProgressView` a label
and a function that reads its counts, and goes on with its work; how (or whether) progress is
shown is the caller's choice (`relay.terminal.show_progress` for a person, `no_progress` else).
And `time_text`, how a DLQ time reads in a summary, a table or a JSON document.

Below `relay.dlq` and beside `relay.terminal`: nothing here draws anything.
"""

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

from relay.dead_letter import iso_utc

Snapshot = tuple[int, int | None, str]
"""(done, total or None, a line of counts) for the progress display."""

ProgressView = Callable[[str, Callable[[], Snapshot]], AbstractAsyncContextManager[None]]
"""Shows a command's progress while open: a label and a function that reads its counts."""


@contextlib.asynccontextmanager
async def no_progress(label: str, snapshot: Callable[[], Snapshot]) -> AsyncIterator[None]:
    """Shows nothing (for callers that are not a person at a terminal)."""
    yield


def time_text(moment: float | None) -> str | None:
    """Unix seconds as ISO 8601 UTC; None when unknown or not a time in years 1 to 9999."""
    if moment is None:
        return None
    try:
        return iso_utc(datetime.fromtimestamp(moment, UTC))
    except (ValueError, OverflowError, OSError):
        return None
