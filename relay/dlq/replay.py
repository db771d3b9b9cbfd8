"""`relay replay`: selected DLQ messages (or an export file's) back onto a queue, or straight to
Transfer Family, with bounded concurrency and rate.

A DLQ message is deleted only after its replay succeeded: accepted by the destination queue,
or answered 200 by Transfer Family. Any other end gives it back, visible at once.

A copy whose execution has finished (DESIGN §11, `relay.executions`) is not replayed: it stays
in the DLQ, counted as skipped `execution_finished` (`--include-finished` replays it); a copy
whose execution could not be read is replayed and counted as unchecked. Each copy's state is
found in a task of its own (`relay.dlq.selection.Judging`), so reading never waits on it.

Where a copy may go is `relay.dlq.destinations`: without `--queue-url`, only to a queue SQS
lists as this DLQ's source.

A copy carries its trace context on (DESIGN §12): with tracing on, each replay is a span (`replay
DLQ`) in the trace the DLQ message carries, and the copy put back carries the context of its
send; off, the copy carries what the DLQ message carried.
"""

import asyncio
import contextlib
import functools
import hashlib
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from relay.config.dlq import ReplayConfig
from relay.dead_letter import DlqMessage
from relay.dlq.destinations import (
    Destinations,
    Failure,
    ReplayFailure,
    Route,
    allowed_destinations,
)
from relay.dlq.replay_summary import ReplaySummary
from relay.dlq.scan import RECEIVERS, DlqReader
from relay.dlq.selection import NOT_A_STEP_RESULT, Judging, in_states, selects
from relay.executions import ExecutionState, ExecutionStates, Verdict, open_execution_states
from relay.lifecycle import KEPT_MARGIN_S, Shutdown, drain, handling_signals, wait_any
from relay.limits import RetryPolicy, TokenBucket
from relay.message import InvalidMessage, StepResult, parse, step_or_none
from relay.outcomes import CallFailure, Limits, Reason, Situation, judge
from relay.progress import ProgressView, no_progress
from relay.sqs import (
    BatchedQueue,
    OutgoingMessage,
    SqsError,
    check_queue,
    is_fifo,
    open_sqs,
    queue_name,
)
from relay.tracing import NO_TRACING, Span, Tracing
from relay.tracing.context import W3C_ATTRIBUTES, TraceContext
from relay.transfer import CallbackFailed, CallNotStarted, TransferSender, open_transfer

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

PENDING_BYTES_LIMIT: Final = 64 * 1024 * 1024
"""Bodies waiting for their replay; past it, reading waits for the replays to catch up."""

LAST_RECEIVE: Final = Limits(
    max_receives=1,
    callback_deadline_s=math.inf,
    breaker_cooldown_s=0.0,
    release_base_s=0.0,
    release_cap_s=0.0,
)
"""A replay to Transfer Family has one go: its failure ends as the worker's last receive would."""


