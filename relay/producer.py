"""For step processors: publish step results to relay's queue, checked where they are made.

A processor hands each result to a publisher; it is validated with the worker's own parser
before anything is sent, so a wrong field raises `InvalidMessage` here, in the processor,
instead of becoming a `validation` dead-letter later (DESIGN §9)::

    from relay.producer import Status, StepResult, StepResultPublisher

    publisher = StepResultPublisher(queue_url)
    publisher.publish(StepResult.from_event(event, Status.SUCCESS))

- `StepResultPublisher` is synchronous, on botocore alone (every Lambda runtime ships it);
  `AsyncStepResultPublisher` is its twin on aiobotocore, for asyncio processors.
- `custom_step` wraps a Lambda handler that Transfer Family invokes as a custom step:
  return publishes SUCCESS, raise publishes FAILURE, and retries stop before the invocation's
  time runs out.
- Every publishing call takes `deadline_s`: no retry starts, and no call runs, past it.

Importing this module loads neither aiohttp nor aiobotocore: the async publisher imports
aiobotocore when it opens its client.
"""

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, overload

from botocore.exceptions import BotoCoreError, ClientError

from relay.errors import ConfigError, RelayError
from relay.message import InvalidMessage, Status, StepResult, parse, short_token
from relay.sqs.outgoing import MIN_CALL_S, BatchSend, OutgoingMessage, is_fifo

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient as AsyncSQSClient
else:
    AsyncSQSClient = Any

__all__ = [
    "QUEUE_URL_ENV",
    "AsyncStepResultPublisher",
    "InvalidMessage",
    "OutgoingMessage",
    "PublishError",
    "PublishFailure",
    "Status",
    "StepResult",
    "StepResultPublisher",
    "custom_step",
    "message_for",
    "new_sqs_client",
    "publish_deadline_s",
    "shared_publisher",
]

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

LAMBDA_MARGIN_SHARE: Final = 0.1
LAMBDA_MARGIN_MAX_S: Final = 1.0
"""`custom_step` keeps this share of the invocation's remaining time, at most this many seconds,
for after publishing: raising `PublishError`, logging, Lambda's error report, and the slack
botocore's timeouts need (they bound each wait on the socket, not the whole call). A tenth
leaves a short invocation most of its time (0.5 s left: 0.45 s to publish); a second is
ample once a minute or more is left."""

SyncSQSClient = Any
"""A botocore SQS client; typed loosely, since botocore's clients are built at run time."""

Publishable = StepResult | Mapping[str, Any] | str
"""What the publishers accept: a `StepResult`, or a document or JSON body in any shape the
worker accepts (canonical, the custom-step event plus a status, an SNS envelope)."""

logger = logging.getLogger(__name__)


# --- results to messages -------------------------------------------------------------------


