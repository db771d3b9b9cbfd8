"""What the emulated service knows: waiting steps, the faults in force, the call log."""

import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from relay.emulator.faults import FailureKind, Faults, retry_after_text
from relay.emulator.protocol import (
    Answer,
    CallFields,
    GatewayBody,
    GatewayError,
    ServiceError,
    StepCall,
    gateway_page,
    validate_call,
)
from relay.limits import TokenBucket

SUCCESS: Final = "success"
"""The result name of a 200 answer in `counts` and `stats()`."""

EXECUTION_RESOURCE_TYPE: Final = "Execution"
"""`ResourceType` of the ResourceNotFoundException for an unknown execution (cf. "Server")."""

# The fixed answers are built once; the request path only picks one.
_SERVICE_UNAVAILABLE: Final = ServiceError(
    code="ServiceUnavailableException",
    message="The service is temporarily unavailable. Please retry.",
    http_status=500,
)
_INTERNAL_SERVICE_ERROR: Final = ServiceError(
    code="InternalServiceError",
    message="An internal error occurred. Please retry.",
    http_status=500,
)
_GATEWAY_STATUS: Final = {
    FailureKind.BAD_GATEWAY: 502,
    FailureKind.GATEWAY_UNAVAILABLE: 503,
    FailureKind.GATEWAY_TIMEOUT: 504,
}
_FAILURES: Final[dict[tuple[FailureKind, GatewayBody], ServiceError | GatewayError]] = {
    **{
        (kind, body): answer
        for kind, answer in (
            (FailureKind.SERVICE_UNAVAILABLE, _SERVICE_UNAVAILABLE),
            (FailureKind.INTERNAL_SERVICE_ERROR, _INTERNAL_SERVICE_ERROR),
        )
        for body in GatewayBody
    },
    **{
        (kind, body): GatewayError(
            http_status=status, body=gateway_page(status) if body is GatewayBody.HTML else b""
        )
        for kind, status in _GATEWAY_STATUS.items()
        for body in GatewayBody
    },
}
_ALREADY_COMPLETED: Final = ServiceError(
    code="InvalidRequestException",
    message="Invalid request: step already completed for this token",
)
_WRONG_TOKEN: Final = ServiceError(
    code="InvalidRequestException",
    message="Invalid request: the token does not belong to a step waiting in this execution",
)
# Errors about the caller's own request, in the words and statuses of AWS JSON services; like
# the other framework rejections they carry the Coral namespace.
_CORAL: Final = "com.amazon.coral.service#"
_IDENTITY_ERRORS: Final = {
    code: ServiceError(code=code, message=message, http_status=status, namespace=_CORAL)
    for code, status, message in (
        ("ExpiredTokenException", 400, "The security token included in the request is expired"),
        (
            "UnrecognizedClientException",
            400,
            "The security token included in the request is invalid.",
        ),
        (
            "InvalidSignatureException",
            400,
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method. "
            "Consult the service documentation for details.",
        ),
        (
            "IncompleteSignatureException",
            400,
            "Authorization header requires 'Signature' parameter.",
        ),
        ("MissingAuthenticationTokenException", 400, "Request is missing Authentication Token"),
        ("RequestExpired", 400, "Request has expired."),
    )
}


@dataclass(frozen=True, kw_only=True, slots=True)
class CallRecord:
    """One call as the emulator saw it: when, what, and what it answered.

    Times are wall-clock (`time.time()`) so they compare with other processes' logs.
    `delay_ms` is the latency injected into this call; `error_code` is None for a success and,
    for a bare 502, the code botocore reports for it ("502"). `user_agent` is the caller's
    User-Agent header (what CloudTrail would show as its userAgent).
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
        }


class _Execution:
    """One workflow execution's steps: tokens waiting, and tokens answered with their status."""

    __slots__ = ("answered", "waiting")

    def __init__(self) -> None:
        self.waiting: set[str] = set()
        self.answered: dict[str, str] = {}


