"""The SQS adapter: client creation, receive, batched sends, coalesced deletes and visibility
changes, and dead-letter copies with their `relay-*` attributes (DESIGN §4).

Nothing here knows about callbacks; the worker decides, this module carries it out.
"""

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from relay.aws import new_session
from relay.batches import MAX_BATCH_BYTES, payload_size
from relay.outgoing import BatchSend

# Re-exported: the worker, replay and the demo send and classify through this adapter.
from relay.outgoing import OutgoingMessage as OutgoingMessage
from relay.outgoing import SendFailure as SendFailure
from relay.outgoing import error_code as error_code
from relay.outgoing import is_fifo as is_fifo

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

RECEIVE_SYSTEM_ATTRIBUTES: Final[list[Any]] = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
]
MAX_VISIBILITY_S: Final = 43_200
"""SQS's cap on a visibility timeout (12 hours)."""
ERROR_MESSAGE_LIMIT: Final = 1024

T = TypeVar("T")


def sqs_config(*, max_pool_connections: int = 10) -> AioConfig:
    """botocore settings for SQS: standard retries (SQS calls are idempotent enough), a pool."""
    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 3},
        max_pool_connections=max_pool_connections,
        # Long polls wait 20 s; the read timeout must be longer.
        read_timeout=30,
        connect_timeout=5,
    )


@contextlib.asynccontextmanager
async def open_sqs(
    session: AioSession | None = None, *, max_pool_connections: int = 10
) -> AsyncIterator[SQSClient]:
    """An aiobotocore SQS client from the standard AWS chain (AWS_ENDPOINT_URL_SQS honoured)."""
    session = session or new_session()
    async with session.create_client(
        "sqs", config=sqs_config(max_pool_connections=max_pool_connections)
    ) as client:
        yield client


@dataclass(frozen=True, slots=True)
class QueuePair:
    """A source queue and its DLQ."""

    url: str
    dlq_url: str


async def create_queue_pair(
    client: SQSClient,
    name: str,
    *,
    max_receive_count: int,
    visibility_timeout_s: int = 30,
    fifo: bool = False,
) -> QueuePair:
    """Creates a queue and its DLQ with a redrive policy between them (the demo, the
    benchmark and the tests; production queues come from the CloudFormation template)."""
    suffix = ".fifo" if fifo else ""
    fifo_attributes: dict[Any, str] = {"FifoQueue": "true"} if fifo else {}
    dlq = await client.create_queue(QueueName=f"{name}-dlq{suffix}", Attributes=fifo_attributes)
    dlq_url = dlq["QueueUrl"]
    attributes = await client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])
    redrive = {
        "deadLetterTargetArn": attributes["Attributes"]["QueueArn"],
        "maxReceiveCount": str(max_receive_count),
    }
    queue = await client.create_queue(
        QueueName=f"{name}{suffix}",
        Attributes={
            **fifo_attributes,
            "RedrivePolicy": json.dumps(redrive),
            "VisibilityTimeout": str(visibility_timeout_s),
        },
    )
    return QueuePair(url=queue["QueueUrl"], dlq_url=dlq_url)


# --- sending -------------------------------------------------------------------------------


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
    await run_batch_send(client, queue_url, job)
    return job.failures()


async def run_batch_send(client: SQSClient, queue_url: str, job: BatchSend) -> None:
    """Makes the calls of a `BatchSend` on aiobotocore (the sync twin is in `relay.producer`)."""
    for delay_s, requests in job.rounds():
        if delay_s:
            await asyncio.sleep(delay_s)
        for request in requests:
            try:
                response = await client.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=request.entries,  # type: ignore[arg-type]
                )
            except (ClientError, BotoCoreError) as exc:
                job.record_error(request, exc)
            else:
                job.record_response(request, response)


# --- receiving -----------------------------------------------------------------------------


@dataclass(slots=True)
class ReceivedMessage:
    """A message as received, with the system attributes relay asked for."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    sent_at: float
    """Unix seconds the producer sent it (SentTimestamp)."""
    received_at: float
    """Unix seconds this process received it."""
    group_id: str | None
    attributes: dict[str, str]
    """String message attributes (replay reads `relay-*` ones)."""

    @classmethod
    def from_response(cls, raw: Mapping[str, Any], received_at: float) -> "ReceivedMessage":
        """Builds one from a ReceiveMessage entry."""
        system = raw.get("Attributes", {})
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            body=raw.get("Body", ""),
            receive_count=int(system.get("ApproximateReceiveCount", "1")),
            sent_at=int(system.get("SentTimestamp", int(received_at * 1000))) / 1000,
            received_at=received_at,
            group_id=system.get("MessageGroupId"),
            attributes={
                name: value["StringValue"]
                for name, value in raw.get("MessageAttributes", {}).items()
                if "StringValue" in value
            },
        )


async def receive_messages(
    client: SQSClient,
    queue_url: str,
    *,
    max_messages: int,
    wait_s: int,
    visibility_timeout_s: int,
) -> list[ReceivedMessage]:
    """One (long) poll: up to `max_messages`, with receive count, timestamps and attributes."""
    response = await client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_s,
        VisibilityTimeout=visibility_timeout_s,
        MessageSystemAttributeNames=RECEIVE_SYSTEM_ATTRIBUTES,
        MessageAttributeNames=["All"],
    )
    now = time.time()
    return [ReceivedMessage.from_response(raw, now) for raw in response.get("Messages", [])]


# --- coalesced deletes and visibility changes ----------------------------------------------


class EntryFailed(Exception):
    """One entry of a batch call failed; carries SQS's code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(slots=True)
