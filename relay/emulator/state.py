"""What the emulated service knows: executions and their waiting steps (`executions`), the
faults in force, the call log; and its decisions, one call at a time."""

import math
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from relay.emulator.answers import (
    ALREADY_COMPLETED,
    FAILURES,
    WRONG_TOKEN,
    callback_denied,
    execution_not_found,
    injected_error,
    invalid_next_token,
    operation_denied,
    throttled,
    workflow_not_found,
)
from relay.emulator.executions import (
    MAX_STEP_TIMEOUT_S,
    ExecutionBook,
    described,
    listed,
    next_token,
    read_next_token,
)
from relay.emulator.faults import Faults, retry_after_text
from relay.emulator.operations import DescribeCall, ListCall, ReadCall
from relay.emulator.protocol import (
    SEND,
    Answer,
    CallFields,
    ServiceError,
    StepCall,
    validate_call,
)
from relay.limits import TokenBucket

SUCCESS: Final = "success"
"""The result name of a 200 answer in `counts` and `stats()`."""

ReadAnswer = dict[str, object] | ServiceError
"""What a read answers: the result document, or an error."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRecord:
    """One call as the emulator saw it: when, what, and what it answered.

    Times are wall-clock (`time.time()`) so they compare with other processes' logs.
    `delay_ms` is the latency injected into this call; `error_code` is None for a success and,
    for a bare 502, the code botocore reports for it ("502"). `user_agent` is the caller's
    User-Agent header (what CloudTrail would show as its userAgent). `operation` is the call's
    (`SendWorkflowStepState`, `ListExecutions`, `DescribeExecution`); `listed` the executions a
    `ListExecutions` page returned.
    """

    index: int
    received_at: float
    answered_at: float
    workflow_id: str | None
    execution_id: str | None
    token: str | None
    status: str | None
    http_status: int
    error_code: str | None
    delay_ms: float
    request_id: str | None
    user_agent: str | None = None
    operation: str = SEND
    listed: int | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the admin API shows it."""
        return {
            "index": self.index,
            "received_at": self.received_at,
            "answered_at": self.answered_at,
            "workflow_id": self.workflow_id,
            "execution_id": self.execution_id,
            "token": self.token,
            "status": self.status,
            "http_status": self.http_status,
            "error_code": self.error_code,
            "delay_ms": self.delay_ms,
            "request_id": self.request_id,
            "user_agent": self.user_agent,
            "operation": self.operation,
            "listed": self.listed,
        }


