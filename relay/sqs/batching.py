"""Batched calls: single deletes, visibility changes and sends gathered into SQS's batch calls.

The worker finishes messages one by one, but SQS charges and limits per call; `BatchedQueue`
turns each `delete`, `change_visibility` and `send` into an entry of a batch call made within a
few milliseconds, and resolves each caller with its own entry's result.
"""

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from relay.sqs.client import SqsError, sqs_errors
from relay.sqs.outgoing import BatchSend, OutgoingMessage, SendFailure

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

MAX_VISIBILITY_S: Final = 43_200
"""SQS's cap on a visibility timeout (12 hours)."""

T = TypeVar("T")


class EntryFailed(SqsError):
    """One entry of a batch call failed; `sender_fault` when sending it again cannot help."""

    def __init__(self, code: str, message: str, *, sender_fault: bool = False) -> None:
        super().__init__(code, message)
        self.sender_fault = sender_fault


BatchCall = Callable[[list[tuple[str, T]]], Awaitable[dict[str, EntryFailed]]]
"""Makes one batch call of (entry id, entry) pairs; returns the entries that failed, by id."""


@dataclass(slots=True)
class _Pending(Generic[T]):
    entry: T
    future: asyncio.Future[None]


class Batcher(Generic[T]):
    """Gathers single operations into batch calls: flush at 10 entries or after `linger_s`.

    `submit` resolves when this entry's result is known: normally on success, `EntryFailed`
    when SQS reported it failed, `SqsError` when the whole call failed.
    """

    def __init__(self, call: BatchCall[T], *, linger_s: float = 0.005, max_entries: int = 10):
        self._call = call
        self._linger_s = linger_s
        self._max_entries = max_entries
        self._pending: list[_Pending[T]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._ids = itertools.count()

    async def submit(self, entry: T) -> None:
        """Queues one entry and waits for its own result."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(entry, future))
        if len(self._pending) >= self._max_entries:
            self._flush_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._linger_s, self._flush_now)
        # Shielded: a cancelled caller must not cancel a batch other entries share.
        await asyncio.shield(future)

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(pending), self._max_entries):
            task = loop.create_task(self._run(pending[start : start + self._max_entries]))
            self._flushes.add(task)
            task.add_done_callback(self._flushes.discard)

    async def _run(self, batch: list[_Pending[T]]) -> None:
        ids = {str(next(self._ids)): item for item in batch}
        try:
            failed = await self._call([(entry_id, item.entry) for entry_id, item in ids.items()])
        except Exception as exc:  # the whole call failed: every entry learns why
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        for entry_id, item in ids.items():
            if item.future.done():
                continue
            if entry_id in failed:
                item.future.set_exception(failed[entry_id])
            else:
                item.future.set_result(None)

    async def drain(self) -> None:
        """Flushes whatever is pending and waits for every batch call in progress."""
        if self._pending:
            self._flush_now()
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class _VisibilityChange:
    receipt_handle: str
    timeout_s: int


class BatchedQueue:
    """One queue's deletes, visibility changes and sends, each gathered into batch calls.

    Every method raises `SqsError` (or its `EntryFailed`) when SQS did not do it.
    """

    def __init__(self, client: SQSClient, queue_url: str, *, linger_s: float = 0.005) -> None:
        self.client = client
        self.url = queue_url
        self._deletes: Batcher[str] = Batcher(self._delete_batch, linger_s=linger_s)
        self._visibility: Batcher[_VisibilityChange] = Batcher(
            self._visibility_batch, linger_s=linger_s
        )
        self._sends: Batcher[OutgoingMessage] = Batcher(self._send_batch, linger_s=linger_s)

    async def delete(self, receipt_handle: str) -> None:
        """Deletes one message."""
        await self._deletes.submit(receipt_handle)

    async def change_visibility(self, receipt_handle: str, timeout_s: float) -> None:
        """Sets one message's visibility timeout (clamped to SQS's 0..12 h)."""
        seconds = max(0, min(MAX_VISIBILITY_S, round(timeout_s)))
        await self._visibility.submit(_VisibilityChange(receipt_handle, seconds))

    async def send(self, message: OutgoingMessage) -> None:
        """Sends one message (entries SQS fails on its side are tried again a few times)."""
        await self._sends.submit(message)

    async def drain(self) -> None:
        """Flushes every pending delete, visibility change and send."""
        await asyncio.gather(self._deletes.drain(), self._visibility.drain(), self._sends.drain())

    async def _delete_batch(self, entries: list[tuple[str, str]]) -> dict[str, EntryFailed]:
        with sqs_errors():
            response = await self.client.delete_message_batch(
                QueueUrl=self.url,
                Entries=[{"Id": entry_id, "ReceiptHandle": handle} for entry_id, handle in entries],
            )
        return _failed_entries(response)

    async def _visibility_batch(
        self, entries: list[tuple[str, _VisibilityChange]]
    ) -> dict[str, EntryFailed]:
        with sqs_errors():
            response = await self.client.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {
                        "Id": entry_id,
                        "ReceiptHandle": change.receipt_handle,
                        "VisibilityTimeout": change.timeout_s,
                    }
                    for entry_id, change in entries
                ],
            )
        return _failed_entries(response)

    async def _send_batch(
        self, entries: list[tuple[str, OutgoingMessage]]
    ) -> dict[str, EntryFailed]:
        failures = await send_messages(self.client, self.url, [message for _, message in entries])
        return {
            entries[f.index][0]: EntryFailed(f.code, f.message, sender_fault=f.sender_fault)
            for f in failures
        }


def _failed_entries(response: Any) -> dict[str, EntryFailed]:
    return {
        f["Id"]: EntryFailed(
            f["Code"], f.get("Message", ""), sender_fault=bool(f.get("SenderFault", False))
        )
        for f in response.get("Failed", [])
    }


async def send_messages(
    client: SQSClient,
    queue_url: str,
    messages: Sequence[OutgoingMessage],
    *,
    attempts: int = 4,
    backoff_s: float = 0.2,
) -> list[SendFailure]:
    """Sends with SendMessageBatch (≤10 entries, ≤1 MiB a request); returns what failed.

    Entries SQS reports as failed through no fault of the sender are retried a few times with
    a short backoff; sender faults (a body too large, a bad attribute) are final at once.
    """
    job = BatchSend(messages, attempts=attempts, backoff_s=backoff_s)
    for delay_s, requests in job.rounds():
        if delay_s:
            await asyncio.sleep(delay_s)
        for request in requests:
            try:
                response = await client.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=request.entries,  # type: ignore[arg-type]
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                job.record_error(request, exc)
            else:
                job.record_response(request, response)
    return job.failures()
