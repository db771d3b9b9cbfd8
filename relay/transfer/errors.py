"""relay's own error types for a callback: one attempt's failure, a receive's failed series,
and a shutdown that left no time for a call. Both clients raise `CallbackError` only (the
aiobotocore client for its execution reads too)."""

from relay.awsjson.errors import WireError
from relay.errors import RelayError
from relay.outcomes import Action, CallFailure, Rule


class CallbackError(RelayError):
    """One failed `SendWorkflowStepState` attempt, classified by DESIGN §1's table (or one
    failed `ListExecutions` or `DescribeExecution` call, read the same way).

    `answer_lost`: the request may have reached the service, but its answer never came (a read
    timeout, a connection cut after sending); the service may have answered the step.
    `request_id`: the answer's `x-amzn-RequestId`, when there was an answer that had one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        answer_lost: bool = False,
        request_id: str | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.answer_lost = answer_lost
        self.request_id = request_id
        self.failure = CallFailure(code, message, http_status, retry_after_s)
        self.rule: Rule = self.failure.rule

    @classmethod
    def from_wire(cls, error: WireError) -> "CallbackError":
        """The service's error answer, as DESIGN §1 reads it."""
        return cls(
            error.code,
            error.message,
            http_status=error.http_status,
            retry_after_s=error.retry_after_s,
            request_id=error.request_id,
        )

    @property
    def retryable(self) -> bool:
        """Transient: worth another attempt."""
        return self.rule.action is Action.RETRY


class CallbackFailed(RelayError):
    """Every attempt this receive was allowed has failed; `error` is the last one.

    `answer_lost`: some attempt's answer was lost (see `CallbackError`), so the step's outcome
    is unknown. A shutdown that leaves no time for the next attempt ends the series early.
    """

    def __init__(self, error: CallbackError, attempts: int, *, answer_lost: bool = False) -> None:
        super().__init__(f"{error} after {attempts} attempt(s)")
        self.error = error
        self.attempts = attempts
        self.answer_lost = answer_lost or error.answer_lost


class CallNotStarted(RelayError):
    """Shutdown: the first attempt could not finish within what is left of the grace, so none
    was made (DESIGN §3)."""

    def __init__(self) -> None:
        super().__init__("shutdown before the call: no time left for an attempt")
