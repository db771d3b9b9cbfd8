"""The service (`relay run`): pollers, the in-flight bound, one message's path from received to
finished, the visibility heartbeat, and a staged shutdown.

Invariant (DESIGN §3): a message is deleted only after its callback succeeded or its
dead-letter copy was accepted by SQS. Everything else leaves it on the queue.
"""

import asyncio
import collections
import contextlib
import math
import random
import signal
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from relay.aws import new_session
from relay.config import RunConfig
from relay.errors import ConfigError
from relay.http import create_app, serve_http
from relay.limits import AdaptiveRate, Circuits, DeliveredMemory, StepKey
from relay.message import InvalidMessage, StepResult, parse
from relay.observability import Metrics, get_logger
from relay.outcomes import Action, Outcome, Reason
from relay.sqs import (
    Coalescer,
    DeadLetter,
    EntryFailed,
    QueueOps,
    ReceivedMessage,
    dead_letter_copy,
    error_code,
    is_fifo,
    open_sqs,
    receive_messages,
    send_messages,
)
from relay.transfer import (
    CallbackClient,
    CallbackError,
    CallbackFailed,
    RetryPolicy,
    TransferSender,
    open_lean_transfer,
    open_transfer,
)

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

log = get_logger("relay.worker")

_LEASE_AHEAD_S = 2.0
"""Under a send rate, hold about this many seconds of sending in flight."""

_ATTEMPT_MEMORY = 10_000
"""Message ids whose callback attempts are remembered across receives (relay-attempts)."""


@dataclass(slots=True)
class InFlight:
    """A message this process holds, and when its lease was last extended."""

    message: ReceivedMessage
    leased_at: float


@dataclass(frozen=True, slots=True)
class Finish:
    """How one message ended, for the log line and the metrics."""

    outcome: Outcome
    reason: str | None = None
    attempts: int = 0
    error: str | None = None
    delay_s: float | None = None


class _CallPacer:
    """The send rate before each call; what the answer teaches it, and the metrics, after."""

    def __init__(self, metrics: Metrics, rate: AdaptiveRate) -> None:
        self.metrics = metrics
        self.rate = rate

    async def before_call(self, step: StepResult) -> None:
        await self.rate.acquire()

    def after_call(self, step: StepResult, error: CallbackError | None, duration_s: float) -> None:
        if error is None:
            self.rate.accepted()
            self.metrics.attempts.labels(result="ok").inc()
            self.metrics.callback_latency.labels(result="ok").observe(duration_s)
            return
        self.metrics.attempts.labels(result=error.code).inc()
        self.metrics.callback_latency.labels(result="error").observe(duration_s)
        if error.rule.throttle:
            self.metrics.throttles.inc()
            self.rate.throttled()


