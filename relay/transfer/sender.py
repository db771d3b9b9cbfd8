"""The sender: one `send(step)` with the retry policy, on either client; nothing about queues.

botocore's own retries are off (they would hide throttling and blow the time budget); tenacity
drives every retry here, by the classification table in `relay.outcomes`. Both clients raise
`CallbackError` only, so the sender cannot tell them apart. With tracing on, each attempt is a
client span, and each wait between attempts an event (`relay.backoff`) on the message's span.
"""

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    wait_random_exponential,
)

from relay.lifecycle import Shutdown, wait_any
from relay.limits import RetryPolicy
from relay.message import StepResult
from relay.tracing import NO_TRACING, Tracing
from relay.transfer.errors import CallbackError, CallbackFailed, CallNotStarted


class CallbackClient(Protocol):
    """What the sender needs of a client: the one call, raising `CallbackError` on failure."""

    async def send_workflow_step_state(
        self, *, WorkflowId: str, ExecutionId: str, Token: str, Status: str
    ) -> str | None:
        """Sends the callback; returns when Transfer Family answered 200, with the answer's
        request id if it had one."""


@dataclass(frozen=True, slots=True)
class Sent:
    """A callback Transfer Family accepted, and the attempts it took."""

    attempts: int


class Pacer(Protocol):
    """What the sender asks before each call and tells after it (rate limits, metrics)."""

    async def before_call(self, step: StepResult) -> None:
        """Waits until a call may go out."""

    def after_call(self, step: StepResult, error: CallbackError | None, duration_s: float) -> None:
        """Learns how a call went."""


class NoPacing:
    """No limit, no metrics."""

    async def before_call(self, step: StepResult) -> None:
        return None

    def after_call(self, step: StepResult, error: CallbackError | None, duration_s: float) -> None:
        return None


def retrying(
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    tracing: Tracing = NO_TRACING,
) -> AsyncRetrying:
    """The tenacity controller for one receive's attempts under `policy` (`sleep` waits between
    them): full jitter, capped, bounded by attempts and the time budget, never sooner than a
    throttle's RetryAfterSeconds. With tracing on, each wait is told to the current span."""
    return policy.controller(
        lambda exc: isinstance(exc, CallbackError) and exc.retryable,
        sleep=sleep,
        wait=_honour_retry_after,
        before_sleep=functools.partial(_traced_backoff, tracing) if tracing.enabled else None,
    )


def _traced_backoff(tracing: Tracing, retry_state: RetryCallState) -> None:
    """tenacity's `before_sleep`: the wait before the next attempt, on the message's span."""
    outcome = retry_state.outcome
    error = outcome.exception() if outcome is not None else None
    code = error.code if isinstance(error, CallbackError) else None
    tracing.backoff(retry_state.upcoming_sleep, retry_state.attempt_number, code)


class _honour_retry_after:
    """A wait that is never shorter than the last error's RetryAfterSeconds."""

    def __init__(self, fallback: wait_random_exponential) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = float(self.fallback(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, CallbackError) and error.retry_after_s:
            delay = max(delay, error.retry_after_s)
        return delay


class _Stopped(Exception):
    """Raised out of tenacity's wait: the next attempt could not finish within the grace."""


class TransferSender:
    """Sends callbacks on one shared client, retrying per the policy.

    With a `shutdown`, an attempt starts only if its `call_timeout_s` fits in what is left of
    the grace, and the task is marked settling from the call until the message is finished,
    so a drain never cuts a call on the wire (DESIGN §3).
    """

    def __init__(
        self,
        client: CallbackClient,
        policy: RetryPolicy,
        pacer: Pacer | None = None,
        *,
        shutdown: Shutdown | None = None,
        call_timeout_s: float = 0.0,
        tracing: Tracing = NO_TRACING,
    ) -> None:
        self.client = client
        self.policy = policy
        self.pacer: Pacer = pacer or NoPacing()
        self.shutdown = shutdown
        self.call_timeout_s = call_timeout_s
        self.tracing = tracing
        # Built once; each send copies it (tenacity's own pattern), so its strategies are
        # not rebuilt per message.
        self._retrying = retrying(
            policy, self._wait if shutdown is not None else None, tracing=tracing
        )

    async def send(self, step: StepResult) -> Sent:
        """Delivers one callback or raises `CallbackFailed` with the last error and attempts
        (`CallNotStarted` when shutdown left no time for a first attempt)."""
        attempts = 0
        lost = False
        last: CallbackError | None = None
        try:
            async for attempt in self._retrying.copy():
                with attempt:
                    attempts += 1
                    try:
                        await self.call(step, attempts)
                    except CallbackError as error:
                        last, lost = error, lost or error.answer_lost
                        raise
        except CallbackError as error:
            raise CallbackFailed(error, attempts, answer_lost=lost) from None
        except _Stopped:
            attempts -= 1  # the attempt tenacity was about to make was not
            if last is None:
                raise CallNotStarted() from None
            raise CallbackFailed(last, attempts, answer_lost=lost) from None
        return Sent(attempts=attempts)

    async def call(self, step: StepResult, attempt: int = 1) -> None:
        """One attempt (the `attempt`th of its send); raises a classified `CallbackError` when it
        fails (`_Stopped` when a shutdown leaves no time for it)."""
        await self.pacer.before_call(step)
        if self.shutdown is not None:
            if not self.shutdown.allows(self.call_timeout_s):
                raise _Stopped()
            self.shutdown.settle()  # from here until the message is finished
        with self.tracing.callback(attempt) as span:
            started = time.monotonic()
            error: CallbackError | None = None
            try:
                request_id = await self.client.send_workflow_step_state(
                    WorkflowId=step.workflow_id,
                    ExecutionId=step.execution_id,
                    Token=step.token,
                    Status=step.status.value,
                )
            except CallbackError as exc:
                error = exc
            duration = time.monotonic() - started
            if error is None:
                span.answered(200, request_id, None)
            else:
                span.answered(error.http_status, error.request_id, error.code, error.retry_after_s)
        self.pacer.after_call(step, error, duration)
        if error is not None:
            raise error

    async def _wait(self, delay_s: float) -> None:
        """tenacity's wait between attempts, cut short by a shutdown that leaves no time for
        the next attempt (the task may be cancelled meanwhile: nothing is on the wire)."""
        shutdown = self.shutdown
        assert shutdown is not None
        shutdown.unsettle()
        ends = time.monotonic() + delay_s
        if not shutdown.is_requested:
            await wait_any(shutdown.requested, timeout_s=delay_s)
        if shutdown.is_requested:
            left_s = max(0.0, ends - time.monotonic())
            if not shutdown.allows(left_s + self.call_timeout_s):
                raise _Stopped()
            await asyncio.sleep(left_s)