class _Pending(Generic[T]):
    entry: T
    future: asyncio.Future[None]


class Coalescer(Generic[T]):
    """Gathers single operations into batch calls: flush at 10 entries or after `linger_s`.

    `submit` resolves when this entry's result is known: normally on success, `EntryFailed`
    when SQS reported it failed, the transport's exception when the whole call failed.
    """

    def __init__(
        self,
        name: str,
        call: Callable[[list[tuple[str, T]]], Awaitable[dict[str, tuple[str, str]]]],
        *,
        linger_s: float = 0.005,
        max_entries: int = 10,
    ) -> None:
        self.name = name
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
                code, message = failed[entry_id]
                item.future.set_exception(EntryFailed(code, message))
            else:
                item.future.set_result(None)

    async def drain(self) -> None:
        """Flushes whatever is pending and waits for every batch call in progress."""
        if self._pending:
            self._flush_now()
        while self._flushes:
            await asyncio.gather(*list(self._flushes), return_exceptions=True)


@dataclass(frozen=True, slots=True)
class VisibilityChange:
    """Set one message's visibility timeout."""

    receipt_handle: str
    timeout_s: int


class QueueOps:
    """Deletes and visibility changes on one queue, coalesced into batch calls."""

    def __init__(self, client: SQSClient, queue_url: str, *, linger_s: float = 0.005) -> None:
        self.client = client
        self.queue_url = queue_url
        self.deletes: Coalescer[str] = Coalescer("delete", self._delete_batch, linger_s=linger_s)
        self.visibility: Coalescer[VisibilityChange] = Coalescer(
            "visibility", self._visibility_batch, linger_s=linger_s
        )

    async def delete(self, receipt_handle: str) -> None:
        """Deletes one message; raises when SQS did not delete it."""
        await self.deletes.submit(receipt_handle)

    async def change_visibility(self, receipt_handle: str, timeout_s: float) -> None:
        """Sets one message's visibility timeout (clamped to SQS's 0..12 h)."""
        seconds = max(0, min(MAX_VISIBILITY_S, round(timeout_s)))
        await self.visibility.submit(VisibilityChange(receipt_handle, seconds))

    async def drain(self) -> None:
        """Flushes every pending delete and visibility change."""
        await asyncio.gather(self.deletes.drain(), self.visibility.drain())

    async def _delete_batch(self, entries: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
        response = await self.client.delete_message_batch(
            QueueUrl=self.queue_url,
            Entries=[{"Id": entry_id, "ReceiptHandle": handle} for entry_id, handle in entries],
        )
        return {f["Id"]: (f["Code"], f.get("Message", "")) for f in response.get("Failed", [])}

    async def _visibility_batch(
        self, entries: list[tuple[str, VisibilityChange]]
    ) -> dict[str, tuple[str, str]]:
        response = await self.client.change_message_visibility_batch(
            QueueUrl=self.queue_url,
            Entries=[
                {
                    "Id": entry_id,
                    "ReceiptHandle": change.receipt_handle,
                    "VisibilityTimeout": change.timeout_s,
                }
                for entry_id, change in entries
            ],
        )
        return {f["Id"]: (f["Code"], f.get("Message", "")) for f in response.get("Failed", [])}


# --- dead-letter copies --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """The facts a dead-letter copy carries (DESIGN §4)."""

    reason: str
    error_code: str
    error_message: str
    attempts: int
    source_queue: str
    source_message_id: str
    dead_lettered_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def attributes(self) -> dict[str, str]:
        """The `relay-*` attributes, in DESIGN §4's order."""
        return {
            "relay-reason": self.reason,
            "relay-error-code": self.error_code,
            "relay-error-message": self.error_message[:ERROR_MESSAGE_LIMIT] or "-",
            "relay-attempts": str(self.attempts),
            "relay-source-queue": self.source_queue,
            "relay-source-message-id": self.source_message_id,
            "relay-dead-lettered-at": iso_utc(self.dead_lettered_at),
        }


def iso_utc(moment: datetime) -> str:
    """UTC, ISO 8601 with `Z` and milliseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dead_letter_copy(message: ReceivedMessage, facts: DeadLetter, *, fifo: bool) -> OutgoingMessage:
    """The DLQ copy: the body byte for byte; attributes cut, never the body, to fit 1 MiB."""
    attributes = facts.attributes()
    room = MAX_BATCH_BYTES - payload_size(message.body)
    # Cut the free-text attribute first, then drop the least useful ones, until it fits.
    for name in ("relay-error-message", "relay-source-queue", "relay-dead-lettered-at"):
        if _attributes_size(attributes) <= room:
            break
        if name == "relay-error-message":
            spare = room - (_attributes_size(attributes) - len(attributes[name].encode()))
            attributes[name] = attributes[name].encode()[: max(0, spare)].decode(errors="ignore")
            if not attributes[name]:
                del attributes[name]
        else:
            del attributes[name]
    while attributes and _attributes_size(attributes) > room:
        attributes.popitem()
    group_id = message.group_id if fifo else None
    return OutgoingMessage(
        body=message.body,
        attributes=attributes,
        group_id=(group_id or "relay") if fifo else None,
        deduplication_id=message.message_id if fifo else None,
    )


def _attributes_size(attributes: Mapping[str, str]) -> int:
    return sum(len(n.encode()) + len("String") + len(v.encode()) for n, v in attributes.items())