class Worker:
    """Receives step results, sends their callbacks, and finishes every message once."""

    def __init__(
        self,
        config: RunConfig,
        *,
        sqs: SQSClient,
        transfer: CallbackClient,
        dlq_url: str,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self.sqs = sqs
        self.dlq_url = dlq_url
        self.metrics = metrics or Metrics()
        self.policy = RetryPolicy(
            max_attempts=config.max_attempts,
            budget_s=config.retry_budget_s,
            base_s=config.backoff_base_s,
            cap_s=config.backoff_cap_s,
            release_base_s=config.release_base_s,
            release_cap_s=config.release_cap_s,
        )
        self.rate = AdaptiveRate(config.max_rps, enabled=config.adaptive_rate)
        self.sender = TransferSender(transfer, self.policy, _CallPacer(self.metrics, self.rate))
        self.ops = QueueOps(sqs, config.queue_url)
        self.dead_letters: Coalescer[Any] = Coalescer("dead-letter", self._send_dead_letters)
        self._dlq_fifo = is_fifo(dlq_url)
        self._stop = asyncio.Event()
        self._abandon_now = asyncio.Event()
        self._stop_reason = ""
        self._draining = False
        self._receive_failures = 0
        # By receipt handle: one message id can be held twice if a lease lapsed and SQS handed
        # the message out again, and each receive must be finished on its own.
        self._in_flight: dict[str, InFlight] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._free = config.max_in_flight
        self._slot_freed = asyncio.Event()
        self._attempts_seen: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._fifo = is_fifo(config.queue_url)
        self.delivered = DeliveredMemory(config.dedupe_size, config.dedupe_ttl_s)
        self.circuits = Circuits(config.breaker_cooldown_s)
        self._pending_steps: dict[StepKey, asyncio.Future[Finish]] = {}
        # Gauges read at scrape time, so they can never drift from the state they describe.
        self.metrics.in_flight.set_function(lambda: len(self._in_flight))
        self.metrics.open_circuits.set_function(lambda: len(self.circuits))
        self.metrics.oldest_in_flight.set_function(self._oldest_in_flight_age)
        self.metrics.send_rate.set_function(lambda: self.rate.rate)
        self.counts: collections.Counter[str] = collections.Counter()

    def _oldest_in_flight_age(self) -> float:
        oldest = min((h.message.sent_at for h in self._in_flight.values()), default=None)
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self, reason: str = "stop") -> None:
        """Starts the drain; a second call abandons what is still in flight at once."""
        if self._stop.is_set():
            self._abandon_now.set()
            return
        self._stop_reason = reason
        self._stop.set()

    def health(self) -> tuple[bool, str]:
        """200 while the pollers run; 503 while draining or when SQS keeps failing."""
        if self._draining:
            return False, "draining"
        if self._receive_failures >= self.config.unhealthy_after:
            return False, f"{self._receive_failures} consecutive receive failures"
        return True, "polling"

    async def run(self, *, handle_signals: bool = True) -> None:
        """Runs until stopped (signal, `stop()`, or an empty queue with `--exit-when-empty`)."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop, sig.name)
        started = time.monotonic()
        background = [
            asyncio.create_task(self._poll_loop(), name=f"poller-{i}")
            for i in range(self.config.pollers)
        ]
        heartbeat = asyncio.create_task(self._heartbeat_loop(), name="heartbeat")
        if self.config.exit_when_empty:
            background.append(asyncio.create_task(self._watch_empty(), name="empty-watch"))
        log.info(
            "worker started",
            queue_url=self.config.queue_url,
            dlq_url=self.dlq_url,
            max_in_flight=self.config.max_in_flight,
            pollers=self.config.pollers,
        )
        try:
            await self._stop.wait()
        finally:
            self._draining = True
            await self._shutdown(background, heartbeat)
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            log.info(
                "worker stopped",
                reason=self._stop_reason,
                uptime_s=round(time.monotonic() - started, 3),
                **{f"n_{k}": v for k, v in sorted(self.counts.items())},
            )

    async def _shutdown(
        self, background: list[asyncio.Task[None]], heartbeat: asyncio.Task[None]
    ) -> None:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        if self._tasks:
            log.info("draining", in_flight=len(self._tasks), grace_s=self.config.shutdown_grace_s)
            abandon = asyncio.create_task(self._abandon_now.wait())
            await self._wait_drained(abandon)
            abandon.cancel()
        leftover = list(self._tasks)
        for task in leftover:
            task.cancel()
        await asyncio.gather(*leftover, return_exceptions=True)
        await self._abandon_all()
        heartbeat.cancel()
        await asyncio.gather(heartbeat, return_exceptions=True)
        await asyncio.gather(self.ops.drain(), self.dead_letters.drain())

    async def _wait_drained(self, abandon: asyncio.Task[bool]) -> None:
        deadline = time.monotonic() + self.config.shutdown_grace_s
        while self._tasks and not abandon.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.wait(
                [*self._tasks, abandon], timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )

    async def _abandon_all(self) -> None:
        """Whatever is still held goes back with visibility 0, so another task takes it now."""
        held = list(self._in_flight.values())
        self._in_flight.clear()
        results = await asyncio.gather(
            *(self.ops.change_visibility(h.message.receipt_handle, 0) for h in held),
            return_exceptions=True,
        )
        for held_message, result in zip(held, results, strict=True):
            if isinstance(result, BaseException):
                self.metrics.visibility_errors.inc()
            self._record(held_message.message, Finish(Outcome.ABANDONED), None)

    # --- receiving ---------------------------------------------------------------------------

    async def _reserve(self) -> int:
        """Waits for free slots and reserves up to 10, so nothing waits invisible for a slot."""
        while (room := self._room()) <= 0:
            self._slot_freed.clear()
            # Bounded wait: a rising send rate makes room without freeing a slot.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._slot_freed.wait(), 1.0)
        count = min(10, room)
        self._free -= count
        return count

    def _room(self) -> int:
        """Slots a poll may fill now: free ones, and under a send rate only about two seconds'
        worth in all, so messages are not leased only to wait for the rate."""
        room = self._free
        if (rate := self.rate.rate) > 0:
            in_use = self.config.max_in_flight - self._free
            room = min(room, max(1, math.ceil(rate * _LEASE_AHEAD_S)) - in_use)
        return room

    def _release_slots(self, count: int) -> None:
        self._free += count
        if count:
            self._slot_freed.set()

    async def _poll_loop(self) -> None:
        while not self._stop.is_set():
            reserved = await self._reserve()
            try:
                messages = await receive_messages(
                    self.sqs,
                    self.config.queue_url,
                    max_messages=reserved,
                    wait_s=self.config.wait_time_s,
                    visibility_timeout_s=self.config.visibility_timeout_s,
                )
            except asyncio.CancelledError:
                self._release_slots(reserved)
                raise
            except (ClientError, BotoCoreError, OSError) as exc:
                self._release_slots(reserved)
                await self._receive_failed(exc)
                continue
            self._receive_failures = 0
            self.metrics.polls.labels(result="messages" if messages else "empty").inc()
            self._release_slots(reserved - len(messages))
            if self._stop.is_set():
                # Arrived after the stop: straight back, visible at once.
                await self._give_back(messages, Outcome.ABANDONED)
                return
            self._start(messages)

    async def _receive_failed(self, exc: BaseException) -> None:
        self._receive_failures += 1
        self.metrics.receive_errors.inc()
        self.metrics.polls.labels(result="error").inc()
        delay = random.uniform(0, min(20.0, 0.5 * 2 ** min(self._receive_failures, 6)))
        log.warning(
            "receive failed",
            error_code=error_code(exc),
            error=str(exc)[:300],
            consecutive=self._receive_failures,
            retry_in_s=round(delay, 2),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _give_back(self, messages: list[ReceivedMessage], outcome: Outcome) -> None:
        """Returns messages untouched, visible at once; each frees the slot it held."""
        for message in messages:
            self._in_flight.pop(message.receipt_handle, None)
            self._release_slots(1)
            try:
                await self.ops.change_visibility(message.receipt_handle, 0)
            except (EntryFailed, ClientError, BotoCoreError, OSError):
                self.metrics.visibility_errors.inc()  # back after its visibility timeout instead
            self._record(message, Finish(outcome), None)

    def _start(self, messages: list[ReceivedMessage]) -> None:
        """Takes a receive batch in hand: one task per message, or per group on a FIFO queue."""
        now = time.monotonic()
        for message in messages:
            self.metrics.received.inc()
            self._in_flight[message.receipt_handle] = InFlight(message, now)
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
            finish = await self._process(message)
            if finish.outcome in (Outcome.RELEASED, Outcome.ABANDONED):
                await self._give_back(chain[position + 1 :], Outcome.RELEASED)
                return

    # --- one message -------------------------------------------------------------------------

    async def _process(self, message: ReceivedMessage) -> Finish:
        started = time.monotonic()
        try:
            step, finish = await self._handle(message)
        except asyncio.CancelledError:
            raise  # shutdown: `_abandon_all` returns the message
        except Exception as exc:  # a bug must not kill the worker; the message comes back
            log.exception("message failed unexpectedly", message_id=message.message_id)
            step, finish = None, Finish(Outcome.RELEASED, error=f"{type(exc).__name__}: {exc}")
        held = self._in_flight.pop(message.receipt_handle, None)
        if held is not None:
            self._release_slots(1)
            self._record(message, finish, step, time.monotonic() - started)
        return finish

    async def _handle(self, message: ReceivedMessage) -> tuple[StepResult | None, Finish]:
        try:
            step = parse(message.body)
        except InvalidMessage as exc:
            finish = await self._dead_letter(
                message, Reason.VALIDATION, "ValidationError", str(exc), 0
            )
            return None, finish
        key = step.step_key
        if (delivered := self.delivered.status_of(key)) is not None:
            return step, await self._settle_copy(message, step, delivered)
        first = self._pending_steps.get(key)
        if first is not None:
            # A copy of a result already in flight waits for it instead of racing it.
            shared = await asyncio.shield(first)
            if (delivered := self.delivered.status_of(key)) is not None:
                return step, await self._settle_copy(message, step, delivered)
            return step, await self._share(message, shared)
        future: asyncio.Future[Finish] = asyncio.get_running_loop().create_future()
        self._pending_steps[key] = future
        finish = Finish(Outcome.ABANDONED)
        try:
            finish = await self._deliver(message, step)
        finally:
            del self._pending_steps[key]
            future.set_result(finish)
        return step, finish

    async def _deliver(self, message: ReceivedMessage, step: StepResult) -> Finish:
        if not self.circuits.allow(step.workflow_id):
            return await self._circuit_open(message, step)
        try:
            delivery = await self.sender.send(step)
        except CallbackFailed as failed:
            self.metrics.retries.inc(failed.attempts - 1)
            return await self._failed(message, step, failed)
        self.metrics.retries.inc(delivery.attempts - 1)
        self.circuits.answered(step.workflow_id)
        self.delivered.remember(step.step_key, step.status.value)
        try:
            await self.ops.delete(message.receipt_handle)
        except (EntryFailed, ClientError, BotoCoreError, OSError) as exc:
            # Delivered, but SQS will hand it out again (as a duplicate); not done yet.
            self.metrics.delete_errors.inc()
            log.error(
                "delete failed after delivery", message_id=message.message_id, error=str(exc)[:300]
            )
            return Finish(
                Outcome.RELEASED,
                attempts=delivery.attempts,
                error=f"delete failed: {error_code(exc)}",
            )
        self.metrics.end_to_end_latency.observe(max(0.0, time.time() - message.sent_at))
        self._attempts_seen.pop(message.message_id, None)
        return Finish(Outcome.DELIVERED, attempts=delivery.attempts)

    async def _settle_copy(
        self, message: ReceivedMessage, step: StepResult, delivered_status: str
    ) -> Finish:
        """A copy of a result this process delivered: a duplicate, or a conflict."""
        if delivered_status == step.status.value:
            try:
                await self.ops.delete(message.receipt_handle)
            except (EntryFailed, ClientError, BotoCoreError, OSError) as exc:
                self.metrics.delete_errors.inc()
                return Finish(Outcome.RELEASED, error=f"delete failed: {error_code(exc)}")
            return Finish(Outcome.DUPLICATE)
        text = (
            f"step already delivered with status {delivered_status}; "
            f"this message says {step.status.value}"
        )
        finish = await self._dead_letter(message, Reason.CONFLICT, "Conflict", text, 0)
        if finish.outcome is Outcome.DEAD_LETTERED:
            return Finish(Outcome.CONFLICT, reason=Reason.CONFLICT.value, error=finish.error)
        return finish

    async def _share(self, message: ReceivedMessage, first: Finish) -> Finish:
        """The first copy did not deliver: this one ends the same way, without its own call."""
        if first.outcome is Outcome.DEAD_LETTERED and first.reason is not None:
            code, _, text = (first.error or "").partition(": ")
            return await self._dead_letter(message, Reason(first.reason), code, text, 0)
        delay = self.policy.release_delay_s(message.receive_count)
        try:
            await self.ops.change_visibility(message.receipt_handle, delay)
        except (EntryFailed, ClientError, BotoCoreError, OSError):
            self.metrics.visibility_errors.inc()
        return Finish(Outcome.RELEASED, error="a copy in flight did not deliver", delay_s=delay)

    async def _circuit_open(self, message: ReceivedMessage, step: StepResult) -> Finish:
        """The workflow's circuit is open: no call; release until the probe, or dead-letter."""
        attempts = self._attempts_seen.get(message.message_id, message.receive_count - 1)
        if message.receive_count >= self.config.max_receives:
            text = f"circuit open for workflow {step.workflow_id} after AccessDeniedException"
            return await self._dead_letter(
                message, Reason.ACCESS_DENIED, "AccessDeniedException", text, attempts
            )
        wait = self.circuits.wait_s(step.workflow_id)
        # While the probe is out, come back soon rather than a full cooldown later.
        delay = wait if wait > 0 else self.policy.release_delay_s(message.receive_count)
        return await self._release(message, delay, attempts, "circuit open")

    async def _failed(
        self, message: ReceivedMessage, step: StepResult, failed: CallbackFailed
    ) -> Finish:
        error = failed.error
        rule = error.rule
        attempts = self._attempts_total(message, failed.attempts)
        at_limit = message.receive_count >= self.config.max_receives
        if rule.action is Action.CIRCUIT:
            if self.circuits.wait_s(step.workflow_id) == 0:
                log.error(
                    "access denied: circuit opened for the workflow; check the task role",
                    workflow_id=step.workflow_id,
                    cooldown_s=self.config.breaker_cooldown_s,
                )
            self.circuits.denied(step.workflow_id)
            if at_limit:
                return await self._dead_letter(
                    message, Reason.ACCESS_DENIED, error.code, error.message, attempts
                )
            return await self._release(
                message, self.config.breaker_cooldown_s, attempts, str(error)
            )
        self.circuits.answered(step.workflow_id)
        if rule.action is Action.DEAD_LETTER and rule.reason is not None:
            return await self._dead_letter(
                message, rule.reason, error.code, error.message, attempts
            )
        if at_limit:
            return await self._dead_letter(
                message, Reason.RETRIES_EXHAUSTED, error.code, error.message, attempts
            )
        if time.time() - message.sent_at > self.config.callback_deadline_s:
            return await self._dead_letter(
                message, Reason.EXPIRED, error.code, error.message, attempts
            )
        delay = self.policy.release_delay_s(message.receive_count, error.retry_after_s)
        return await self._release(message, delay, attempts, str(error))

    def _attempts_total(self, message: ReceivedMessage, this_receive: int) -> int:
        """Attempts over all receives: remembered ones, else one per earlier receive."""
        earlier = self._attempts_seen.pop(message.message_id, message.receive_count - 1)
        return earlier + this_receive

    async def _release(
        self, message: ReceivedMessage, delay_s: float, attempts: int, error: str
    ) -> Finish:
        self._attempts_seen[message.message_id] = attempts
        while len(self._attempts_seen) > _ATTEMPT_MEMORY:
            self._attempts_seen.popitem(last=False)
        try:
            await self.ops.change_visibility(message.receipt_handle, delay_s)
        except (EntryFailed, ClientError, BotoCoreError, OSError):
            self.metrics.visibility_errors.inc()  # it comes back when its lease lapses
        return Finish(
            Outcome.RELEASED,
            reason=None,
            attempts=attempts,
            error=str(error)[:300],
            delay_s=round(delay_s, 2),
        )

    async def _dead_letter(
        self, message: ReceivedMessage, reason: Reason, code: str, text: str, attempts: int
    ) -> Finish:
        facts = DeadLetter(
            reason=reason.value,
            error_code=code,
            error_message=text,
            attempts=attempts,
            source_queue=self.config.queue_url,
            source_message_id=message.message_id,
        )
        try:
            await self.dead_letters.submit(dead_letter_copy(message, facts, fifo=self._dlq_fifo))
        except Exception as exc:  # any failure leaves the message on the queue
            self.metrics.dead_letter_errors.inc()
            delay = self.policy.release_delay_s(message.receive_count)
            log.error(
                "dead-letter copy failed; message stays on the queue",
                message_id=message.message_id,
                reason=reason.value,
                error=str(exc)[:300],
                retry_in_s=round(delay, 2),
            )
            with contextlib.suppress(Exception):
                await self.ops.change_visibility(message.receipt_handle, delay)
            return Finish(
                Outcome.RELEASED, attempts=attempts, error=f"dead-letter failed: {error_code(exc)}"
            )
        try:
            await self.ops.delete(message.receipt_handle)
        except (EntryFailed, ClientError, BotoCoreError, OSError) as exc:
            self.metrics.delete_errors.inc()
            return Finish(
                Outcome.RELEASED,
                attempts=attempts,
                error=f"delete failed after dead-letter: {error_code(exc)}",
            )
        return Finish(
            Outcome.DEAD_LETTERED,
            reason=reason.value,
            attempts=attempts,
            error=f"{code}: {text}"[:300],
        )

    async def _send_dead_letters(
        self, entries: list[tuple[str, Any]]
    ) -> dict[str, tuple[str, str]]:
        failures = await send_messages(self.sqs, self.dlq_url, [copy for _, copy in entries])
        return {entries[f.index][0]: (f.code, f.message) for f in failures}

    def _record(
        self,
        message: ReceivedMessage,
        finish: Finish,
        step: StepResult | None,
        duration_s: float | None = None,
    ) -> None:
        self.counts[finish.outcome.value] += 1
        self.metrics.finished(finish.outcome, finish.reason)
        fields: dict[str, Any] = {
            "outcome": finish.outcome.value,
            "message_id": message.message_id,
            "receive_count": message.receive_count,
            "attempts": finish.attempts,
        }
        if finish.reason:
            fields["reason"] = finish.reason
        if step is not None:
            fields.update(
                workflow_id=step.workflow_id,
                execution_id=step.execution_id,
                token=step.short_token,
                status=step.status.value,
            )
        if finish.error:
            fields["error"] = finish.error
        if finish.delay_s is not None:
            fields["retry_in_s"] = finish.delay_s
        if duration_s is not None:
            fields["duration_ms"] = round(duration_s * 1000, 1)
        level = "warning" if finish.outcome is Outcome.DEAD_LETTERED else "info"
        getattr(log, level)("message finished", **fields)

    # --- background duties --------------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Extends the lease of messages still in flight well before it lapses."""
        interval = self.config.visibility_timeout_s / 3
        while True:
            await asyncio.sleep(min(interval, 5.0))
            now = time.monotonic()
            due = [h for h in self._in_flight.values() if now - h.leased_at >= interval]
            if not due:
                continue
            results = await asyncio.gather(
                *(
                    self.ops.change_visibility(
                        h.message.receipt_handle, self.config.visibility_timeout_s
                    )
                    for h in due
                ),
                return_exceptions=True,
            )
            for held, result in zip(due, results, strict=True):
                if held.message.receipt_handle not in self._in_flight:
                    continue  # finished meanwhile: its receipt handle is gone, no error
                if isinstance(result, BaseException):
                    self.metrics.visibility_errors.inc()
                else:
                    held.leased_at = now
                    self.metrics.heartbeats.inc()

    async def _watch_empty(self) -> None:
        """For `--exit-when-empty`: stop once the queue and this process hold nothing."""
        empty_readings = 0
        while not self._stop.is_set():
            await asyncio.sleep(self.config.empty_check_s)
            if self._tasks or self._in_flight:
                empty_readings = 0
                continue
            try:
                counts = await queue_counts(self.sqs, self.config.queue_url)
            except (ClientError, BotoCoreError, OSError):
                empty_readings = 0
                continue
            empty_readings = empty_readings + 1 if sum(counts.values()) == 0 else 0
            # Two readings in a row: the counts are approximate on real SQS.
            if empty_readings >= 2:
                self.stop("queue empty")


