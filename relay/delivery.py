"""One message's path, in one place: parse → copies → circuit → the fleet's claim → send →
judge → act on the queue.

The rules are `relay.outcomes` (`decide` before a call, `judge` on its answer); this module
gathers what they need (the parse result, the delivered-memory, a copy already in flight, the
circuit, the fleet's claim, the callback's answer), asks, and carries the one verdict out on the
queue (`_conclude`). It is also where a message's ids are bound to the log
context, once, and where its end is counted, logged and, with tracing on, its `process` span
opened and closed (DESIGN §12).

Invariant (DESIGN §3): a message is deleted only after its callback succeeded or its
dead-letter copy was accepted by SQS. Everything else leaves it on the queue.
"""

import asyncio
import collections
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

from structlog.contextvars import bind_contextvars, bound_contextvars

from relay.config import RunConfig
from relay.dead_letter import CopyFacts, dead_letter_copy
from relay.dedupe import (
    Claim,
    Claimed,
    ClaimedElsewhere,
    DedupeTable,
    DedupeUnavailable,
    Delivered,
    lease_for,
)
from relay.lifecycle import Shutdown
from relay.limits import AdaptiveRate, AttemptMemory, Circuits, DeliveredMemory
from relay.message import InvalidMessage, StepKey, StepResult, parse
from relay.observability import EveryInterval, Metrics, get_logger, hiding_in_logs
from relay.outcomes import (
    ACCEPTED,
    NOT_STARTED,
    Action,
    Outcome,
    QueueAction,
    Situation,
    Verdict,
    code_label,
    decide,
    judge,
    rejected,
)
from relay.sqs import BatchedQueue, EntryFailed, ReceivedMessage, SqsError, is_fifo, queue_name
from relay.sqs.sizes import MAX_MESSAGE_BYTES
from relay.tracing import NO_TRACING, Span, Tracing
from relay.transfer import (
    CallbackClient,
    CallbackError,
    CallbackFailed,
    CallNotStarted,
    TransferSender,
)

log = get_logger("relay.delivery")

T = TypeVar("T")

IDENTITY_LOG_EVERY_S: Final = 60.0
"""Errors about relay's own credentials or clock are logged at most this often (all counted)."""
DEDUPE_LOG_EVERY_S: Final = 60.0
"""Failures of the delivered-memory table are logged at most this often (all counted)."""


@dataclass(frozen=True, slots=True)
class MessageResult:
    """How one message ended (after acting: a queue action SQS refused turns it into released),
    with the callback attempts over all its receives and the step it carried."""

    verdict: Verdict
    attempts: int = 0
    step: StepResult | None = None

    @property
    def outcome(self) -> Outcome:
        """The outcome logged and counted."""
        return self.verdict.outcome


def released(error: str, attempts: int = 0, step: StepResult | None = None) -> MessageResult:
    """A message left on the queue because something went wrong on the way."""
    return MessageResult(Verdict(Outcome.RELEASED, text=error), attempts, step)


class AdaptivePacer:
    """The send rate before each call; what the answer teaches it, and the metrics, after."""

    def __init__(self, metrics: Metrics, rate: AdaptiveRate) -> None:
        self.metrics = metrics
        self.rate = rate
        self._identity_log = EveryInterval(IDENTITY_LOG_EVERY_S)

    async def before_call(self, step: StepResult) -> None:
        await self.rate.acquire()

    def after_call(self, step: StepResult, error: CallbackError | None, duration_s: float) -> None:
        if error is None:
            self.rate.accepted()
            self.metrics.attempts.labels(result="ok").inc()
            self.metrics.callback_latency.labels(result="ok").observe(duration_s)
            return
        self.metrics.attempts.labels(result=code_label(error.code)).inc()
        self.metrics.callback_latency.labels(result="error").observe(duration_s)
        if error.rule.throttle:
            self.metrics.throttles.inc()
            self.rate.throttled()
        if error.rule.identity:
            self._identity_refused(error)

    def _identity_refused(self, error: CallbackError) -> None:
        """AWS refused relay's own request: counted each time, logged at most once a minute."""
        self.metrics.identity_errors.labels(code=code_label(error.code)).inc()
        if not self._identity_log.due():
            return
        log.error(
            "AWS refused relay's own request (credentials, signature or clock), not the message; "
            "relay retries and releases, and dead-letters only on --max-receives",
            error_code=error.code,
            error=error.message[:300],
        )


