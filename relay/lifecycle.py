"""How long-running commands start and stop, written once: signals (the first drains, a second
abandons), draining with a grace, the lease heartbeat, and the "empty twice in a row" watch.

The worker, the DLQ tools, the demo and the emulator server all use these; none of it knows
about messages beyond a receipt handle.
"""

import asyncio
import contextlib
import math
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final

SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
KEPT_MARGIN_S: Final = 30.0
"""Past the grace, a call on the wire is awaited for its call timeout plus this (a bound for a
hang on the way to the queue, not a plan: SQS calls end on their own timeouts)."""
_KEPT_POLL_S: Final = 0.05
# How often a drain past its grace looks again at which kept tasks may now be cancelled.


class Shutdown:
    """A stop request: the first one drains, a second one abandons what is still in flight.

    Idempotent beyond that; `reason` is the first request's. `grace_s` is how long the drain
    may take: after the first request, work asks `allows(seconds)` before starting something
    that must not be cut (a call takes its timeout), and marks itself `settle()` while such
    work is under way, so `drain` waits for it instead of cancelling it (DESIGN §3: a call on
    the wire is never cancelled; a request already sent is completed by the service anyway).
    """

    def __init__(self, grace_s: float = math.inf) -> None:
        self.requested = asyncio.Event()
        self.abandon = asyncio.Event()
        self.reason = ""
        self.grace_s = grace_s
        self._deadline = math.inf
        self._settling: set[asyncio.Task[Any]] = set()

    def __call__(self, reason: str = "stop") -> None:
        if self.requested.is_set():
            self.abandon.set()
            return
        self.reason = reason
        self._deadline = time.monotonic() + self.grace_s
        self.requested.set()

    @property
    def is_requested(self) -> bool:
        """Whether a stop was asked for."""
        return self.requested.is_set()

    def time_left_s(self) -> float:
        """What is left of the grace: infinite before a stop, 0 once abandoned or past it."""
        if self.abandon.is_set():
            return 0.0
        return max(0.0, self._deadline - time.monotonic())

    def allows(self, duration_s: float) -> bool:
        """Whether work taking `duration_s` may start now: it would end within the grace."""
        return duration_s <= self.time_left_s()

    def settle(self) -> None:
        """The current task is doing what must not be cut: a drain waits for it."""
        task = asyncio.current_task()
        if task is not None:
            self._settling.add(task)

    def unsettle(self) -> None:
        """The current task may be cancelled again (it waits, or is done)."""
        task = asyncio.current_task()
        if task is not None:
            self._settling.discard(task)

    @property
    def settling(self) -> int:
        """How many tasks are doing what must not be cut now."""
        return sum(not task.done() for task in self._settling)

    def is_settling(self, task: "asyncio.Task[Any]") -> bool:
        """Whether `task` is doing what must not be cut."""
        return task in self._settling


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
    tasks: Collection[asyncio.Task[Any]],
    *,
    grace_s: float,
    abandon: asyncio.Event,
    keep: Callable[["asyncio.Task[Any]"], bool] = lambda task: False,
    keep_at_most_s: float = 60.0,
) -> int:
    """Lets `tasks` finish within `grace_s` (cut short by `abandon`), then cancels the rest and
    waits for them; returns how many were cancelled.

    A task for which `keep(task)` holds (a call on the wire, a message being finished) is not
    cancelled but waited for, and cancelled only once it stops being kept, or `keep_at_most_s`
    after the grace (a bound for a bug, not a plan: kept work ends on its own timeouts).
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
    cancelled: set[asyncio.Task[Any]] = set()
    hard_deadline = time.monotonic() + keep_at_most_s
    # Bounded: kept tasks end on their own timeouts, and everything is cancelled at the bound.
    while pending := [task for task in tasks if not task.done()]:
        past_bound = time.monotonic() >= hard_deadline
        for task in pending:
            if task not in cancelled and (past_bound or not keep(task)):
                task.cancel()
                cancelled.add(task)
        await asyncio.wait(pending, timeout=_KEPT_POLL_S, return_when=asyncio.FIRST_COMPLETED)
    return len(cancelled)


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