async def queue_counts(sqs: SQSClient, queue_url: str) -> dict[str, int]:
    """Visible, in-flight and delayed message counts of a queue."""
    response = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )
    return {name: int(value) for name, value in response.get("Attributes", {}).items()}


# --- start-up ----------------------------------------------------------------------------------


async def resolve_queues(sqs: SQSClient, config: RunConfig) -> tuple[str, Mapping[str, str]]:
    """Checks the queue exists and finds the DLQ; warns about settings that defeat relay."""
    try:
        response = await sqs.get_queue_attributes(QueueUrl=config.queue_url, AttributeNames=["All"])
    except ClientError as exc:
        raise ConfigError(f"queue {config.queue_url}: {error_code(exc)}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach SQS for {config.queue_url}: {exc}") from None
    attributes = response.get("Attributes", {})
    redrive = _redrive_policy(attributes.get("RedrivePolicy"))
    dlq_url = config.dlq_url
    if dlq_url is None:
        arn = redrive.get("deadLetterTargetArn")
        if not arn:
            raise ConfigError(
                f"queue {config.queue_url} has no RedrivePolicy: pass --dlq-url (RELAY_DLQ_URL)"
            )
        dlq_url = await _url_for_arn(sqs, str(arn))
    visibility = int(attributes.get("VisibilityTimeout", "30"))
    if visibility < config.retry_budget_s:
        log.warning(
            "queue visibility timeout is shorter than the retry budget",
            queue_visibility_timeout_s=visibility,
            retry_budget_s=config.retry_budget_s,
        )
    max_receive = redrive.get("maxReceiveCount")
    if max_receive is not None and int(max_receive) <= config.max_receives:
        log.warning(
            "redrive maxReceiveCount is not above --max-receives: SQS will move messages to the "
            "DLQ before relay can annotate them",
            max_receive_count=int(max_receive),
            max_receives=config.max_receives,
        )
    return dlq_url, {str(k): v for k, v in attributes.items()}


