"""The service (`relay run`): pollers, the in-flight budget, FIFO chains, health, the lease
heartbeat and a staged shutdown. One message's path from received to finished is
`relay.delivery`; the rules it follows are `relay.outcomes.decide`.
"""

import asyncio
import collections
import contextlib
import random
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TextIO

from aiobotocore.session import AioSession

from relay.aws import new_session
from relay.awsjson.signing import ClockOffset
from relay.config import RunConfig
from relay.dedupe import DedupeTable, DedupeUnavailable, open_dedupe_table
from relay.delivery import Delivery, MessageResult
from relay.emf import report_emf
from relay.errors import ConfigError
from relay.http import create_app, serve_http
from relay.lifecycle import (
    KEPT_MARGIN_S,
    Lease,
    LeaseHeartbeat,
    Shutdown,
    cancel_and_wait,
    drain,
    handling_signals,
    wait_any,
    wait_until_empty,
)
from relay.limits import InFlightBudget
from relay.observability import Metrics, get_logger
from relay.outcomes import Outcome, Verdict
from relay.sqs import (
    MAX_MESSAGE_BYTES,
    BatchedQueue,
    QueueSettings,
    ReceivedMessage,
    SqsError,
    is_fifo,
    queue_total,
    receive_messages,
    resolve_queue,
)
from relay.sqs.lean import open_hot_sqs
from relay.tracing import NO_TRACING, Tracing
from relay.transfer import CallbackClient, open_lean_transfer, open_transfer

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

log = get_logger("relay.worker")

LEASE_AHEAD_S: Final = 2.0
"""Under a send rate, hold about this many seconds of sending in flight."""


def finished_count(counts: Mapping[str, int]) -> int:
    """Messages finished for good, of counts by outcome."""
    return sum(counts.get(outcome.value, 0) for outcome in Outcome if outcome.is_final)


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """What an observer (the demo's display, a test) sees of a running worker."""

    in_flight: int
    send_rate: float
    """Callbacks per second allowed now (0 = no limit)."""
    throttled: int
    """Callback attempts Transfer Family throttled."""
    counts: Mapping[str, int]
    """Finished messages by outcome."""
    by_reason: Mapping[tuple[str, str], int]
    """Finished messages by (outcome, reason); the reason is empty where there is none."""

    @property
    def finished(self) -> int:
        """Messages finished for good."""
        return finished_count(self.counts)


@dataclass(slots=True)
class MessageLease(Lease):
    """A message this process holds, with its lease."""

    message: ReceivedMessage


