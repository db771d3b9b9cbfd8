"""Messages to send and the SendMessageBatch exchange, without I/O.

One place turns messages into batch requests (through `relay.sqs.sizes.plan_batches`), reads
SQS's answers, and decides which entries go again. Its drivers make the calls: the async one
in `relay.sqs.batching` (the worker's dead-letter copies, replay) and the sync one in
`relay.producer` (step processors, `relay send`). Only botocore's exception types are imported
here, so the producer stays free of aiobotocore.
"""

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from botocore.exceptions import ClientError, ParamValidationError

from relay.sqs.sizes import payload_size, plan_batches
from relay.tracing.context import AWS_TRACE_HEADER

NO_ANSWER: Final = "NoAnswer"
"""The code of an entry SQS's answer did not mention, so it cannot count as sent."""

DEADLINE_EXCEEDED: Final = "DeadlineExceeded"
"""The code of an entry not sent because the caller's deadline came first."""

MIN_CALL_S: Final = 0.25
"""The least time left worth starting a SendMessageBatch call with: a healthy SQS answers in
tens of milliseconds; with less, the call could only time out."""

INVALID_CONTENTS: Final = "InvalidMessageContents"
"""The code of an entry with a character SQS does not carry (SQS's own code for it)."""

_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Characters SQS refuses in a body or an attribute: it carries #x9, #xA, #xD, #x20 to #xD7FF,
#xE000 to #xFFFD and #x10000 to #x10FFFF. Lone surrogates are outside too (they cannot even be
encoded as UTF-8)."""


def text_problem(text: str) -> str | None:
    """What SQS would refuse in a body or an attribute's text, or None."""
    bad = _NOT_SQS_TEXT.search(text)
    if bad is None:
        return None
    code = ord(bad.group())
    why = (
        "a lone surrogate (UTF-8 cannot encode it)"
        if 0xD800 <= code <= 0xDFFF
        else "refused by SQS"
    )
    return f"character U+{code:04X} at {bad.start()} is {why}"


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message to send: a body, its String attributes, FIFO ids where the queue is FIFO,
    and the X-Ray trace header it carries (`AWSTraceHeader`, a system attribute SQS does not
    count in the message's size)."""

    body: str
    attributes: Mapping[str, str] = field(default_factory=dict)
    group_id: str | None = None
    deduplication_id: str | None = None
    delay_s: int | None = None
    trace_header: str | None = None

    def message_attributes(self) -> dict[str, dict[str, str]]:
        """The attributes in SQS's MessageAttributes shape."""
        return {
            name: {"DataType": "String", "StringValue": value}
            for name, value in self.attributes.items()
        }

    def size(self) -> int:
        """Bytes SQS counts against the 1 MiB request limit."""
        return payload_size(self.body, self.message_attributes())

    def problem(self) -> str | None:
        """Text of it SQS would refuse (a character it does not carry), or None."""
        texts = [("body", self.body)]
        for name, value in self.attributes.items():
            texts += [("attribute name", name), ("attribute value", value)]
        texts += [
            ("group id", self.group_id or ""),
            ("deduplication id", self.deduplication_id or ""),
            ("trace header", self.trace_header or ""),
        ]
        for what, text in texts:
            problem = text_problem(text)
            if problem is not None:
                return f"{what}: {problem}"
        return None

    def entry(self, entry_id: str) -> dict[str, Any]:
        """This message as one SendMessageBatch entry."""
        entry: dict[str, Any] = {"Id": entry_id, "MessageBody": self.body}
        if self.attributes:
            entry["MessageAttributes"] = self.message_attributes()
        if self.group_id is not None:
            entry["MessageGroupId"] = self.group_id
        if self.deduplication_id is not None:
            entry["MessageDeduplicationId"] = self.deduplication_id
        if self.delay_s is not None:
            entry["DelaySeconds"] = self.delay_s
        if self.trace_header:
            entry["MessageSystemAttributes"] = {
                AWS_TRACE_HEADER: {"DataType": "String", "StringValue": self.trace_header}
            }
        return entry


@dataclass(frozen=True, slots=True)
class SendFailure:
    """A message SQS did not accept, with SQS's reason."""

    index: int
    code: str
    message: str
    sender_fault: bool


@dataclass(frozen=True, slots=True)
class BatchRequest:
    """One SendMessageBatch call: the indexes of the messages it carries, and its entries."""

    indexes: tuple[int, ...]
    entries: list[dict[str, Any]]


class BatchSend:
    """Many messages sent with SendMessageBatch; the caller makes the calls, this keeps account.

    `rounds()` yields the delay to wait and the requests to make; the caller hands each answer
    back with `record_response` or `record_error`. Entries SQS failed through no fault of the
    sender go again in the next round, up to `attempts` rounds; sender faults (a body too
    large, a delay out of range, a missing queue) are final at once. In the end every message
    is in `message_ids` or in `failures()`, never in both and never in neither.

    With a `deadline` (a `clock()` value, `time.monotonic` by default) no round starts that
    could not make a call before it: what is left fails as `DeadlineExceeded`, with the reason
    of its last try. Drivers bound each call by `time_left_s()` and report a call they did not
    make, or cut short, at the deadline with `record_expired`.
    """

    def __init__(
        self,
        messages: Sequence[OutgoingMessage],
        *,
        attempts: int = 4,
        backoff_s: float = 0.2,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.messages = messages
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.deadline = deadline
        self.clock = clock
        self.message_ids: dict[int, str] = {}
        self._failed: dict[int, SendFailure] = {}
        self._last_try: dict[int, SendFailure] = {}
        """Why each entry of the current round failed in the round before."""

    def rounds(self) -> Iterator[tuple[float, list[BatchRequest]]]:
        """Yields (seconds to wait first, requests) per round until all are sent, final, or
        out of time."""
        pending = []
        for index, message in enumerate(self.messages):
            # Refused alone and at once: left in, it would fail its whole request, or (a lone
            # surrogate) raise while the request is built and fail every entry silently.
            problem = message.problem()
            if problem is None:
                pending.append(index)
            else:
                self._failed[index] = SendFailure(index, INVALID_CONTENTS, problem, True)
        for attempt in range(self.attempts):
            if not pending:
                return
            delay_s = self.backoff_s * 2 ** (attempt - 1) if attempt else 0.0
            if self.deadline is not None and self.clock() + delay_s + MIN_CALL_S > self.deadline:
                # What each entry's last round left in _failed is why it is still pending.
                self._expire(
                    pending, "no time for another attempt before the deadline", self._failed
                )
                return
            self._last_try = {i: self._failed[i] for i in pending if i in self._failed}
            for index in pending:
                # Until an answer names it, an entry is not sent: a lost answer is a failure.
                self._failed[index] = SendFailure(index, NO_ANSWER, "SQS did not answer", False)
            batches = plan_batches(pending, lambda i: self.messages[i].size())
            yield delay_s, [self._request(batch) for batch in batches]
            pending = sorted(i for i, f in self._failed.items() if not f.sender_fault)

    def time_left_s(self) -> float | None:
        """Seconds until the deadline (negative once past it); None without one."""
        return None if self.deadline is None else self.deadline - self.clock()

    def record_expired(self, request: BatchRequest, why: str) -> None:
        """Takes in a request not made, or cut short, because the deadline came: its entries
        fail as `DeadlineExceeded` (SQS may still have accepted a call cut short)."""
        self._expire(request.indexes, why, self._last_try)

    def record_response(self, request: BatchRequest, response: Mapping[str, Any]) -> None:
        """Takes in SQS's answer to one request: message ids, and the entries it failed."""
        for item in response.get("Successful", []):
            index = self._index(request, item.get("Id"))
            if index is not None:
                self.message_ids[index] = str(item["MessageId"])
                self._failed.pop(index, None)
        for item in response.get("Failed", []):
            index = self._index(request, item.get("Id"))
            if index is not None:
                self._failed[index] = SendFailure(
                    index,
                    str(item.get("Code", "")),
                    str(item.get("Message", "")),
                    bool(item.get("SenderFault", False)),
                )

    def record_error(self, request: BatchRequest, exc: BaseException) -> None:
        """Takes in a request that failed as a whole: each of its entries failed for that."""
        code, fault = error_code(exc), is_sender_fault(exc)
        for index in request.indexes:
            self._failed[index] = SendFailure(index, code, str(exc), fault)

    def failures(self) -> list[SendFailure]:
        """Every message not sent, by index, with the last reason SQS gave."""
        return sorted(self._failed.values(), key=lambda failure: failure.index)

    def _expire(self, indexes: Iterable[int], why: str, tried: Mapping[int, SendFailure]) -> None:
        for index in indexes:
            last = tried.get(index)
            if last is not None and last.code == DEADLINE_EXCEEDED:
                # Its last try was already cut short by the deadline: that says it all.
                self._failed[index] = last
                continue
            detail = f"{why}; last try: {last.code}: {last.message}" if last else why
            self._failed[index] = SendFailure(index, DEADLINE_EXCEEDED, detail, False)

    def _request(self, batch: list[int]) -> BatchRequest:
        return BatchRequest(tuple(batch), [self.messages[i].entry(str(i)) for i in batch])

    @staticmethod
    def _index(request: BatchRequest, entry_id: Any) -> int | None:
        # An id this request did not carry cannot mark anything sent.
        index = int(entry_id) if isinstance(entry_id, str) and entry_id.isdigit() else None
        return index if index in request.indexes else None


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore error, or the exception's type name."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "Unknown"))
    return type(exc).__name__


def is_sender_fault(exc: BaseException) -> bool:
    """Whether a failed request would fail the same way again (4xx but throttling, a bad call)."""
    if isinstance(exc, ParamValidationError):
        return True
    if not isinstance(exc, ClientError):
        # Connection errors, timeouts, credentials not yet fetched: worth another round.
        return False
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500))
    throttled = error_code(exc) in ("RequestThrottled", "ThrottlingException")
    return 400 <= status < 500 and not throttled


def is_fifo(queue_url: str) -> bool:
    """FIFO queues' names end in `.fifo`."""
    return queue_url.endswith(".fifo")