def _redrive_policy(raw: str | None) -> dict[str, Any]:
    import json

    if not raw:
        return {}
    try:
        policy = json.loads(raw)
    except ValueError:
        return {}
    return policy if isinstance(policy, dict) else {}


async def _url_for_arn(sqs: SQSClient, arn: str) -> str:
    parts = arn.split(":")
    if len(parts) != 6:
        raise ConfigError(f"RedrivePolicy names a malformed DLQ ARN: {arn}")
    account, name = parts[4], parts[5]
    try:
        response = await sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
    except ClientError as exc:
        raise ConfigError(f"DLQ {arn} from the RedrivePolicy: {error_code(exc)}") from None
    return response["QueueUrl"]


@contextlib.asynccontextmanager
async def open_worker(
    config: RunConfig, *, session: AioSession | None = None, metrics: Metrics | None = None
) -> AsyncIterator[Worker]:
    """Opens the clients and the health server, checks the queues, yields the worker; closes
    everything in reverse on the way out."""
    session = session or new_session()
    async with (
        open_sqs(session, max_pool_connections=config.pollers + 20) as sqs,
        (open_lean_transfer if config.lean_sender else open_transfer)(
            session,
            max_pool_connections=config.max_in_flight,
            call_timeout_s=config.call_timeout_s,
        ) as transfer,
    ):
        dlq_url, _ = await resolve_queues(sqs, config)
        worker = Worker(config, sqs=sqs, transfer=transfer, dlq_url=dlq_url, metrics=metrics)
        app = create_app(worker.health, worker.metrics)
        async with serve_http(app, config.http_host, config.http_port):
            yield worker


async def run_worker(config: RunConfig, *, handle_signals: bool = True) -> Worker:
    """`relay run`: the worker until a signal or, with `--exit-when-empty`, an empty queue."""
    async with open_worker(config) as worker:
        await worker.run(handle_signals=handle_signals)
    return worker