class Worker:
    """Receives step results and hands each to its path; finishes every message once."""

    def __init__(
        self,
        config: RunConfig,
        *,
        sqs: SQSClient,
        transfer: CallbackClient,
        dlq_url: str,
        metrics: Metrics | None = None,
        table: DedupeTable | None = None,
        dlq_max_bytes: int = MAX_MESSAGE_BYTES,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.metrics = metrics or Metrics()
        self.queue = BatchedQueue(sqs, config.queue_url)
        self.dlq = BatchedQueue(sqs, dlq_url)
        self.shutdown = Shutdown(config.shutdown_grace_s)
        self.delivery = Delivery(
            config,
            queue=self.queue,
            dlq=self.dlq,
            transfer=transfer,
            metrics=self.metrics,
            table=table,
            dlq_max_bytes=dlq_max_bytes,
            shutdown=self.shutdown,
            tracing=tracing,
        )
        self._draining = False
        self._receive_failures = 0
        # By receipt handle: one message id can be held twice if a lease lapsed and SQS handed
        # the message out again, and each receive must be finished on its own.
        self._in_flight: dict[str, MessageLease] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.budget = InFlightBudget(
            config.max_in_flight, self.delivery.rate, lease_ahead_s=LEASE_AHEAD_S
        )
        self._fifo = is_fifo(config.queue_url)
        self.heartbeat = LeaseHeartbeat(
            self._in_flight.values,
            self.queue.change_visibility,
            config.visibility_timeout_s,
            on_extended=lambda lease: self.metrics.heartbeats.inc(),
            on_failed=self._extension_failed,
        )
        # Gauges read at scrape time, so they can never drift from the state they describe.
        self.metrics.in_flight.set_function(lambda: len(self._in_flight))
        self.metrics.open_circuits.set_function(lambda: len(self.delivery.circuits))
        self.metrics.oldest_in_flight.set_function(self.oldest_in_flight_age_s)
        self.metrics.send_rate.set_function(lambda: self.delivery.rate.rate)

    @property
    def counts(self) -> collections.Counter[str]:
        """Finished messages by outcome."""
        return self.delivery.counts

    @property
    def finished(self) -> int:
        """Messages finished for good (cheap: no metrics are read)."""
        return finished_count(self.counts)

    @property
    def in_flight(self) -> int:
        """Messages held now."""
        return len(self._in_flight)

    def status(self) -> WorkerStatus:
        """The worker as an observer sees it now."""
        return WorkerStatus(
            in_flight=len(self._in_flight),
            send_rate=self.delivery.rate.rate,
            throttled=round(self.metrics.total(self.metrics.throttles)),
            counts=dict(self.counts),
            by_reason=self.metrics.outcome_counts(),
        )

    def oldest_in_flight_age_s(self) -> float:
        """Seconds since the oldest message held was sent (0 when none is)."""
        oldest = min((h.message.sent_at for h in self._in_flight.values()), default=None)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def _extension_failed(self, lease: Lease, exc: BaseException) -> None:
        if lease.receipt_handle in self._in_flight:  # finished meanwhile: no error
            self.metrics.visibility_errors.inc()

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Starts the drain; a second call abandons what is still in flight at once."""
        self.shutdown(reason)

    def health(self) -> tuple[bool, str]:
        """200 while the pollers run; 503 while draining or when SQS keeps failing."""
        if self._draining:
            return False, "draining"
        if self._receive_failures >= self.config.unhealthy_after:
            return False, f"{self._receive_failures} consecutive receive failures"
        return True, "polling"

    async def run(self, *, handle_signals: bool = True) -> None:
        """Runs until stopped (signal, `stop()`, or an empty queue with `--exit-when-empty`)."""
        signals = handling_signals(self.stop) if handle_signals else contextlib.nullcontext()
        started = time.monotonic()
        with signals:
            pollers = [
                asyncio.create_task(self._poll_loop(), name=f"poller-{i}")
                for i in range(self.config.pollers)
            ]
            if self.config.exit_when_empty:
                pollers.append(asyncio.create_task(self._watch_empty(), name="empty-watch"))
            heartbeat = asyncio.create_task(self.heartbeat.run(), name="heartbeat")
            log.info(
                "worker started",
                queue_url=self.config.queue_url,
                dlq_url=self.dlq_url,
                max_in_flight=self.config.max_in_flight,
                pollers=self.config.pollers,
                tracing=self.delivery.tracing.enabled,
            )
            try:
                await self.shutdown.requested.wait()
            finally:
                self._draining = True
                await self._stop(pollers, heartbeat)
        log.info(
            "worker stopped",
            reason=self.shutdown.reason,
            uptime_s=round(time.monotonic() - started, 3),
            **{f"n_{k}": v for k, v in sorted(self.counts.items())},
        )

    async def _stop(self, pollers: list[asyncio.Task[None]], heartbeat: asyncio.Task[None]) -> None:
        """Stop receiving, let in-flight messages finish within the grace, give back the rest.

        A message whose call is on the wire, or whose end is being carried out on the queue, is
        waited for past the grace (its call timeout bounds it); only what waits is cancelled.
        """
        await cancel_and_wait(pollers)
        if self._tasks:
            log.info("draining", in_flight=len(self._tasks), grace_s=self.config.shutdown_grace_s)
            await drain(
                self._tasks,
                grace_s=self.config.shutdown_grace_s,
                abandon=self.shutdown.abandon,
                keep=self.shutdown.is_settling,
                keep_at_most_s=self.config.call_timeout_s + KEPT_MARGIN_S,
            )
        await self._abandon_all()
        await cancel_and_wait([heartbeat])
        await asyncio.gather(self.queue.drain(), self.dlq.drain())

    async def _abandon_all(self) -> None:
        """Whatever is still held goes back with visibility 0, so another task takes it now."""
        held = list(self._in_flight.values())
        self._in_flight.clear()
        results = await asyncio.gather(
            *(self.queue.change_visibility(h.receipt_handle, 0) for h in held),
            return_exceptions=True,
        )
        for lease, result in zip(held, results, strict=True):
            if isinstance(result, BaseException):
                self.metrics.visibility_errors.inc()
            self.delivery.record(lease.message, MessageResult(Verdict(Outcome.ABANDONED)))

    async def _watch_empty(self) -> None:
        """For `--exit-when-empty`: stop once the queue and this process hold nothing."""

        async def total() -> int | None:
            if self._tasks or self._in_flight:
                return None
            try:
                return await queue_total(self.sqs, self.config.queue_url)
            except SqsError:
                return None

        stop = self.shutdown.requested
        if await wait_until_empty(total, interval_s=self.config.empty_check_s, stop=stop):
            self.stop("queue empty")

    # --- receiving ---------------------------------------------------------------------------

    async def _poll_loop(self) -> None:
        while not self.shutdown.is_requested:
            reserved = await self.budget.reserve()
            try:
                messages = await receive_messages(
                    self.sqs,
                    self.config.queue_url,
                    max_messages=reserved,
                    wait_s=self.config.wait_time_s,
                    visibility_timeout_s=self.config.visibility_timeout_s,
                )
            except asyncio.CancelledError:
                self.budget.release(reserved)
                raise
            except SqsError as exc:
                self.budget.release(reserved)
                await self._receive_failed(exc)
                continue
            self._receive_failures = 0
            self.metrics.polls.labels(result="messages" if messages else "empty").inc()
            self.budget.release(reserved - len(messages))
            if self.shutdown.is_requested:
                # Arrived after the stop: straight back, visible at once.
                await self._give_back(messages, Outcome.ABANDONED)
                return
            self._start(messages)

    async def _receive_failed(self, exc: SqsError) -> None:
        self._receive_failures += 1
        self.metrics.receive_errors.inc()
        self.metrics.polls.labels(result="error").inc()
        delay = random.uniform(0, min(20.0, 0.5 * 2 ** min(self._receive_failures, 6)))
        log.warning(
            "receive failed",
            error_code=exc.code,
            error=exc.message,
            consecutive=self._receive_failures,
            retry_in_s=round(delay, 2),
        )
        await wait_any(self.shutdown.requested, timeout_s=delay)

    async def _give_back(self, messages: list[ReceivedMessage], outcome: Outcome) -> None:
        """Returns messages untouched, visible at once; each frees the slot it held."""
        for message in messages:
            self._in_flight.pop(message.receipt_handle, None)
            self.budget.release(1)
            try:
                await self.queue.change_visibility(message.receipt_handle, 0)
            except SqsError:
                self.metrics.visibility_errors.inc()  # back after its visibility timeout instead
            self.delivery.record(message, MessageResult(Verdict(outcome)))

    def _start(self, messages: list[ReceivedMessage]) -> None:
        """Takes a receive batch in hand: one task per message, or per group on a FIFO queue."""
        now = time.monotonic()
        for message in messages:
            self.metrics.received.inc()
            self._in_flight[message.receipt_handle] = MessageLease(
                message.receipt_handle, now, message
            )
        if self._fifo:
            chains: dict[str | None, list[ReceivedMessage]] = {}
            for message in messages:
                chains.setdefault(message.group_id, []).append(message)
            for chain in chains.values():
                self._spawn(self._process_chain(chain), chain[0].message_id)
        else:
            for message in messages:
                self._spawn(self._process(message), message.message_id)

    def _spawn(self, work: Coroutine[Any, Any, Any], message_id: str) -> None:
        task = asyncio.create_task(work, name=f"message-{message_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _process_chain(self, chain: list[ReceivedMessage]) -> None:
        """One FIFO group's messages of a batch, in order; once one is not finished, the rest go
        back untouched so SQS hands them out again behind it."""
        for position, message in enumerate(chain):
            result = await self._process(message)
            if result.outcome in (Outcome.RELEASED, Outcome.ABANDONED):
                await self._give_back(chain[position + 1 :], Outcome.RELEASED)
                return

    async def _process(self, message: ReceivedMessage) -> MessageResult:
        result = await self.delivery.process(message)
        if self._in_flight.pop(message.receipt_handle, None) is not None:
            self.budget.release(1)
        return result


# --- start-up ----------------------------------------------------------------------------------


async def check_queues(sqs: SQSClient, config: RunConfig) -> QueueSettings:
    """Checks the queue exists and finds its DLQ (exit 2 otherwise, or when the DLQ cannot hold
    what the queue can); warns about settings that defeat relay."""
    settings = await resolve_queue(sqs, config.queue_url, config.dlq_url)
    if settings.dlq_max_message_size < settings.max_message_size:
        raise ConfigError(
            f"the DLQ {settings.dlq_url} takes messages of at most "
            f"{settings.dlq_max_message_size} bytes, less than the queue {config.queue_url} "
            f"({settings.max_message_size}): a dead-letter copy of a large message could never "
            "be sent; raise the DLQ's MaximumMessageSize"
        )
    if config.shutdown_grace_s < config.call_timeout_s:
        log.warning(
            "--shutdown-grace is shorter than --call-timeout: after SIGTERM no new callback "
            "attempt can start (each must be able to finish within the grace), and a call on "
            "the wire may hold the stop for up to --call-timeout",
            shutdown_grace_s=config.shutdown_grace_s,
            call_timeout_s=config.call_timeout_s,
        )
    if settings.visibility_timeout_s < config.retry_budget_s:
        log.warning(
            "queue visibility timeout is shorter than the retry budget",
            queue_visibility_timeout_s=settings.visibility_timeout_s,
            retry_budget_s=config.retry_budget_s,
        )
    if settings.max_receive_count is not None and settings.max_receive_count <= config.max_receives:
        log.warning(
            "redrive maxReceiveCount is not above --max-receives: SQS will move messages to the "
            "DLQ before relay can annotate them",
            max_receive_count=settings.max_receive_count,
            max_receives=config.max_receives,
        )
    return settings


@contextlib.asynccontextmanager
async def open_table(
    config: RunConfig, session: AioSession, tracing: Tracing, clock: ClockOffset
) -> AsyncIterator[DedupeTable | None]:
    """The fleet's delivered-memory when `--dedupe-table` names one: checked at start-up (a
    missing or denied table is exit 2; one that does not answer now is a warning, and each
    message falls back to the local memory until it does)."""
    if not config.dedupe_table:
        yield None
        return
    async with open_dedupe_table(
        config.dedupe_table,
        session=session,
        max_pool_connections=config.max_in_flight,
        tracing=tracing,
        lean=config.lean_sender,
        clock=clock,
    ) as table:
        try:
            await table.check()
        except DedupeUnavailable as exc:
            log.warning(
                "dedupe table does not answer; starting with the local memory",
                table=config.dedupe_table,
                error=str(exc)[:300],
            )
        yield table


@contextlib.asynccontextmanager
async def open_worker(
    config: RunConfig,
    *,
    session: AioSession | None = None,
    metrics: Metrics | None = None,
    emf_stream: TextIO | None = None,
    tracing: Tracing = NO_TRACING,
) -> AsyncIterator[Worker]:
    """Opens the clients, the health server and the EMF writer, checks the queues, yields the
    worker; closes everything in reverse on the way out (the EMF writer flushes its last
    interval, so the documents add up to the whole run). `tracing` is the caller's to shut
    down."""
    session = session or new_session()
    clock = ClockOffset()
    async with (
        open_hot_sqs(
            session, lean=config.lean_sender, max_pool_connections=config.pollers + 20, clock=clock
        ) as sqs,
        (open_lean_transfer if config.lean_sender else open_transfer)(
            session,
            max_pool_connections=config.max_in_flight,
            call_timeout_s=config.call_timeout_s,
            clock=clock,
        ) as transfer,
        open_table(config, session, tracing, clock) as table,
    ):
        settings = await check_queues(sqs, config)
        worker = Worker(
            config,
            sqs=sqs,
            transfer=transfer,
            dlq_url=settings.dlq_url,
            dlq_max_bytes=settings.dlq_max_message_size,
            metrics=metrics,
            table=table,
            tracing=tracing,
        )
        worker.metrics.clock_offset.set_function(lambda: clock.seconds)
        app = create_app(worker.health, worker.metrics)
        async with (
            serve_http(app, config.http_host, config.http_port),
            report_emf(
                worker.metrics,
                queue_url=config.queue_url,
                interval_s=config.emf_interval_s,
                namespace=config.emf_namespace,
                stream=emf_stream,
            ),
        ):
            yield worker


async def run_worker(
    config: RunConfig, *, handle_signals: bool = True, tracing: Tracing = NO_TRACING
) -> Worker:
    """`relay run`: the worker until a signal or, with `--exit-when-empty`, an empty queue."""
    async with open_worker(config, tracing=tracing) as worker:
        await worker.run(handle_signals=handle_signals)
    return worker