class EmulatorState:
    """The emulated service's memory and decisions; the HTTP layer only decodes and renders.

    A call that passed the protocol and field checks is delayed (the delay is drawn from the
    faults in force when it arrived), then decided in one step without awaiting, so concurrent
    calls never race: injected error, deny, throttle, 5xx, then the execution's state. Only a
    success consumes a waiting token. `seed` makes the jitter and the 5xx draws repeatable.
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
        self._executions: dict[tuple[str, str], _Execution] = {}
        self._calls: list[CallRecord] = []
        self._counts: Counter[str] = Counter()
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
        self._faults = faults

    def register(self, workflow_id: str, execution_id: str, token: str) -> None:
        """Make a step wait for its callback (again, if it was answered); ValueError on bad ids."""
        self.register_many([(workflow_id, execution_id, token)])

    def register_many(self, steps: Iterable[tuple[str, str, str]]) -> int:
        """Register (workflow_id, execution_id, token) steps, all or none; return how many."""
        steps = list(steps)
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
            execution = self._executions.setdefault((workflow_id, execution_id), _Execution())
            if execution.answered.pop(token, None) is not None:
                self._answered_tokens -= 1
            if token not in execution.waiting:
                execution.waiting.add(token)
                self._waiting_tokens += 1
        return len(steps)

    def is_waiting(self, workflow_id: str, execution_id: str, token: str) -> bool:
        """Whether this step still waits for its callback."""
        execution = self._executions.get((workflow_id, execution_id))
        return execution is not None and token in execution.waiting

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
        injected = faults.error_workflows.get(call.workflow_id)
        if injected is not None:
            return self._injected(injected, call)
        if call.workflow_id in faults.deny_workflows:
            return _access_denied(call)
        if self._bucket is not None:
            wait_s = self._bucket.try_take()
            if wait_s > 0.0:
                return _throttled(retry_after_text(wait_s, faults.retry_after_s))
        if faults.error_rate > 0.0 and self._rng.random() < faults.error_rate:
            return _FAILURES[self._rng.choice(faults.error_kinds), faults.gateway_body]
        return self._complete(call)

    def _injected(self, code: str, call: StepCall) -> ServiceError:
        """The answer `error_workflows` asks for: the service's own, or a bare 400 if unknown."""
        match code:
            case "AccessDeniedException":
                return _access_denied(call)
            case "ThrottlingException":
                return _throttled(retry_after_text(1.0, self._faults.retry_after_s))
            case "ResourceNotFoundException":
                return _not_found(call)
            case "InvalidRequestException":
                return _WRONG_TOKEN
            case "ServiceUnavailableException":
                return _SERVICE_UNAVAILABLE
            case "InternalServiceError":
                return _INTERNAL_SERVICE_ERROR
        known = _IDENTITY_ERRORS.get(code)
        if known is not None:
            return known
        return ServiceError(code=code, message=f"Injected {code}")

    def _complete(self, call: StepCall) -> Answer:
        key = (call.workflow_id, call.execution_id)
        execution = self._executions.get(key)
        if execution is None:
            if not self.accept_any:
                return _not_found(call)
            execution = self._executions[key] = _Execution()
        if call.token in execution.answered:
            return _ALREADY_COMPLETED
        if call.token in execution.waiting:
            execution.waiting.remove(call.token)
            self._waiting_tokens -= 1
        elif not self.accept_any:
            return _WRONG_TOKEN
        execution.answered[call.token] = call.status
        self._answered_tokens += 1
        return None

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
        )
        self._calls.append(record)
        self._counts[SUCCESS if error_code is None else error_code] += 1
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
        """Calls by result: "success" or the error code."""
        return dict(self._counts)

    def stats(self) -> dict[str, Any]:
        """Counters for the admin API: calls by result, executions and tokens."""
        return {
            "calls": len(self._calls),
            "by_result": dict(self._counts),
            "executions": len(self._executions),
            "waiting_tokens": self._waiting_tokens,
            "answered_tokens": self._answered_tokens,
            "accept_any": self.accept_any,
        }

    def reset(self) -> None:
        """Forget executions, calls and counters, and turn every fault off (`accept_any` stays)."""
        self._executions.clear()
        self._calls.clear()
        self._counts.clear()
        self._waiting_tokens = 0
        self._answered_tokens = 0
        self._rng.seed(self._seed)
        self._bucket = None
        self._faults = Faults()


def _access_denied(call: StepCall) -> ServiceError:
    return ServiceError(
        code="AccessDeniedException",
        message="User is not authorized to perform: transfer:SendWorkflowStepState "
        f"on resource: workflow/{call.workflow_id}",
    )


def _throttled(retry_after: str) -> ServiceError:
    return ServiceError(
        code="ThrottlingException",
        message="Rate exceeded",
        members={"RetryAfterSeconds": retry_after},
    )


def _not_found(call: StepCall) -> ServiceError:
    return ServiceError(
        code="ResourceNotFoundException",
        message=f"Unknown execution {call.execution_id} of workflow {call.workflow_id}",
        members={"Resource": call.execution_id, "ResourceType": EXECUTION_RESOURCE_TYPE},
    )