class Replayer:
    """Replays selected messages with bounded concurrency and rate; finishes each one once."""

    def __init__(
        self,
        config: ReplayConfig,
        summary: ReplaySummary,
        shutdown: Shutdown,
        *,
        sqs: SQSClient,
        sender: TransferSender | None,
        reader: DlqReader | None,
        states: ExecutionStates,
        destinations: Destinations | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self.judging = Judging(states)
        self.tracing = tracing
        self._source_name = (
            queue_name(config.scan.dlq_url)
            if config.scan is not None
            else os.path.basename(config.from_file or "export")
        )
        self.summary = summary
        self.shutdown = shutdown
        self.sqs = sqs
        self.sender = sender
        self.reader = reader
        self.destinations = destinations
        """Where copies may go (`--to queue`); None for `--to transfer`."""
        self.bucket = TokenBucket(config.rate, burst=1)
        self.started_at = time.time()
        """Ages are measured from the command's start, so one run applies one cut-off."""
        self._queue: asyncio.Queue[tuple[DlqMessage, Route | None, Verdict] | None] = (
            asyncio.Queue()
        )
        self._pending_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._destinations: dict[str, BatchedQueue] = {}
        self._denied: set[str] = set()

    def wants_more(self) -> bool:
        """Whether reading should go on: fewer than `--max-messages` selected so far."""
        return self.summary.selected < self.config.max_messages

    async def run(self, read: Callable[[], Awaitable[None]]) -> None:
        """Reads (offering each message), replays what was selected, drains on a stop."""
        workers = [
            asyncio.create_task(self._work(), name=f"replay-{i}")
            for i in range(0 if self.config.dry_run else self.config.concurrency)
        ]
        try:
            await read()
            await self.judging.finish(self.shutdown.requested)
        finally:
            await self.judging.cancel()  # only after an error is anything left to cancel
            self.summary.not_judged = self.judging.cancelled
            for _ in workers:
                self._queue.put_nowait(None)  # one end marker each
            await self._finish(workers)

    async def _finish(self, workers: list[asyncio.Task[None]]) -> None:
        """Waits for the replays; after a stop, in-flight ones get the grace, a second signal
        or the grace's end cancels them (their messages are given back)."""
        if workers:
            finished = asyncio.Event()
            waiter = asyncio.ensure_future(asyncio.wait(workers))
            waiter.add_done_callback(lambda _: finished.set())
            await wait_any(finished, self.shutdown.requested)
            waiter.cancel()
            await drain(
                workers,
                grace_s=self.config.shutdown_grace_s,
                abandon=self.shutdown.abandon,
                keep=self.shutdown.is_settling,
                keep_at_most_s=self.config.call_timeout_s + KEPT_MARGIN_S,
            )
        await asyncio.gather(*(queue.drain() for queue in self._destinations.values()))

    async def offer(self, message: DlqMessage) -> None:
        """Takes one message read: one the filters choose has its execution's state found
        (`_judged` goes on), the rest go back."""
        summary = self.summary
        summary.read += 1
        if message.unreadable_date:
            summary.unreadable_dates += 1
        step = step_or_none(message.body)
        workflow_id = step.workflow_id if step is not None else None
        if not selects(self.config.filters, message, workflow_id, self.started_at):
            summary.skipped_by_filter += 1
            await self._give_back(message)
            return
        if step is None or not self.judging.states.checking:
            # Nothing to read: the state is known at once.
            await self._judged(message, workflow_id, await self.judging.states.state(step))
            return
        await self.judging.judge(
            step, len(message.body), functools.partial(self._judged, message, workflow_id)
        )

    async def _judged(self, message: DlqMessage, workflow_id: str | None, verdict: Verdict) -> None:
        """A copy the other filters chose, with its execution's state: selected and queued for
        replay, or given back."""
        summary = self.summary
        if not in_states(self.config.filters.execution_states, verdict):
            summary.skipped_by_filter += 1
            await self._give_back(message)
            return
        summary.executions.add(workflow_id, verdict, message.age_s(self.started_at))
        if verdict.state is ExecutionState.FINISHED and not self.config.include_finished:
            summary.skipped_finished += 1
            await self._give_back(message)
            return
        if not self.wants_more():
            summary.skipped_over_limit += 1
            await self._give_back(message)
            return
        summary.selected += 1
        summary.selected_by_reason[message.reason] += 1
        summary.selected_by_workflow[workflow_id or NOT_A_STEP_RESULT] += 1
        summary.selected_by_state[verdict.state.value] += 1
        route: Route | None = None
        if self.destinations is not None:
            routed = self.destinations.route(message)
            if isinstance(routed, Route):
                route = routed
                summary.route(route)
            elif self.config.dry_run:
                summary.would_fail(*routed)
            else:
                summary.fail(*routed)
                await self._give_back(message)
                return
        if self.config.dry_run:
            await self._give_back(message)
            return
        # Bodies wait in memory; past a bound, reading waits for the replays to catch up.
        # Bounded: each pass waits for room or a stop, and the workers keep making room.
        while self._pending_bytes > PENDING_BYTES_LIMIT and not self.shutdown.is_requested:
            self._room.clear()
            await wait_any(self._room, self.shutdown.requested)
        self._pending_bytes += len(message.body)
        self._queue.put_nowait((message, route, verdict))

    async def _work(self) -> None:
        """One of `--concurrency` replayers: takes queued messages until its end marker."""
        # Bounded: the queue holds what was read (at most `--max-messages` selected) and ends
        # with one marker per worker.
        while (item := await self._queue.get()) is not None:
            message, route, verdict = item
            self._pending_bytes -= len(message.body)
            if self._pending_bytes <= PENDING_BYTES_LIMIT:
                self._room.set()
            # After a stop, nothing new starts: the rest goes back at once.
            if self.shutdown.is_requested or not await self._token():
                await self._give_back(message)
                continue
            try:
                await self._finish_one(message, route, verdict)
            finally:
                self.shutdown.unsettle()

    async def _finish_one(self, message: DlqMessage, route: Route | None, verdict: Verdict) -> None:
        """Replays one message and deletes it from the DLQ, or gives it back. A call on the
        wire marks the task settling (the drain waits for it, DESIGN §3) until this ends."""
        with self.tracing.process(
            self._source_name,
            message.message_id,
            None,
            message.trace_header,
            message.attributes,
            operation="replay",
        ) as span:
            await self._finish_traced(message, route, verdict, span)

    async def _finish_traced(
        self, message: DlqMessage, route: Route | None, verdict: Verdict, span: Span
    ) -> None:
        step = step_or_none(message.body)
        if step is not None:
            span.step(step)
        span.execution_state(verdict.state.value)
        try:
            failure = await self._replay(message, route)
        except CallNotStarted:  # the stop left no time for a call: untouched, back it goes
            span.ended("abandoned", None, None, None)
            await self._give_back(message)
            return
        except Exception as exc:
            # A bug or an unforeseen refusal fails this message, which stays in the DLQ;
            # it must not stop this replayer and strand the messages queued behind it.
            failure = Reason.UNEXPECTED_ERROR, f"{type(exc).__name__}: {exc}"
        if failure is None:
            span.ended("replayed", None, None, None)
            self.summary.replayed += 1
            self.summary.replayed_by_reason[message.reason] += 1
            self.summary.replayed_by_state[verdict.state.value] += 1
            if self.reader is not None and not await self.reader.delete(message.message_id):
                self.summary.not_deleted += 1
        else:
            span.ended("failed", failure[0], None, None)
            self.summary.fail(*failure)
            await self._give_back(message)

    async def _token(self) -> bool:
        """Waits for the rate limit's next token; False when a stop comes first."""
        # Bounded: each pass takes a token or sleeps exactly until the next one is due.
        while (wait_s := self.bucket.try_take()) > 0:
            await wait_any(self.shutdown.requested, timeout_s=wait_s)
            if self.shutdown.is_requested:
                return False
        return True

    async def _give_back(self, message: DlqMessage) -> None:
        if self.reader is not None:
            await self.reader.give_back(message.message_id)

    async def _replay(self, message: DlqMessage, route: Route | None) -> Failure | None:
        """Replays one message; None when it succeeded, else (reason, detail)."""
        if self.sender is not None:
            return await self._to_transfer(message, self.sender)
        if route is None:
            raise RuntimeError("a replay to a queue without a route")
        return await self._to_queue(message, route.queue_url)

    async def _to_queue(self, message: DlqMessage, queue_url: str) -> Failure | None:
        destination = self._destinations.get(queue_url)
        if destination is None:
            destination = self._destinations[queue_url] = BatchedQueue(self.sqs, queue_url)
        with self.tracing.send(queue_name(queue_url)) as span:
            try:
                await destination.send(requeued(message, queue_url, span.context()))
            except SqsError as exc:
                span.failed(exc.code)
                return ReplayFailure.SEND_FAILED, f"{queue_url}: {exc}"
        return None

    async def _to_transfer(self, message: DlqMessage, sender: TransferSender) -> Failure | None:
        try:
            step = parse(message.body)
        except InvalidMessage as exc:
            return Reason.VALIDATION, str(exc)
        if step.workflow_id in self._denied:
            # One AccessDenied is an IAM mistake: the workflow's other messages wait for the fix.
            detail = f"workflow {step.workflow_id} answered AccessDeniedException"
            return Reason.ACCESS_DENIED, detail
        try:
            await sender.send(step)
        except CallbackFailed as failed:
            return self._failure(step.workflow_id, failed.error.failure, failed.attempts)
        return None

    def _failure(self, workflow_id: str, failure: CallFailure, attempts: int) -> Failure:
        """What the worker would dead-letter this answer as on its last receive."""
        reason = judge(Situation(receive_count=1), failure, LAST_RECEIVE).reason
        detail = f"{failure.code}: {failure.message}"
        if reason is Reason.ACCESS_DENIED:
            self._denied.add(workflow_id)
        if reason is None or reason is Reason.RETRIES_EXHAUSTED:
            return Reason.RETRIES_EXHAUSTED, f"{detail} after {attempts} attempt(s)"
        return reason, detail


def _chosen_steps(config: ReplayConfig, records: list[DlqMessage], now: float) -> list[StepResult]:
    """The step results of the records the filters other than `--execution-state` choose."""
    chosen = []
    for record in records:
        step = step_or_none(record.body)
        if step is not None and selects(config.filters, record, step.workflow_id, now):
            chosen.append(step)
    return chosen


def requeued(
    message: DlqMessage, queue_url: str, context: TraceContext | None = None
) -> OutgoingMessage:
    """The copy put back on a queue: the body verbatim, without relay's attributes, carrying
    `context` on (the replay's, with tracing on), else the trace context the DLQ message
    carries."""
    if context is None or context.empty:
        context = message.trace_context
    attributes = {
        name: value
        for name, value in message.forwarded_attributes().items()
        if name not in W3C_ATTRIBUTES
    }
    attributes.update(context.attributes)
    if not is_fifo(queue_url):
        return OutgoingMessage(
            body=message.body, attributes=attributes, trace_header=context.trace_header
        )
    step = step_or_none(message.body)
    group_id = message.group_id or (step.execution_id if step is not None else None) or "relay"
    # One id per DLQ message, the same on every run: a re-run after an interruption is
    # deduplicated. Not the producer's id (a hash of the four fields), which would make SQS
    # drop a replay sent within 5 minutes of the original.
    dedup = "replay-" + hashlib.sha256(message.message_id.encode()).hexdigest()
    return OutgoingMessage(
        body=message.body,
        attributes=attributes,
        group_id=group_id,
        deduplication_id=dedup,
        trace_header=context.trace_header,
    )


async def replay(
    config: ReplayConfig,
    records: list[DlqMessage] | None = None,
    progress: ProgressView = no_progress,
    *,
    tracing: Tracing = NO_TRACING,
) -> ReplaySummary:
    """Replays from the DLQ (`config.scan`) or the export file's `records`, to the end or a
    signal; returns the summary."""
    started = time.monotonic()
    started_at = time.time()
    if config.to == "transfer":
        destination = "transfer"
    else:
        destination = f"queue {config.queue_url or '(each relay-source-queue)'}"
    source = config.from_file if config.scan is None else config.scan.dlq_url
    summary = ReplaySummary(source=str(source), destination=destination, dry_run=config.dry_run)
    shutdown = Shutdown(config.shutdown_grace_s)
    reader: DlqReader | None = None
    async with contextlib.AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            open_sqs(max_pool_connections=RECEIVERS + config.concurrency + 16)
        )
        sender: TransferSender | None = None
        if config.to == "transfer" and not config.dry_run:
            transfer = await stack.enter_async_context(
                open_transfer(
                    max_pool_connections=config.concurrency, call_timeout_s=config.call_timeout_s
                )
            )
            sender = TransferSender(
                transfer,
                RetryPolicy(),
                shutdown=shutdown,
                call_timeout_s=config.call_timeout_s,
                tracing=tracing,
            )
        states = await stack.enter_async_context(
            open_execution_states(config.reads, enabled=config.executions)
        )
        if records is not None:
            # A file's copies are all known before any is replayed: each workflow is read the
            # cheaper way at once.
            states.expect(_chosen_steps(config, records, started_at), complete=True)
        if config.queue_url and not config.dry_run:
            await check_queue(sqs, config.queue_url, "destination queue")
        # Signals first: a Ctrl-C while held messages are given back must not cut that short.
        stack.enter_context(handling_signals(shutdown))
        if config.scan is not None:
            await check_queue(sqs, config.scan.dlq_url, "DLQ")
        destinations = await allowed_destinations(sqs, config) if config.to == "queue" else None
        if destinations is not None:
            summary.unchecked_why = destinations.unchecked_why
        if config.scan is not None:
            reader = await stack.enter_async_context(
                DlqReader(sqs, config.scan, shutdown).holding()
            )
        replayer = Replayer(
            config,
            summary,
            shutdown,
            sqs=sqs,
            sender=sender,
            reader=reader,
            states=states,
            destinations=destinations,
            tracing=tracing,
        )
        await stack.enter_async_context(progress("replay", summary.progress))

        async def read() -> None:
            if reader is not None:
                await reader.scan(replayer.offer, more=replayer.wants_more)
                return
            # Bounded: one pass per record of the file.
            for record in records or []:
                if shutdown.is_requested or not replayer.wants_more():
                    break
                await replayer.offer(record)

        await replayer.run(read)
        summary.executions.read_from(states)
    summary.interrupted = shutdown.is_requested
    if reader is not None:
        summary.end = reader.end
    else:
        summary.end.stopped_by = (
            f"signal ({shutdown.reason})" if summary.interrupted else "end of file"
        )
    summary.duration_s = time.monotonic() - started
    return summary
