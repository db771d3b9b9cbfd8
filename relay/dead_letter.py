"""Dead-letter copies (DESIGN §4) in one place: the `relay-*` attributes written on a copy, and
read back from a DLQ message by the DLQ tools and the demo.

A copy's body is the source body byte for byte, so SQS's own redrive works on it; the facts go
in String attributes. Messages SQS's own redrive moved carry none of them (`unannotated`).

A copy carries the trace context on (DESIGN §12): the X-Ray header as its `AWSTraceHeader`
system attribute, `traceparent` and `tracestate` as message attributes beside the seven
`relay-*` ones (nine of SQS's ten at most). With tracing on it is the dead-letter send's own
context; off, the one the source message carried, as it was.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from relay.sqs import OutgoingMessage, ReceivedMessage
from relay.sqs.sizes import MAX_MESSAGE_BYTES
from relay.tracing.context import TRACEPARENT, TRACESTATE, TraceContext

RELAY_PREFIX: Final = "relay-"
REASON: Final = "relay-reason"
ERROR_CODE: Final = "relay-error-code"
ERROR_MESSAGE: Final = "relay-error-message"
ATTEMPTS: Final = "relay-attempts"
SOURCE_QUEUE: Final = "relay-source-queue"
SOURCE_MESSAGE_ID: Final = "relay-source-message-id"
DEAD_LETTERED_AT: Final = "relay-dead-lettered-at"

ERROR_MESSAGE_LIMIT: Final = 1024
"""`relay-error-message` is cut to this many characters."""

UNANNOTATED: Final = "unannotated"
"""The reason of a DLQ message without `relay-*` attributes (moved by SQS's own redrive)."""


def iso_utc(moment: datetime) -> str:
    """UTC, ISO 8601 with `Z` and milliseconds."""
    # isoformat, not strftime: strftime writes years before 1000 without their leading zeros.
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def parse_time(text: str | None) -> float | None:
    """ISO 8601 (`...Z` or with an offset; naive means UTC) → Unix seconds; None when absent,
    unreadable, or not a time in years 1 to 9999 once in UTC.

    The text comes from a DLQ or an export file, which anyone allowed to send there wrote: it is
    read, never trusted (`9999-12-31T23:59:59-01:00` parses, but is past year 9999 in UTC).
    """
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC).timestamp()
    except (ValueError, OverflowError):
        return None


# --- writing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyFacts:
    """The facts a dead-letter copy carries."""

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
            REASON: self.reason,
            ERROR_CODE: self.error_code,
            ERROR_MESSAGE: self.error_message[:ERROR_MESSAGE_LIMIT] or "-",
            ATTEMPTS: str(self.attempts),
            SOURCE_QUEUE: self.source_queue,
            SOURCE_MESSAGE_ID: self.source_message_id,
            DEAD_LETTERED_AT: iso_utc(self.dead_lettered_at),
        }


def dead_letter_copy(
    message: ReceivedMessage,
    facts: CopyFacts,
    *,
    fifo: bool,
    max_bytes: int = MAX_MESSAGE_BYTES,
    context: TraceContext | None = None,
) -> OutgoingMessage:
    """The DLQ copy: the body byte for byte; attributes cut, never the body, to fit `max_bytes`
    (the DLQ's `MaximumMessageSize`). It carries `context` on, or else the message's own."""
    if context is None or context.empty:
        context = TraceContext.carried_by(message.trace_header, message.attributes)
    attributes = {**facts.attributes(), **context.attributes}
    room = max_bytes - len(message.body.encode())
    # Cut the free-text attribute first, then drop the least useful ones, until it fits.
    for name in (ERROR_MESSAGE, TRACESTATE, TRACEPARENT, SOURCE_QUEUE, DEAD_LETTERED_AT):
        if _attributes_size(attributes) <= room:
            break
        if name == ERROR_MESSAGE:
            spare = room - (_attributes_size(attributes) - len(attributes[name].encode()))
            attributes[name] = attributes[name].encode()[: max(0, spare)].decode(errors="ignore")
            if not attributes[name]:
                del attributes[name]
        else:
            attributes.pop(name, None)
    while attributes and _attributes_size(attributes) > room:
        attributes.popitem()
    group_id = message.group_id if fifo else None
    return OutgoingMessage(
        body=message.body,
        attributes=attributes,
        group_id=(group_id or "relay") if fifo else None,
        deduplication_id=message.message_id if fifo else None,
        trace_header=context.trace_header,
    )


def _attributes_size(attributes: Mapping[str, str]) -> int:
    return sum(len(n.encode()) + len("String") + len(v.encode()) for n, v in attributes.items())


# --- reading -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DlqMessage:
    """A DLQ message as the DLQ tools see it, read from the queue or from an export file."""

    message_id: str
    body: str
    attributes: Mapping[str, str]
    sent_at_ms: int
    group_id: str | None = None
    trace_header: str | None = None
    """Its `AWSTraceHeader`: the X-Ray trace of the dead-lettered message, if it carried one."""

    @classmethod
    def from_received(cls, message: ReceivedMessage) -> "DlqMessage":
        """From a message received from the DLQ."""
        return cls(
            message_id=message.message_id,
            body=message.body,
            attributes=dict(message.attributes),
            sent_at_ms=round(message.sent_at * 1000),
            group_id=message.group_id,
            trace_header=message.trace_header,
        )

    @property
    def trace_context(self) -> TraceContext:
        """The trace context it carries (DESIGN §12), as far as it is well formed."""
        return TraceContext.carried_by(self.trace_header, self.attributes)

    @property
    def reason(self) -> str:
        """`relay-reason`, or `unannotated` for a message SQS's own redrive moved."""
        return self.attributes.get(REASON) or UNANNOTATED

    @property
    def error_code(self) -> str | None:
        """`relay-error-code`, when relay dead-lettered it."""
        return self.attributes.get(ERROR_CODE)

    @property
    def error_message(self) -> str:
        """`relay-error-message`, or empty."""
        return self.attributes.get(ERROR_MESSAGE, "")

    @property
    def source_queue(self) -> str | None:
        """`relay-source-queue`: where the worker read it."""
        return self.attributes.get(SOURCE_QUEUE) or None

    @property
    def dead_lettered_at(self) -> float | None:
        """Unix seconds of `relay-dead-lettered-at`; None when absent or unreadable."""
        return parse_time(self.attributes.get(DEAD_LETTERED_AT))

    @property
    def unreadable_date(self) -> bool:
        """It has a `relay-dead-lettered-at`, but not one that reads as a time."""
        return DEAD_LETTERED_AT in self.attributes and self.dead_lettered_at is None

    def age_s(self, now: float) -> float:
        """Seconds since it was dead-lettered (since it was sent, when that is unknown)."""
        moment = self.dead_lettered_at
        return now - (moment if moment is not None else self.sent_at_ms / 1000)

    def forwarded_attributes(self) -> dict[str, str]:
        """The attributes a replayed copy keeps: all but relay's own."""
        return {k: v for k, v in self.attributes.items() if not k.startswith(RELAY_PREFIX)}
