"""Outcomes, reasons, and the one error-classification table of DESIGN §1.

The table is data: the worker, the replay command and the README all read `CLASSIFICATION`,
so the decision for an error code is written down exactly once.
"""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class Outcome(StrEnum):
    """How a received message ended (DESIGN §3); the words metrics and logs use."""

    DELIVERED = "delivered"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    DEAD_LETTERED = "dead_lettered"
    RELEASED = "released"
    ABANDONED = "abandoned"


class Reason(StrEnum):
    """Why a message was dead-lettered (DESIGN §4, `relay-reason`)."""

    VALIDATION = "validation"
    INVALID_REQUEST = "invalid_request"
    NOT_FOUND = "not_found"
    ACCESS_DENIED = "access_denied"
    CONFLICT = "conflict"
    RETRIES_EXHAUSTED = "retries_exhausted"
    EXPIRED = "expired"
    UNEXPECTED_ERROR = "unexpected_error"


class Action(StrEnum):
    """What relay does about a failed callback."""

    RETRY = "retry"
    """Transient: retry with backoff in process, then release for SQS to redeliver."""
    DEAD_LETTER = "dead_letter"
    """Permanent: no retry can succeed; copy to the DLQ with the rule's reason."""
    CIRCUIT = "circuit"
    """The workflow refuses us (IAM): stop calling for it for a while, release its messages."""


@dataclass(frozen=True, slots=True)
class Rule:
    """The decision for one error code."""

    action: Action
    reason: Reason | None = None
    throttle: bool = False
    """Throttling: honour RetryAfterSeconds and slow the send rate."""
    http_status: int | None = None
    """The HTTP status the service answers with (documentation only)."""
    advice: str = ""
    """What an operator should do about it (the README's table)."""


CLASSIFICATION: Final[dict[str, Rule]] = {
    "ThrottlingException": Rule(
        Action.RETRY,
        throttle=True,
        http_status=400,
        advice="Nothing: relay backs off, never sooner than RetryAfterSeconds.",
    ),
    "ServiceUnavailableException": Rule(
        Action.RETRY, http_status=500, advice="Nothing: relay retries with backoff."
    ),
    "InternalServiceError": Rule(
        Action.RETRY, http_status=500, advice="Nothing: relay retries with backoff."
    ),
    "InvalidRequestException": Rule(
        Action.DEAD_LETTER,
        Reason.INVALID_REQUEST,
        http_status=400,
        advice="Usually the step was already answered or timed out; check the execution.",
    ),
    "ResourceNotFoundException": Rule(
        Action.DEAD_LETTER,
        Reason.NOT_FOUND,
        http_status=400,
        advice="The execution is unknown or finished; check the ids the processor sent.",
    ),
    "AccessDeniedException": Rule(
        Action.CIRCUIT,
        Reason.ACCESS_DENIED,
        http_status=400,
        advice="Fix the task role (transfer:SendWorkflowStepState), then replay.",
    ),
}

# Transport failures get these synthetic codes so every failure has one.
CONNECTION_ERROR: Final = "ConnectionError"
READ_TIMEOUT: Final = "ReadTimeout"

_RETRY: Final = Rule(Action.RETRY, advice="Nothing: relay retries with backoff.")
_UNEXPECTED: Final = Rule(
    Action.DEAD_LETTER,
    Reason.UNEXPECTED_ERROR,
    advice="Read relay-error-code and relay-error-message; replay once understood.",
)


def classify(code: str, http_status: int | None = None) -> Rule:
    """The rule for an error code: the table, then any 5xx or transport error, else unexpected."""
    rule = CLASSIFICATION.get(code)
    if rule is not None:
        return rule
    if code in (CONNECTION_ERROR, READ_TIMEOUT):
        return _RETRY
    if http_status is not None and http_status >= 500:
        return _RETRY
    return _UNEXPECTED
