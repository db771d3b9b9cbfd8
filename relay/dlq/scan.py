"""Reading a DLQ once through, holding what was read until each message is dealt with.

Killed outright, a command loses nothing: held messages come back when their lease lapses, and
one re-enqueued but not yet deleted is at worst replayed twice (the worker absorbs that).
"""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from relay.config.dlq import ScanConfig
from relay.dead_letter import DlqMessage
from relay.lifecycle import Lease, LeaseHeartbeat, Shutdown, cancel_and_wait, handling_signals
from relay.progress import ProgressView, Snapshot, no_progress
from relay.sqs import BatchedQueue, ReceivedMessage, SqsError, check_queue, open_sqs
from relay.sqs import receive_messages as receive

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

RECEIVERS: Final = 4
"""Concurrent receives while scanning: one 10-message receive at a time is slow on real SQS."""


@dataclass(slots=True)
class ReadEnd:
    """How reading a DLQ ended; every DLQ command's summary reports it alike."""

    stopped_by: str = ""
    read_error: str | None = None
    release_errors: int = 0

    @property
    def complete(self) -> bool:
        """Read to the end (or to a limit the user set), with no error or interruption."""
        return self.read_error is None and not self.stopped_by.startswith("signal")

    def to_json(self) -> dict[str, Any]:
        """Its members of a summary's JSON form."""
        return {
            "stopped_by": self.stopped_by,
            "read_error": self.read_error,
            "release_errors": self.release_errors,
        }


@dataclass(slots=True)
class ScanLease(Lease):
    """A DLQ message this command holds invisible."""

    parked: bool = False
    """Done with, but held until the scan ends so it is not read again."""


