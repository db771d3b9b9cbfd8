"""What both publishers share: results to messages, their calls' settings, how a publish fails.

A result published inside a trace carries it (DESIGN §12): `relay.tracing.context`'s
`producer_context`, read once per call, puts the Lambda invocation's X-Ray trace (or the
caller's current OpenTelemetry span) on each message, so relay's spans continue it.
"""

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from relay.errors import ConfigError, RelayError
from relay.message import InvalidMessage, StepResult, parse
from relay.sqs.outgoing import BatchSend, OutgoingMessage, is_fifo
from relay.tracing.context import NO_CONTEXT, TraceContext, producer_context

QUEUE_URL_ENV: Final = "RELAY_QUEUE_URL"
"""Where `custom_step` finds the queue when it is not given one."""

FALLBACK_GROUP_ID: Final = "relay"
"""The FIFO group of a body sent unvalidated that has no execution id to group by."""

CONNECT_TIMEOUT_S: Final = 5.0
READ_TIMEOUT_S: Final = 10.0
CALL_ATTEMPTS: Final = 3
"""botocore's timeouts and attempts for one SendMessageBatch call of a client made here."""

WORST_CALL_S: Final = CALL_ATTEMPTS * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S) + 1 + 2
"""The longest one call of that client can take: every attempt timing out, and botocore's
standard-mode sleeps between them (at most 1 s, then 2 s)."""

BOUNDED_CALL_S: Final = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
"""With less than `WORST_CALL_S` before a deadline, a call goes through a client of one
attempt whose timeouts add up to the largest of these that fits: few clients, each made once."""

CANCEL_S: Final = 0.1
"""What cancelling an aiobotocore call and closing its connection may take, with the event
loop busy (a few milliseconds when idle): a call is cut this much before the deadline, so
that the error is raised by it."""

SyncSQSClient = Any
"""A botocore SQS client; typed loosely, since botocore's clients are built at run time."""

Publishable = StepResult | Mapping[str, Any] | str
"""What the publishers accept: a `StepResult`, or a document or JSON body in any shape the
worker accepts (canonical, the custom-step event plus a status, an SNS envelope)."""

logger = logging.getLogger(__name__)


# --- results to messages -------------------------------------------------------------------


def message_for(
    body: str,
    *,
    fifo: bool,
    result: StepResult | None = None,
    context: TraceContext = NO_CONTEXT,
) -> OutgoingMessage:
    """The message that carries a body (and the trace `context`); on FIFO queues grouped by
    execution, deduplicated by a hash of the four fields (`result` saves parsing the body
    again)."""
    group_id: str | None = None
    deduplication_id: str | None = None
    if fifo and result is None:
        try:
            result = parse(body)
        except InvalidMessage:
            # Sent unvalidated on purpose (tests of bad input): no execution id to group by.
            group_id = FALLBACK_GROUP_ID
            deduplication_id = hashlib.sha256(body.encode("utf-8")).hexdigest()
    if fifo and result is not None:
        group_id, deduplication_id = result.execution_id, result.dedup_id()
    return OutgoingMessage(
        body=body,
        attributes=context.attributes,
        group_id=group_id,
        deduplication_id=deduplication_id,
        trace_header=context.trace_header,
    )


def _checked_body(result: Publishable) -> tuple[str, StepResult]:
    """The body to send for a result and the `StepResult` it parses to; raises `InvalidMessage`."""
    if isinstance(result, StepResult):
        return result.to_body(), result
    if isinstance(result, str):
        return result, parse(result)
    if isinstance(result, Mapping):
        try:
            body = json.dumps(dict(result), separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidMessage("body", f"cannot be written as JSON ({exc})") from None
        return body, parse(body)
    raise TypeError(f"a step result must be a StepResult, a mapping or a str, not {type(result)}")


# --- outcomes ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class PublishFailure:
    """One message SQS did not accept: its position in the call, its body, and SQS's reason."""

    index: int
    body: str
    result: StepResult | None
    """The result it carries; None for a message sent unvalidated that does not parse."""
    code: str
    message: str
    sender_fault: bool
    """True when sending it again unchanged fails again (a missing queue, a bad entry)."""


class PublishError(RelayError):
    """Some results were not accepted by SQS after the retries; `failures` lists each of them.

    `message_ids` has one slot per result of the call, in order: the id of each one SQS
    accepted, None for each one in `failures`.
    """

    def __init__(
        self, queue_url: str, failures: list[PublishFailure], message_ids: list[str | None]
    ) -> None:
        first = failures[0]
        super().__init__(
            f"{len(failures)} of {len(message_ids)} result(s) not sent to {queue_url}: "
            f"{first.code}: {first.message}"
        )
        self.queue_url = queue_url
        self.failures = failures
        self.message_ids = message_ids


@dataclasses.dataclass(frozen=True, slots=True)
class _Prepared:
    messages: list[OutgoingMessage]
    results: list[StepResult] | None
    """The validated results; None for messages sent unvalidated (parsed only if they fail)."""


class _Publishing:
    """What both publishers share: the queue, validation, deadlines, and reading a finished
    send."""

    def __init__(self, queue_url: str, *, attempts: int, backoff_s: float) -> None:
        if not queue_url:
            raise ConfigError("a queue URL is required")
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.queue_url = queue_url
        self.fifo = is_fifo(queue_url)
        self.attempts = attempts
        self.backoff_s = backoff_s

    def _prepare(self, results: Iterable[Publishable]) -> _Prepared:
        # Every result is checked before the first is sent: an invalid one sends nothing.
        checked = [_checked_body(result) for result in results]
        context = producer_context()
        return _Prepared(
            [
                message_for(body, fifo=self.fifo, result=step, context=context)
                for body, step in checked
            ],
            [step for _, step in checked],
        )

    def _prepare_messages(self, messages: Sequence[OutgoingMessage]) -> _Prepared:
        return _Prepared(list(messages), None)

    def _job(self, prepared: _Prepared, deadline_s: float | None) -> BatchSend:
        return BatchSend(
            prepared.messages,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            deadline=None if deadline_s is None else time.monotonic() + deadline_s,
        )

    def _outcome(self, job: BatchSend, prepared: _Prepared) -> list[str]:
        failures = [
            PublishFailure(
                index=failure.index,
                body=prepared.messages[failure.index].body,
                result=_result_of(prepared, failure.index),
                code=failure.code,
                message=failure.message,
                sender_fault=failure.sender_fault,
            )
            for failure in job.failures()
        ]
        ids = [job.message_ids.get(index) for index in range(len(prepared.messages))]
        if failures:
            raise PublishError(self.queue_url, failures, ids)
        return [message_id for message_id in ids if message_id is not None]


def _result_of(prepared: _Prepared, index: int) -> StepResult | None:
    if prepared.results is not None:
        return prepared.results[index]
    try:
        return parse(prepared.messages[index].body)
    except InvalidMessage:
        return None
