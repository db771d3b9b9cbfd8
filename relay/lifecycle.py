"""How long-running commands start and stop, written once: signals (the first drains, a second
abandons), draining with a grace, the lease heartbeat, and the "empty twice in a row" watch.

The worker, the DLQ tools, the demo and the emulator server all use these; none of it knows
about messages beyond a receipt handle.
"""

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)


class Shutdown:
    """A stop request: the first one drains, a second one abandons what is still in flight.

    Idempotent beyond that; `reason` is the first request's.
    """

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.abandon = asyncio.Event()
        self.reason = ""

    def __call__(self, reason: str = "stop") -> None:
        if self.requested.is_set():
            self.abandon.set()
            return
        self.reason = reason
        self.requested.set()

    @property
    def is_requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.requested.is_set()


@contextlib.contextmanager
def handling_signals(on_signal: Callable[[str], Any]) -> Iterator[None]:
    """SIGINT and SIGTERM call `on_signal(name)` while open; removed on the way out.

    Handlers do nothing but call it (saq's pattern). Only the main thread may install them; a
    command run in another thread (tests) goes without.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig.name)
    try:
        yield
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)


async def wait_any(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Waits until one of the events is set or the timeout passes."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def drain(
    tasks: Collection[asyncio.Task[Any]], *, grace_s: float, abandon: asyncio.Event
) -> int:
    """Lets `tasks` finish within `grace_s` (cut short by `abandon`), then cancels the rest and
    waits for them; returns how many were cancelled.

    `tasks` may be a live set that finished tasks leave: it is read again on every pass.
    """
    deadline = time.monotonic() + grace_s
    abandoning = asyncio.ensure_future(abandon.wait())
    try:
        # Bounded: each pass waits until a task ends, the deadline, or the abandon.
        while (pending := [t for t in tasks if not t.done()]) and not abandoning.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await asyncio.wait(
                [*pending, abandoning], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
    finally:
        abandoning.cancel()
    leftover = [task for task in tasks if not task.done()]
    for task in leftover:
        task.cancel()
    await asyncio.gather(*leftover, return_exceptions=True)
    return len(leftover)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancels the tasks and waits until each has ended."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


# --- leases ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    """A message held invisible: its receipt handle and when its lease was last extended."""

    receipt_handle: str
    leased_at: float
    """`time.monotonic()` of the receive or the last extension."""


class LeaseHeartbeat:
    """Extends every held lease well before it lapses: each one older than a third of
    `timeout_s` is set back to `timeout_s`, checked every third (at most every 5 s).

    `idle` is set while no extension is under way, so a release can wait for it: an extension
    landing after a release would hide the message again.
    """

    def __init__(
        self,
        held: Callable[[], Iterable[Lease]],
        extend: Callable[[str, float], Awaitable[None]],
        timeout_s: float,
        *,
        on_extended: Callable[[Lease], None] = lambda lease: None,
        on_failed: Callable[[Lease, BaseException], None] = lambda lease, exc: None,
    ) -> None:
        self._held = held
        self._extend = extend
        self.timeout_s = timeout_s
        self._on_extended = on_extended
        self._on_failed = on_failed
        self.idle = asyncio.Event()
        self.idle.set()

    async def run(self) -> None:
        """Runs until cancelled."""
        interval_s = self.timeout_s / 3
        while True:
            await asyncio.sleep(min(interval_s, 5.0))
            now = time.monotonic()
            due = [lease for lease in self._held() if now - lease.leased_at >= interval_s]
            if not due:
                continue
            self.idle.clear()
            try:
                results = await asyncio.gather(
                    *(self._extend(lease.receipt_handle, self.timeout_s) for lease in due),
                    return_exceptions=True,
                )
            finally:
                self.idle.set()
            for lease, result in zip(due, results, strict=True):
                if isinstance(result, BaseException):
                    self._on_failed(lease, result)
                else:
                    lease.leased_at = now
                    self._on_extended(lease)


# --- "empty twice in a row" --------------------------------------------------------------------


class EmptyReadings:
    """Counts readings of a queue's total in a row that were empty; the counts are approximate
    on real SQS, and a message released a moment ago may not be counted yet, so `needed`
    readings in a row make it empty."""

    def __init__(self, needed: int = 2) -> None:
        self.needed = needed
        self._streak = 0

    def saw(self, total: int | None) -> bool:
        """Takes one reading (None: busy or unreadable, which breaks the streak); True once
        `needed` empty readings came in a row."""
        self._streak = self._streak + 1 if total == 0 else 0
        return self._streak >= self.needed


async def wait_until_empty(
    read_total: Callable[[], Awaitable[int | None]],
    *,
    interval_s: float,
    stop: asyncio.Event,
    needed: int = 2,
) -> bool:
    """Reads every `interval_s` until `needed` empty readings in a row (True) or `stop` (False).

    `read_total` returns None when the reader is busy or the count cannot be read.
    """
    readings = EmptyReadings(needed)
    # Bounded by `stop`: each pass waits `interval_s`.
    while not stop.is_set():
        await wait_any(stop, timeout_s=interval_s)
        if stop.is_set():
            return False
        if readings.saw(await read_total()):
            return True
    return False