class DlqReader:
    """Reads a DLQ once through and holds what it read until each is deleted or given back."""

    def __init__(self, sqs: SQSClient, config: ScanConfig, shutdown: Shutdown) -> None:
        self.sqs = sqs
        self.config = config
        self.shutdown = shutdown
        self.queue = BatchedQueue(sqs, config.dlq_url)
        self.scanning = False
        self.read = 0
        self.end = ReadEnd()
        self.delete_errors = 0
        self._held: dict[str, ScanLease] = {}
        self._seen: set[str] = set()
        self._budget = config.max_messages
        self._timed_out = False
        self.heartbeat = LeaseHeartbeat(
            self._held.values, self.queue.change_visibility, config.visibility_timeout_s
        )

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator["DlqReader"]:
        """Renews leases while open; on the way out gives back, visible at once, all still held."""
        heartbeat = asyncio.create_task(self.heartbeat.run(), name="dlq-heartbeat")
        try:
            yield self
        finally:
            await cancel_and_wait([heartbeat])
            await self.queue.drain()  # renewals already sent must land before the releases
            await self._release(list(self._held))
            await self.queue.drain()

    async def scan(
        self,
        take: Callable[[DlqMessage], Awaitable[None]],
        *,
        more: Callable[[], bool] = lambda: True,
    ) -> None:
        """Reads until the DLQ looks empty, `max_messages` were read, `more()` says enough, the
        time bound passes or a stop; then gives back every message parked meanwhile."""
        self.scanning = True
        deadline = time.monotonic() + self.config.scan_timeout_s
        done = asyncio.Event()
        try:
            await asyncio.gather(
                *(self._receive_loop(take, more, deadline, done) for _ in range(RECEIVERS))
            )
        finally:
            self.scanning = False
            self.end.stopped_by = self._why_stopped(more)
            await self._release([mid for mid, held in self._held.items() if held.parked])

    def _why_stopped(self, more: Callable[[], bool]) -> str:
        if self.shutdown.is_requested:
            return f"signal ({self.shutdown.reason})"
        if self.end.read_error is not None:
            return "receive error"
        if self._timed_out:
            return "scan timeout"
        if self.read >= self.config.max_messages or not more():
            return "max messages"
        return "empty"

    async def _receive_loop(
        self,
        take: Callable[[DlqMessage], Awaitable[None]],
        more: Callable[[], bool],
        deadline: float,
        done: asyncio.Event,
    ) -> None:
        # Bounded: every pass reads at least one message of a budget of `max_messages`, or ends
        # the loop; the deadline bounds it in time.
        while not (done.is_set() or self.shutdown.is_requested) and more():
            if time.monotonic() >= deadline:
                self._timed_out = True
                done.set()
                return
            want = min(10, self._budget)
            if want <= 0:
                return  # the others hold the rest of the budget; one of them carries on
            self._budget -= want
            try:
                messages = await receive(
                    self.sqs,
                    self.config.dlq_url,
                    max_messages=want,
                    wait_s=self.config.receive_wait_s,
                    visibility_timeout_s=self.config.visibility_timeout_s,
                )
            except SqsError as exc:
                self._budget += want
                self.end.read_error = str(exc)[:300]
                done.set()
                return
            self._budget += want - len(messages)
            if not messages:
                # An empty long poll asked every SQS server: nothing visible is left.
                done.set()
                return
            now = time.monotonic()
            for message in messages:
                dead = self._hold(message, now)
                if dead is None:
                    continue
                if self.shutdown.is_requested:
                    self._held[message.message_id].parked = True  # read after the stop
                    continue
                await take(dead)

    def _hold(self, message: ReceivedMessage, now: float) -> DlqMessage | None:
        """Records the lease of a message read; returns it unless it was read before."""
        held = self._held.get(message.message_id)
        if held is not None:
            # Read again: its lease lapsed (a missed renewal); only the newest handle works now.
            held.receipt_handle = message.receipt_handle
            held.leased_at = now
            return None
        self._held[message.message_id] = ScanLease(message.receipt_handle, now)
        if message.message_id in self._seen:
            # Deleted already, and SQS (at least once) handed it out again: give it back.
            self._held[message.message_id].parked = True
            return None
        self._seen.add(message.message_id)
        self.read += 1
        return DlqMessage.from_received(message)

    async def give_back(self, message_id: str) -> None:
        """Done with it, unchanged: visible again at once, or when the scan ends if it still runs
        (so the scan does not read it twice)."""
        held = self._held.get(message_id)
        if held is None:
            return
        if self.scanning:
            held.parked = True
        else:
            await self._release([message_id])

    async def delete(self, message_id: str) -> bool:
        """Deletes a message this command holds; False (and given back) when SQS did not."""
        held = self._held.pop(message_id, None)
        if held is None:
            return False
        try:
            await self.queue.delete(held.receipt_handle)
        except SqsError:
            self.delete_errors += 1
            self._held[message_id] = held
            await self.give_back(message_id)
            return False
        return True

    async def _release(self, message_ids: Sequence[str]) -> None:
        """Visible again at once; a failure means the message comes back when its lease lapses."""
        # A renewal in flight could land after the release and hide the message again.
        await self.heartbeat.idle.wait()
        leases = [held for mid in message_ids if (held := self._held.pop(mid, None))]
        results = await asyncio.gather(
            *(self.queue.change_visibility(held.receipt_handle, 0) for held in leases),
            return_exceptions=True,
        )
        self.end.release_errors += sum(isinstance(r, BaseException) for r in results)


async def read_through(
    scan: ScanConfig,
    label: str,
    take: Callable[[DlqMessage], Awaitable[None]],
    snapshot: Callable[[], Snapshot],
    progress: ProgressView = no_progress,
    *,
    then: Callable[[asyncio.Event], Awaitable[None]] | None = None,
) -> ReadEnd:
    """Reads the whole DLQ once, hands each message to `take`, then makes it visible again:
    what `dlq stats` and `dlq export` share (neither changes the DLQ). `then`, if given, runs
    once the reading ended (given the event a stop sets), before the command's signals are
    let go."""
    shutdown = Shutdown()
    async with open_sqs(max_pool_connections=RECEIVERS + 16) as sqs:
        await check_queue(sqs, scan.dlq_url, "DLQ")
        with handling_signals(shutdown):
            reader = DlqReader(sqs, scan, shutdown)

            async def take_and_give_back(message: DlqMessage) -> None:
                await take(message)
                await reader.give_back(message.message_id)

            async with reader.holding(), progress(label, snapshot):
                await reader.scan(take_and_give_back)
            if then is not None:
                await then(shutdown.requested)
    return reader.end
