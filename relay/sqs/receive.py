"""Receiving: one (long) poll, and the message as relay sees it."""

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from relay.sqs.client import sqs_errors
from relay.tracing.context import AWS_TRACE_HEADER

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
    # The X-Ray trace header a producer sent it with (DESIGN §12); asked for whether tracing is
    # on or not, so a dead-letter copy carries it on. A message without one answers the same.
    AWS_TRACE_HEADER,
]


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
    """String message attributes (the DLQ tools read the `relay-*` ones)."""
    trace_header: str | None = None
    """The `AWSTraceHeader` system attribute: the X-Ray trace it was sent in, if any."""

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
            trace_header=system.get(AWS_TRACE_HEADER) or None,
        )


async def receive_messages(
    client: SQSClient,
    queue_url: str,
    *,
    max_messages: int,
    wait_s: int,
    visibility_timeout_s: int,
) -> list[ReceivedMessage]:
    """One (long) poll: up to `max_messages`, with receive count, timestamps and attributes;
    `SqsError` when the receive failed."""
    with sqs_errors():
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