class Delivery:
    """Takes one received message to its end; shared by every message of one worker."""

    def __init__(
        self,
        config: RunConfig,
        *,
        queue: BatchedQueue,
        dlq: BatchedQueue,
        transfer: CallbackClient,
        metrics: Metrics,
        dlq_max_bytes: int = MAX_MESSAGE_BYTES,
        table: DedupeTable | None = None,
        shutdown: Shutdown | None = None,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.config = config
        self.tracing = tracing
        self._queue_name = queue_name(queue.url)
        self._dlq_name = queue_name(dlq.url)
        self.table = table
        """The fleet's delivered-memory (DESIGN §10), when `--dedupe-table` names one."""
        self.lease_s = lease_for(config.retry_budget_s, config.call_timeout_s)
        self._table_log = EveryInterval(DEDUPE_LOG_EVERY_S)
        self.queue = queue
        self.dlq = dlq
        self.dlq_max_bytes = dlq_max_bytes
        self.metrics = metrics
        self.limits = config.limits()
        self.shutdown = shutdown or Shutdown(config.shutdown_grace_s)
        self.rate = AdaptiveRate(config.max_rps, enabled=config.adaptive_rate)
        pacer = AdaptivePacer(metrics, self.rate)
        self.sender = TransferSender(
            transfer,
            config.retry_policy(),
            pacer,
            shutdown=self.shutdown,
            call_timeout_s=config.call_timeout_s,
            tracing=tracing,
        )
        self.circuits = Circuits(config.breaker_cooldown_s)
        self.delivered = DeliveredMemory(config.dedupe_size, config.dedupe_ttl_s)
        self.lost = DeliveredMemory(config.dedupe_size, config.dedupe_ttl_s)
        """Steps an attempt of which lost its answer (DESIGN §1): their outcome is unknown."""
        self.attempts = AttemptMemory()
        self.counts: collections.Counter[str] = collections.Counter()
        self._dlq_fifo = is_fifo(dlq.url)
        # A copy of a step already in flight waits for it instead of racing it to the service.
        self._copies: dict[StepKey, asyncio.Future[Verdict]] = {}

    # --- the path ------------------------------------------------------------------------------

    async def process(self, message: ReceivedMessage) -> MessageResult:
        """Takes the message to its end and records it; never raises but for cancellation."""
        started = time.monotonic()
        with (
            bound_contextvars(message_id=message.message_id, receive_count=message.receive_count),
            hiding_in_logs() as hide,
            self.tracing.process(
                self._queue_name,
                message.message_id,
                message.receive_count,
                message.trace_header,
                message.attributes,
            ) as span,
        ):
            try:
                result = await self._handle(message, hide, span)
            except asyncio.CancelledError:
                raise  # shutdown: the worker gives the message back
            except Exception as exc:  # a bug must not kill the worker; the message comes back
                log.exception("message failed unexpectedly")
                delay = self.limits.release_delay_s(message.receive_count, jitter=random.random())
                text = f"{type(exc).__name__}: {exc}"
                verdict = Verdict(Outcome.RELEASED, text=text, delay_s=delay)
                result = await self._conclude(message, verdict, None)
            finally:
                self.shutdown.unsettle()
            self.record(message, result, time.monotonic() - started)
            verdict = result.verdict
            reason = verdict.reason.value if verdict.reason is not None else None
            span.ended(verdict.outcome.value, reason, verdict.code or None, result.attempts)
        return result

    async def _handle(
        self, message: ReceivedMessage, hide: Callable[[str], object], span: Span
    ) -> MessageResult:
        try:
            step = parse(message.body)
        except InvalidMessage as exc:
            return await self._conclude(message, rejected(str(exc)), None)
        hide(step.token)
        span.step(step)
        bind_contextvars(
            workflow_id=step.workflow_id,
            execution_id=step.execution_id,
            token=step.short_token,
            status=step.status.value,
        )
        situation = self._situation(message, step)
        first = self._copies.get(step.step_key)
        if first is not None and situation.delivered_status is None:
            # A copy in flight: wait for it rather than race it to the service. Its delivery
            # shows in the delivered-memory (duplicate, conflict); its failure is not this
            # copy's, which is released to try itself.
            ended = await asyncio.shield(first)
            delivered = self.delivered.status_of(step.step_key)
            situation = replace(situation, delivered_status=delivered, copy_ended=ended)
        decision = decide(situation, self.limits)
        if isinstance(decision, Verdict):
            return await self._conclude(message, decision, step)
        mine: asyncio.Future[Verdict] = asyncio.get_running_loop().create_future()
        self._copies[step.step_key] = mine
        ending = Verdict(Outcome.ABANDONED)
        try:
            verdict, made = await self._deliver(message, step, situation)
            result = await self._conclude(message, verdict, step, made)
            ending = result.verdict
            if result.outcome is Outcome.DELIVERED:
                self.metrics.end_to_end_latency.observe(max(0.0, time.time() - message.sent_at))
            return result
        finally:
            del self._copies[step.step_key]
            mine.set_result(ending)

    async def _deliver(
        self, message: ReceivedMessage, step: StepResult, situation: Situation
    ) -> tuple[Verdict, int]:
        """The circuit, the fleet's claim, the call, and what its answer decides; with the
        attempts made (`situation`: nothing delivered and no copy in flight when it starts)."""
        workflow = step.workflow_id
        claimed: Claimed | None = None
        allowed = self.circuits.allow(workflow)  # takes the probe when one is due
        if not allowed:
            situation = replace(situation, circuit_wait_s=self.circuits.wait_s(workflow))
        elif self.table is not None:
            claim = await self._claim(step)
            if isinstance(claim, Delivered):
                self.delivered.remember(step.step_key, claim.status.value)
                situation = replace(situation, delivered_status=claim.status.value)
            elif isinstance(claim, ClaimedElsewhere):
                situation = replace(situation, held_elsewhere_s=claim.wait_s())
            elif isinstance(claim, Claimed):
                claimed = claim
            elif not claim.table_down:
                # One failure of a table that is up: look again shortly rather than call
                # without a claim; a table that is down leaves the local memory to stand in.
                situation = replace(situation, table_unanswered=True)
        decision = decide(situation, self.limits)
        if isinstance(decision, Verdict):
            if allowed:  # no call after all, so the probe this message took is free again
                self.circuits.cancel_probe(workflow)
            return decision, 0
        lost = situation.answer_lost or (claimed is not None and claimed.answer_lost)
        try:
            sent = await self.sender.send(step)
        except CallNotStarted:
            self.circuits.cancel_probe(workflow)
            await self._give_up(claimed, lost=lost)
            return judge(situation, NOT_STARTED, self.limits), 0
        except CallbackFailed as failed:
            self.metrics.retries.inc(max(0, failed.attempts - 1))
            self._learn(step, failed.error)
            if failed.answer_lost:
                self.lost.remember(step.step_key, step.status.value)
            lost = lost or failed.answer_lost
            # Ended early, so another task need not wait out the lease.
            await self._give_up(claimed, lost=lost)
            situation = replace(situation, answer_lost=lost)
            return judge(situation, failed.error.failure, self.limits), failed.attempts
        self.metrics.retries.inc(sent.attempts - 1)
        self.circuits.answered(workflow)
        self.delivered.remember(step.step_key, step.status.value)
        if self.table is not None:
            ttl_s = self.config.dedupe_ttl_s
            await self._table_call(self.table.record_delivered(step.step_key, step.status, ttl_s))
        return judge(situation, ACCEPTED, self.limits), sent.attempts

    async def _claim(self, step: StepResult) -> Claim | DedupeUnavailable:
        """The fleet's claim on the step (DESIGN §10), or the table's failure (counted, logged)
        as a value: the caller decides what it means for this message."""
        assert self.table is not None
        try:
            return await self.table.claim(step.step_key, step.status, self.lease_s)
        except DedupeUnavailable as exc:
            self._table_failed(exc)
            return exc

    # --- the fleet's memory (DESIGN §10) -------------------------------------------------------

    async def _give_up(self, claimed: Claimed | None, *, lost: bool) -> None:
        """Ends our claim early; one whose outcome is unknown says so, for the next claimant."""
        if self.table is None or claimed is None:
            return
        await self._table_call(
            self.table.give_up(claimed, lost=lost, ttl_s=self.config.dedupe_ttl_s)
        )

    async def _table_call(self, call: Awaitable[T]) -> T | None:
        """A table call; its failure is counted, logged once a minute, and never stops the
        callback (None)."""
        try:
            return await call
        except DedupeUnavailable as exc:
            self._table_failed(exc)
            return None

    def _table_failed(self, exc: DedupeUnavailable) -> None:
        self.metrics.dedupe_table_errors.labels(code=exc.label).inc()
        if self._table_log.due():
            log.warning(
                "dedupe table unavailable: the local memory stands in (a copy delivered by "
                "another task may be called again)"
                if exc.table_down
                else "dedupe table call failed after its retries",
                error_code=exc.code,
                error=str(exc)[:300],
            )

    def _learn(self, step: StepResult, error: CallbackError) -> None:
        """What a failed call teaches the workflow's circuit."""
        if error.rule.action is not Action.CIRCUIT:
            self.circuits.answered(step.workflow_id)
            return
        if self.circuits.wait_s(step.workflow_id) == 0:
            log.error(
                "access denied: circuit opened for the workflow; check the task role",
                cooldown_s=self.config.breaker_cooldown_s,
            )
        self.circuits.denied(step.workflow_id)

    def _situation(self, message: ReceivedMessage, step: StepResult) -> Situation:
        """What the rules need to know of a step result as received, computed once."""
        return Situation(
            receive_count=message.receive_count,
            age_s=time.time() - message.sent_at,
            status=step.status.value,
            workflow_id=step.workflow_id,
            delivered_status=self.delivered.status_of(step.step_key),
            answer_lost=self.lost.status_of(step.step_key) is not None,
            jitter=random.random(),
        )

    # --- acting on the queue -------------------------------------------------------------------

    async def _conclude(
        self,
        message: ReceivedMessage,
        verdict: Verdict,
        step: StepResult | None,
        made: int = 0,
    ) -> MessageResult:
        """Carries the verdict out on the queue: the message's one conclusion. `made` is the
        callback attempts of this receive; the result counts those of all its receives."""
        # What was decided is carried out even past the grace: a delete or a dead-letter copy
        # already under way must land, and count as what it is (DESIGN §3).
        self.shutdown.settle()
        attempts = self.attempts.earlier(message.message_id, message.receive_count) + made
        action = verdict.action
        if action is QueueAction.RELEASE:
            return await self._release(message, verdict, attempts, step)
        if action is QueueAction.DEAD_LETTER:
            return await self._dead_letter(message, verdict, attempts, step)
        try:
            await self.queue.delete(message.receipt_handle)
        except SqsError as exc:
            self.metrics.delete_errors.inc()
            if verdict.outcome is Outcome.DELIVERED:
                # Delivered, but SQS will hand it out again (as a duplicate); not done yet.
                log.error("delete failed after delivery", error=str(exc)[:300])
            self.attempts.remember(message.message_id, attempts)
            return released(f"delete failed: {exc.code}", attempts, step)
        self.attempts.forget(message.message_id)
        return MessageResult(verdict, attempts, step)

    async def _release(
        self, message: ReceivedMessage, verdict: Verdict, attempts: int, step: StepResult | None
    ) -> MessageResult:
        self.attempts.remember(message.message_id, attempts)
        try:
            await self.queue.change_visibility(message.receipt_handle, verdict.delay_s or 0.0)
        except SqsError:
            self.metrics.visibility_errors.inc()  # it comes back when its lease lapses
        return MessageResult(verdict, attempts, step)

    async def _dead_letter(
        self, message: ReceivedMessage, verdict: Verdict, attempts: int, step: StepResult | None
    ) -> MessageResult:
        reason = verdict.reason.value if verdict.reason is not None else ""
        facts = CopyFacts(
            reason=reason,
            error_code=verdict.code,
            error_message=verdict.text,
            attempts=attempts,
            source_queue=self.queue.url,
            source_message_id=message.message_id,
        )
        try:
            with self.tracing.send(self._dlq_name, reason) as span:
                fifo, max_bytes = self._dlq_fifo, self.dlq_max_bytes
                copy = dead_letter_copy(
                    message, facts, fifo=fifo, max_bytes=max_bytes, context=span.context()
                )
                await self.dlq.send(copy)
        except SqsError as exc:  # the message stays on the queue
            self.metrics.dead_letter_errors.labels(reason=exc.label).inc()
            delay = self.limits.release_delay_s(message.receive_count, jitter=random.random())
            sender_fault = isinstance(exc, EntryFailed) and exc.sender_fault
            log.error(
                # A sender fault comes back the same each time: say so, so someone fixes it.
                "dead-letter copy refused by SQS as malformed; the message stays on the queue"
                if sender_fault
                else "dead-letter copy failed; the message stays on the queue",
                reason=reason,
                error_code=exc.code,
                error=exc.message[:300],
                retry_in_s=round(delay, 2),
            )
            try:
                await self.queue.change_visibility(message.receipt_handle, delay)
            except SqsError:
                self.metrics.visibility_errors.inc()
            self.attempts.remember(message.message_id, attempts)
            return released(f"dead-letter failed: {exc.code}", attempts, step)
        try:
            await self.queue.delete(message.receipt_handle)
        except SqsError as exc:
            self.metrics.delete_errors.inc()
            self.attempts.remember(message.message_id, attempts)
            return released(f"delete failed after dead-letter: {exc.code}", attempts, step)
        self.attempts.forget(message.message_id)
        return MessageResult(verdict, attempts, step)

    # --- the record ----------------------------------------------------------------------------

    def record(
        self, message: ReceivedMessage, result: MessageResult, duration_s: float | None = None
    ) -> None:
        """Counts one finished message and writes its log line."""
        verdict, step = result.verdict, result.step
        self.counts[verdict.outcome.value] += 1
        reason = verdict.reason.value if verdict.reason is not None else None
        self.metrics.finished(verdict.outcome, reason)
        fields: dict[str, Any] = {
            "outcome": verdict.outcome.value,
            "message_id": message.message_id,
            "receive_count": message.receive_count,
            "attempts": result.attempts,
        }
        if reason:
            fields["reason"] = reason
        if step is not None:
            fields.update(
                workflow_id=step.workflow_id,
                execution_id=step.execution_id,
                token=step.short_token,
                status=step.status.value,
            )
        if verdict.error:
            fields["error"] = verdict.error[:300]
        if verdict.delay_s is not None:
            fields["retry_in_s"] = round(verdict.delay_s, 2)
        if duration_s is not None:
            fields["duration_ms"] = round(duration_s * 1000, 1)
        level = "warning" if verdict.outcome is Outcome.DEAD_LETTERED else "info"
        getattr(log, level)("message finished", **fields)
