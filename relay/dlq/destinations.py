"""Where `relay replay` may send a copy (issue 14: replay sent wherever a message said).

A message's `relay-source-queue` was written by whoever could send to the DLQ, so it is a
request, not an order: without `--queue-url`, a copy goes only to a queue SQS lists as this
DLQ's source; anything else fails as `destination_not_allowed` and stays in the DLQ. Where SQS
lists none, each annotated queue is taken as it is, and shown in the summary.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from relay.config.dlq import ReplayConfig
from relay.dead_letter import DlqMessage
from relay.errors import ConfigError
from relay.outcomes import Reason
from relay.sqs import SqsError, dead_letter_sources, queue_identity

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any


class ReplayFailure(StrEnum):
    """Why a replay failed before or while sending a copy back to a queue (a replay to Transfer
    Family fails with the worker's own `Reason`s)."""

    NO_DESTINATION = "no_destination"
    """No `relay-source-queue` attribute and no `--queue-url`."""
    NOT_ALLOWED = "destination_not_allowed"
    """The named queue is not a source of this DLQ (or not a queue URL)."""
    SEND_FAILED = "send_failed"
    """SQS did not accept the copy."""


Failure = tuple[Reason | ReplayFailure, str]
"""Why a replay failed, and the detail (the first one seen is shown)."""
"""The failure of a copy whose `relay-source-queue` is no queue replay may send to."""


class AllowedBy(StrEnum):
    """What let a replay send to a queue."""

    QUEUE_URL = "queue_url"
    """The operator named it with --queue-url."""
    DEAD_LETTER_SOURCE = "dead_letter_source"
    """SQS lists it as a source queue of this DLQ (its redrive policy names the DLQ)."""
    UNCHECKED = "unchecked"
    """Only the message's `relay-source-queue` names it: nothing could be checked."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where one copy goes, and why it may."""

    queue_url: str
    allowed_by: AllowedBy


@dataclass(frozen=True, slots=True)
class Destinations:
    """The queues a replay to a queue may send to, settled before anything is read."""

    queue_url: str | None = None
    """--queue-url: every copy goes there."""
    sources: Mapping[tuple[str, str], str] = field(default_factory=dict)
    """This DLQ's source queues as SQS lists them, by (account, name)."""
    unchecked_why: str | None = None
    """Set when no list can be had: annotated queues are then taken as they are, and shown."""

    def route(self, message: DlqMessage) -> Route | Failure:
        """Where this message's copy goes, or (reason, detail) when it may go nowhere."""
        if self.queue_url is not None:
            return Route(self.queue_url, AllowedBy.QUEUE_URL)
        annotated = message.source_queue
        if annotated is None:
            return ReplayFailure.NO_DESTINATION, "no relay-source-queue attribute: pass --queue-url"
        identity = queue_identity(annotated)
        if identity is None:
            return (
                ReplayFailure.NOT_ALLOWED,
                f"relay-source-queue is not a queue URL: {annotated[:200]}",
            )
        if self.unchecked_why is not None:
            return Route(annotated, AllowedBy.UNCHECKED)
        listed = self.sources.get(identity)
        if listed is None:
            return ReplayFailure.NOT_ALLOWED, (
                f"relay-source-queue {annotated[:200]} is not a source queue of this DLQ; "
                "pass --queue-url to send there"
            )
        # SQS's own URL, not the message's: the message only picks which listed queue.
        return Route(listed, AllowedBy.DEAD_LETTER_SOURCE)


async def allowed_destinations(sqs: SQSClient, config: ReplayConfig) -> Destinations:
    """--queue-url; else the DLQ's source queues as SQS lists them; else, where it lists none
    (a DLQ no redrive policy names, or an export file), each message's own, unchecked."""
    if config.queue_url is not None:
        return Destinations(queue_url=config.queue_url)
    if config.scan is None:
        return Destinations(
            unchecked_why="an export file names no DLQ whose sources SQS could list"
        )
    dlq_url = config.scan.dlq_url
    try:
        urls = await dead_letter_sources(sqs, dlq_url)
    except SqsError as exc:
        raise ConfigError(
            f"cannot list the source queues of {dlq_url} ({exc.code}): replaying to each "
            "relay-source-queue needs sqs:ListDeadLetterSourceQueues on the DLQ; "
            "or pass --queue-url"
        ) from None
    sources = {identity: url for url in urls if (identity := queue_identity(url)) is not None}
    if not sources:
        return Destinations(unchecked_why="SQS lists no queue whose redrive policy names this DLQ")
    return Destinations(sources=sources)