def message_for(body: str, *, fifo: bool, result: StepResult | None = None) -> OutgoingMessage:
    """The message that carries a body; on FIFO queues grouped by execution, deduplicated by
    a hash of the four fields (`result` saves parsing the body again)."""
    if not fifo:
        return OutgoingMessage(body=body)
    if result is None:
        try:
            result = parse(body)
        except InvalidMessage:
            # Sent unvalidated on purpose (tests of bad input): no execution id to group by.
            digest = hashlib.sha256(body.encode("utf-8")).hexdigest()
            return OutgoingMessage(body=body, group_id=FALLBACK_GROUP_ID, deduplication_id=digest)
    return OutgoingMessage(
        body=body, group_id=result.execution_id, deduplication_id=result.dedup_id()
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
        return _Prepared(
            [message_for(body, fifo=self.fifo, result=step) for body, step in checked],
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


# --- the synchronous publisher (botocore) --------------------------------------------------


def new_sqs_client() -> SyncSQSClient:
    """A botocore SQS client from the standard AWS chain (AWS_ENDPOINT_URL_SQS honoured).

    Like `relay.aws`, it takes the region from `AWS_REGION` when nothing else set one.
    """
    return _sqs_client(_botocore_session())


def _botocore_session() -> Any:
    import botocore.session

    session = botocore.session.get_session()
    region = os.environ.get("AWS_REGION")
    if region and not session.get_config_variable("region"):
        session.set_config_variable("region", region)
    return session


def _sqs_client(
    session: Any,
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    read_timeout_s: float = READ_TIMEOUT_S,
    attempts: int = CALL_ATTEMPTS,
) -> SyncSQSClient:
    from botocore.config import Config

    config = Config(
        retries={"mode": "standard", "total_max_attempts": attempts},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
    )
    return session.create_client("sqs", config=config)


class StepResultPublisher(_Publishing):
    """Publishes step results to one queue with botocore; a result SQS did not accept is never
    reported as sent.

    Give it a botocore SQS `client` to choose endpoints, credentials or retries; one made here
    is closed by `close()` (or leaving a `with` block), one given is left open. With
    `deadline_s`, calls through a client made here are also cut to fit the time left; a client
    given keeps its own timeouts, and only no new attempt starts past the deadline.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: SyncSQSClient | None = None,
        attempts: int = 4,
        backoff_s: float = 0.2,
    ) -> None:
        super().__init__(queue_url, attempts=attempts, backoff_s=backoff_s)
        self._owns_client = client is None
        self._session = _botocore_session() if client is None else None
        self.client = _sqs_client(self._session) if client is None else client
        self._bounded: dict[float, SyncSQSClient] = {}
        """Clients of one short attempt, by the seconds their timeouts add up to."""

    def publish(self, result: Publishable, *, deadline_s: float | None = None) -> str:
        """Validates and sends one result; returns its SQS message id.

        Raises `InvalidMessage` (nothing sent) or `PublishError` (SQS did not accept it, or
        not within `deadline_s` seconds from now).
        """
        return self.publish_many([result], deadline_s=deadline_s)[0]

    def publish_many(
        self, results: Iterable[Publishable], *, deadline_s: float | None = None
    ) -> list[str]:
        """Validates every result, then sends them in batches; returns their ids in order.

        Nothing is sent if any result is invalid (`InvalidMessage`, naming the field). Entries
        SQS fails through no fault of ours are retried with a short backoff; if any result is
        still not accepted, `PublishError` lists each one (the others were sent). With
        `deadline_s`, it returns or raises within that many seconds from now: no attempt
        starts that could not make a call before then.
        """
        prepared = self._prepare(results)
        return self._run(prepared, deadline_s)

    def send(
        self, messages: Sequence[OutgoingMessage], *, deadline_s: float | None = None
    ) -> list[str]:
        """Sends prepared messages as they are, unvalidated: for tools and tests of bad input.

        Build them with `message_for`. Retries, deadline and `PublishError` as in
        `publish_many`.
        """
        return self._run(self._prepare_messages(messages), deadline_s)

    def close(self) -> None:
        """Closes the clients, if this publisher made them."""
        if self._owns_client:
            self.client.close()
            for client in self._bounded.values():
                client.close()
            self._bounded.clear()

    def __enter__(self) -> "StepResultPublisher":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, prepared: _Prepared, deadline_s: float | None) -> list[str]:
        job = self._job(prepared, deadline_s)
        for delay_s, requests in job.rounds():
            if delay_s:
                time.sleep(delay_s)
            for request in requests:
                left_s = job.time_left_s()
                if left_s is not None and left_s < MIN_CALL_S:
                    job.record_expired(request, "no time left for the call before the deadline")
                    continue
                try:
                    response = self._client_within(left_s).send_message_batch(
                        QueueUrl=self.queue_url, Entries=request.entries
                    )
                except (ClientError, BotoCoreError) as exc:
                    job.record_error(request, exc)
                else:
                    job.record_response(request, response)
        return self._outcome(job, prepared)

    def _client_within(self, left_s: float | None) -> SyncSQSClient:
        """A client whose one call cannot outlast `left_s` seconds, where this publisher can
        make one; botocore has no per-call timeout, so a client of shorter ones is made."""
        if left_s is None or left_s >= WORST_CALL_S or self._session is None:
            return self.client
        budget_s = max((b for b in BOUNDED_CALL_S if b <= left_s), default=BOUNDED_CALL_S[0])
        client = self._bounded.get(budget_s)
        if client is None:
            connect_s = min(CONNECT_TIMEOUT_S, budget_s / 2)
            client = self._bounded[budget_s] = _sqs_client(
                self._session,
                connect_timeout_s=connect_s,
                read_timeout_s=budget_s - connect_s,
                attempts=1,
            )
        return client


# --- the asynchronous publisher (aiobotocore) ----------------------------------------------


class AsyncStepResultPublisher(_Publishing):
    """`StepResultPublisher` on aiobotocore, for asyncio processors.

    Use it as `async with AsyncStepResultPublisher(url) as publisher:`, or call `aclose()`
    when done; the client is opened on first use. A `client` given is used and left open.
    With `deadline_s`, each call is cancelled at the deadline, whatever client makes it.
    """

    def __init__(
        self,
        queue_url: str,
        *,
        client: AsyncSQSClient | None = None,
        attempts: int = 4,
        backoff_s: float = 0.2,
    ) -> None:
        super().__init__(queue_url, attempts=attempts, backoff_s=backoff_s)
        self._client = client
        self._stack: contextlib.AsyncExitStack | None = None

    async def publish(self, result: Publishable, *, deadline_s: float | None = None) -> str:
        """Validates and sends one result; returns its SQS message id."""
        return (await self.publish_many([result], deadline_s=deadline_s))[0]

    async def publish_many(
        self, results: Iterable[Publishable], *, deadline_s: float | None = None
    ) -> list[str]:
        """Validates every result, then sends them in batches; returns their ids in order."""
        return await self._run(self._prepare(results), deadline_s)

    async def send(
        self, messages: Sequence[OutgoingMessage], *, deadline_s: float | None = None
    ) -> list[str]:
        """Sends prepared messages as they are, unvalidated: for tools and tests of bad input."""
        return await self._run(self._prepare_messages(messages), deadline_s)

    async def aclose(self) -> None:
        """Closes the client, if this publisher opened it."""
        stack, self._stack = self._stack, None
        if stack is not None:
            self._client = None
            await stack.aclose()

    async def __aenter__(self) -> "AsyncStepResultPublisher":
        await self._open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _open(self) -> AsyncSQSClient:
        if self._client is None:
            # Imported here so that importing relay.producer never loads aiobotocore.
            from relay.sqs import open_sqs

            stack = contextlib.AsyncExitStack()
            client = await stack.enter_async_context(open_sqs())
            if self._client is None:
                self._client, self._stack = client, stack
            else:
                # Another task opened one while this one waited: keep that one.
                await stack.aclose()
        return self._client

    async def _run(self, prepared: _Prepared, deadline_s: float | None) -> list[str]:
        job = self._job(prepared, deadline_s)
        client = await self._open()
        for delay_s, requests in job.rounds():
            if delay_s:
                await asyncio.sleep(delay_s)
            for request in requests:
                left_s = job.time_left_s()
                if left_s is not None and left_s < MIN_CALL_S:
                    job.record_expired(request, "no time left for the call before the deadline")
                    continue
                try:
                    # Cancelling the call bounds botocore's timeouts and retries with it; it
                    # is cut a little early so that the cancelling, too, is done by the deadline.
                    async with asyncio.timeout(None if left_s is None else left_s - CANCEL_S):
                        response = await client.send_message_batch(
                            QueueUrl=self.queue_url,
                            Entries=request.entries,  # type: ignore[arg-type]
                        )
                except TimeoutError:
                    job.record_expired(request, "the call was still running at the deadline")
                except (ClientError, BotoCoreError) as exc:
                    job.record_error(request, exc)
                else:
                    job.record_response(request, response)
        return self._outcome(job, prepared)


# --- the custom-step decorator -------------------------------------------------------------

E = TypeVar("E", bound=Mapping[str, Any])
R = TypeVar("R")
OnError = Literal["publish", "raise"]

_shared: dict[str, StepResultPublisher] = {}
_shared_lock = threading.Lock()


def shared_publisher(queue_url: str | None = None) -> StepResultPublisher:
    """One publisher per queue per process, made on first use, so that a Lambda container
    reuses its client; the queue defaults to `RELAY_QUEUE_URL`, read now."""
    url = queue_url or os.environ.get(QUEUE_URL_ENV, "")
    if not url:
        raise ConfigError(
            f"no queue for step results: set {QUEUE_URL_ENV} or pass custom_step(queue_url=...)"
        )
    with _shared_lock:
        publisher = _shared.get(url)
        if publisher is None:
            publisher = _shared[url] = StepResultPublisher(url)
        return publisher


@overload
def custom_step(handler: Callable[[E, Any], R], /) -> Callable[[E, Any], R | None]: ...


@overload
def custom_step(
    handler: None = None,
    /,
    *,
    queue_url: str | None = None,
    on_error: OnError = "publish",
    publisher: StepResultPublisher | None = None,
) -> Callable[[Callable[[E, Any], R]], Callable[[E, Any], R | None]]: ...


def custom_step(
    handler: Callable[[E, Any], R] | None = None,
    /,
    *,
    queue_url: str | None = None,
    on_error: OnError = "publish",
    publisher: StepResultPublisher | None = None,
) -> Any:
    """Wraps a custom step's `handler(event, context)`: return publishes SUCCESS, raise FAILURE.

    Used bare (`@custom_step`) or with options. The event must be the one Transfer Family
    hands the step; one that is not raises `InvalidMessage` before the handler runs.

    - The handler returns: SUCCESS is published and its return value returned.
    - It raises: FAILURE is published, the exception logged (token shortened) and None
      returned, so Lambda's own retries do not run a step that has been answered. With
      `on_error="raise"` nothing is published and the exception propagates (Lambda retries).
    - Publishing fails after its retries: `PublishError` propagates, so the invocation fails
      visibly. Under Lambda (a `context` with `get_remaining_time_in_millis`) the retries stop
      before the invocation's time runs out, keeping a margin (`LAMBDA_MARGIN_SHARE` of it, at
      most `LAMBDA_MARGIN_MAX_S`), so the error is raised, not cut off by the timeout.
    - The queue is `queue_url`, else `RELAY_QUEUE_URL` (read on each call; missing:
      `ConfigError`); `publisher` replaces the process-wide one (tests, custom clients).
    """
    if on_error not in ("publish", "raise"):
        raise ValueError(f"on_error must be 'publish' or 'raise', not {on_error!r}")

    def decorate(function: Callable[[E, Any], R]) -> Callable[[E, Any], R | None]:
        @functools.wraps(function)
        def run_step(event: E, context: Any) -> R | None:
            success = StepResult.from_event(event, Status.SUCCESS)
            target = publisher if publisher is not None else shared_publisher(queue_url)
            try:
                value = function(event, context)
            except Exception:
                if on_error == "raise":
                    raise
                failure = dataclasses.replace(success, status=Status.FAILURE)
                message_id = target.publish(failure, deadline_s=publish_deadline_s(context))
                logger.exception(
                    "custom step failed: FAILURE published "
                    "(workflow %s, execution %s, token %s, message %s)",
                    failure.workflow_id,
                    failure.execution_id,
                    short_token(failure.token),
                    message_id,
                )
                return None
            message_id = target.publish(success, deadline_s=publish_deadline_s(context))
            logger.info(
                "custom step done: SUCCESS published (workflow %s, execution %s, token %s, "
                "message %s)",
                success.workflow_id,
                success.execution_id,
                short_token(success.token),
                message_id,
            )
            return value

        return run_step

    return decorate if handler is None else decorate(handler)


def publish_deadline_s(context: Any) -> float | None:
    """Seconds a publish may take in a Lambda invocation: its remaining time less the margin;
    None for a context that does not tell (not Lambda, a test's None)."""
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if not callable(remaining_ms):
        return None
    left_s = float(remaining_ms()) / 1000
    return left_s - min(LAMBDA_MARGIN_MAX_S, LAMBDA_MARGIN_SHARE * max(left_s, 0.0))