class EmulatorState:
    """The emulated service's memory and decisions; the HTTP layer only decodes and renders.

    A call that passed the protocol and field checks is delayed (the delay is drawn from the
    faults in force when it arrived), then decided in one step without awaiting, so concurrent
    calls never race: the operation's own faults, then for a callback injected error, deny,
    throttle, 5xx, then the execution's state. Only a success consumes a waiting token. `seed`
    makes the jitter and the 5xx draws repeatable; `clock` (monotonic seconds) drives the token
    buckets and the steps' timeouts.
    """

    def __init__(
        self,
        *,
        accept_any: bool = False,
        faults: Faults | None = None,
        seed: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.accept_any = accept_any
        self._seed = seed
        self._clock = clock
        self._rng = random.Random(seed)
        self._faults = Faults()
        self._bucket: TokenBucket | None = None
        self._operation_buckets: dict[str, TokenBucket] = {}
        self.executions = ExecutionBook(clock)
        self._calls: list[CallRecord] = []
        self._counts: Counter[str] = Counter()
        self._by_operation: dict[str, Counter[str]] = {}
        self._waiting_tokens = 0
        self._answered_tokens = 0
        self.set_faults(faults or Faults())

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self._faults

    def set_faults(self, faults: Faults) -> None:
        """Put these faults in force; the token bucket refills only if its settings changed."""
        throttle_changed = (faults.throttle_rps, faults.burst) != (
            self._faults.throttle_rps,
            self._faults.burst,
        )
        if self._bucket is None or throttle_changed:
            self._bucket = (
                TokenBucket(faults.throttle_rps, burst=faults.burst, clock=self._clock)
                if faults.throttle_rps > 0
                else None
            )
        if faults.throttle_operations != self._faults.throttle_operations:
            self._operation_buckets = {
                operation: TokenBucket(rps, burst=max(1, math.ceil(rps)), clock=self._clock)
                for operation, rps in faults.throttle_operations.items()
            }
        self._faults = faults

    def register(self, workflow_id: str, execution_id: str, token: str) -> None:
        """Make a step wait for its callback (again, if it was answered); ValueError on bad ids."""
        self.register_many([(workflow_id, execution_id, token)])

    def register_many(
        self, steps: Iterable[tuple[str, str, str]], *, started_s_ago: float = 0.0
    ) -> int:
        """Register (workflow_id, execution_id, token) steps, all or none; return how many.

        Each execution starts (again) now, or `started_s_ago` seconds ago: one started longer
        ago than its workflow's step timeout has timed out already.
        """
        steps = list(steps)
        if not (math.isfinite(started_s_ago) and started_s_ago >= 0):
            raise ValueError("started_s_ago must be a number >= 0")
        for workflow_id, execution_id, token in steps:
            checked = validate_call(
                CallFields(
                    workflow_id=workflow_id,
                    execution_id=execution_id,
                    token=token,
                    status="SUCCESS",
                )
            )
            if isinstance(checked, ServiceError):
                raise ValueError(checked.message)
        for workflow_id, execution_id, token in steps:
            execution = self.executions.start(
                workflow_id, execution_id, started_s_ago=started_s_ago
            )
            if execution.answered.pop(token, None) is not None:
                self._answered_tokens -= 1
            if token not in execution.waiting:
                execution.waiting.add(token)
                self._waiting_tokens += 1
        return len(steps)

    def is_waiting(self, workflow_id: str, execution_id: str, token: str) -> bool:
        """Whether this step still waits for its callback."""
        execution = self.executions.get(workflow_id, execution_id)
        return execution is not None and token in execution.waiting

    def set_step_timeout(self, workflow_id: str | None, timeout_s: float) -> None:
        """How long a step of this workflow (None: of every workflow without one of its own)
        waits for its callback, 0 to 1800 s; it applies to executions already waiting too.
        ValueError for a bad workflow id or time."""
        self.check_step_timeout(workflow_id, timeout_s)
        self.executions.set_timeout(workflow_id, timeout_s)

    def check_step_timeout(self, workflow_id: str | None, timeout_s: float) -> None:
        """ValueError unless `set_step_timeout` would take these."""
        if not (math.isfinite(timeout_s) and 0 <= timeout_s <= MAX_STEP_TIMEOUT_S):
            raise ValueError(f"a step timeout is 0 to {MAX_STEP_TIMEOUT_S:g} seconds")
        if workflow_id is not None:
            checked = validate_call(
                CallFields(
                    workflow_id=workflow_id,
                    execution_id="00000000-0000-0000-0000-000000000000",
                    token="t",
                    status="SUCCESS",
                )
            )
            if isinstance(checked, ServiceError):
                raise ValueError(checked.message)

    def sample_delay_ms(self) -> float:
        """Draw the latency to inject into a call arriving now."""
        faults = self._faults
        if faults.jitter_ms > 0:
            return faults.latency_ms + self._rng.uniform(0.0, faults.jitter_ms)
        return faults.latency_ms

    def decide(self, call: StepCall) -> Answer:
        """Answer a well-formed call: injected error, deny, throttle, 5xx, then the state.

        None is success.
        """
        faults = self._faults
        refused = self._operation_fault(SEND, call.workflow_id)
        if refused is not None:
            return refused
        injected = faults.error_workflows.get(call.workflow_id)
        if injected is not None:
            return injected_error(injected, call.workflow_id, call.execution_id, faults)
        if call.workflow_id in faults.deny_workflows:
            return callback_denied(call.workflow_id)
        if self._bucket is not None:
            wait_s = self._bucket.try_take()
            if wait_s > 0.0:
                return throttled(retry_after_text(wait_s, faults.retry_after_s))
        if faults.error_rate > 0.0 and self._rng.random() < faults.error_rate:
            return FAILURES[self._rng.choice(faults.error_kinds), faults.gateway_body]
        return self._complete(call)

    def _complete(self, call: StepCall) -> Answer:
        execution = self.executions.get(call.workflow_id, call.execution_id)
        if execution is None:
            if not self.accept_any:
                return execution_not_found(call.workflow_id, call.execution_id)
            execution = self.executions.start(call.workflow_id, call.execution_id)
        if call.token in execution.answered:
            return ALREADY_COMPLETED
        if not (self.accept_any or self.executions.in_progress(execution)):
            # Its last step was answered or its step timed out: it is as unknown as one never
            # started (DESIGN §11). A repeat of an answered token is told apart above (§7).
            return execution_not_found(call.workflow_id, call.execution_id)
        if call.token in execution.waiting:
            execution.waiting.remove(call.token)
            self._waiting_tokens -= 1
        elif not self.accept_any:
            return WRONG_TOKEN
        execution.answered[call.token] = call.status
        self._answered_tokens += 1
        return None

    def _operation_fault(self, operation: str, workflow_id: str) -> ServiceError | None:
        """The operation's own faults: an injected error, IAM's refusal, its throttle."""
        faults = self._faults
        code = faults.error_operations.get(operation)
        if code is not None:
            if code == "AccessDeniedException":
                return operation_denied(operation, workflow_id)
            return injected_error(code, workflow_id, None, faults)
        if operation in faults.deny_operations:
            return operation_denied(operation, workflow_id)
        bucket = self._operation_buckets.get(operation)
        if bucket is not None:
            wait_s = bucket.try_take()
            if wait_s > 0.0:
                return throttled(retry_after_text(wait_s, faults.retry_after_s))
        return None

    def read(self, operation: str, call: ReadCall) -> ReadAnswer:
        """Answer a well-formed `ListExecutions` or `DescribeExecution` from the executions in
        progress now: the operation's faults first, then the state."""
        refused = self._operation_fault(operation, call.workflow_id)
        if refused is not None:
            return refused
        if isinstance(call, DescribeCall):
            execution = self.executions.get(call.workflow_id, call.execution_id)
            if execution is None or not self.executions.in_progress(execution):
                return execution_not_found(call.workflow_id, call.execution_id)
            return {"WorkflowId": call.workflow_id, "Execution": described(execution)}
        return self._list(call)

    def _list(self, call: ListCall) -> ReadAnswer:
        if not self.executions.knows(call.workflow_id):
            return workflow_not_found(call.workflow_id)
        after = 0
        if call.next_token is not None:
            sequence = read_next_token(call.next_token, call.workflow_id)
            if sequence is None:
                return invalid_next_token()
            after = sequence
        limit = min(call.max_results or self._faults.page_size, self._faults.page_size)
        page, more_after = self.executions.page(call.workflow_id, after, limit)
        answer: dict[str, object] = {
            "WorkflowId": call.workflow_id,
            "Executions": [listed(execution) for execution in page],
        }
        if more_after is not None:
            answer["NextToken"] = next_token(call.workflow_id, more_after)
        return answer

    def record_call(
        self,
        *,
        received_at: float,
        fields: CallFields,
        http_status: int,
        error_code: str | None,
        delay_ms: float,
        request_id: str | None,
        user_agent: str | None = None,
        operation: str = SEND,
        listed: int | None = None,
    ) -> CallRecord:
        """Append a call to the log, stamped with the time of its answer."""
        record = CallRecord(
            index=len(self._calls),
            received_at=received_at,
            answered_at=time.time(),
            workflow_id=fields.workflow_id,
            execution_id=fields.execution_id,
            token=fields.token,
            status=fields.status,
            http_status=http_status,
            error_code=error_code,
            delay_ms=delay_ms,
            request_id=request_id,
            user_agent=user_agent,
            operation=operation,
            listed=listed,
        )
        self._calls.append(record)
        result = SUCCESS if error_code is None else error_code
        if operation == SEND:
            self._counts[result] += 1
        self._by_operation.setdefault(operation, Counter())[result] += 1
        return record

    @property
    def calls(self) -> tuple[CallRecord, ...]:
        """Every call so far, oldest first (a copy; prefer `calls_since` in loops)."""
        return tuple(self._calls)

    def calls_since(self, index: int) -> list[CallRecord]:
        """The calls from this log index on."""
        return self._calls[max(0, index) :]

    @property
    def call_count(self) -> int:
        """How many calls were answered."""
        return len(self._calls)

    @property
    def waiting_tokens(self) -> int:
        """How many registered steps still wait for their callback."""
        return self._waiting_tokens

    @property
    def counts(self) -> dict[str, int]:
        """`SendWorkflowStepState` calls by result: "success" or the error code."""
        return dict(self._counts)

    def counts_by_operation(self) -> dict[str, dict[str, int]]:
        """Calls of each operation by result."""
        return {operation: dict(counts) for operation, counts in self._by_operation.items()}

    def stats(self) -> dict[str, Any]:
        """Counters for the admin API: callbacks by result, every operation's calls by result,
        executions (and those in progress), tokens, step timeouts."""
        return {
            "calls": len(self._calls),
            "by_result": dict(self._counts),
            "by_operation": self.counts_by_operation(),
            "executions": len(self.executions),
            "in_progress": self.executions.in_progress_count(),
            "waiting_tokens": self._waiting_tokens,
            "answered_tokens": self._answered_tokens,
            "accept_any": self.accept_any,
            "step_timeout_s": self.executions.default_timeout_s,
            "step_timeouts": self.executions.timeouts(),
        }

    def reset(self) -> None:
        """Forget executions, step timeouts, calls and counters, and turn every fault off
        (`accept_any` stays)."""
        self.executions.clear()
        self._calls.clear()
        self._counts.clear()
        self._by_operation.clear()
        self._waiting_tokens = 0
        self._answered_tokens = 0
        self._rng.seed(self._seed)
        self._bucket = None
        self._operation_buckets = {}
        self._faults = Faults()
