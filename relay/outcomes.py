"""Outcomes, reasons, the error-classification table of DESIGN §1, and `decide`: the rules of
DESIGN §1 and §3 as one pure function from a message's situation to a verdict.

The table is data: the worker, the replay command and the README all read `CLASSIFICATION`,
so the decision for an error code is written down exactly once. `decide` does no I/O; one
message's path (`relay.delivery`) gathers the situation, asks it, and carries the verdict out.
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

    @property
    def is_final(self) -> bool:
        """Whether the message is finished for good (deleted), not given back to come again."""
        return QUEUE_ACTIONS[self] is not QueueAction.RELEASE


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
    identity: bool = False
    """About relay's own request (credentials, signature, clock), never the message's fault."""
    exhausted: Reason = Reason.RETRIES_EXHAUSTED
    """The reason a retryable failure is dead-lettered with on --max-receives."""
    expires: bool = True
    """Past --callback-deadline a retryable failure is dead-lettered as expired; False: it is
    dead-lettered only on --max-receives."""
    http_status: int | None = None
    """The HTTP status the service answers with (documentation only)."""
    advice: str = ""
    """What an operator should do about it (the README's table)."""


IDENTITY_CODES: Final = (
    "ExpiredTokenException",
    "ExpiredToken",
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "RequestExpired",
    "RequestTimeTooSkewed",
)
"""Errors about relay's own request (DESIGN §1): an expired session, a bad key, a clock outside
the signing window. One credential hiccup must not drain the queue into the DLQ."""

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
    **{
        code: Rule(
            Action.RETRY,
            identity=True,
            expires=False,
            http_status=403 if code == "InvalidClientTokenId" else 400,
            advice="Check the task role's credentials and the host's clock; relay refreshes, "
            "corrects its clock offset, retries and releases, and dead-letters only on "
            "--max-receives.",
        )
        for code in IDENTITY_CODES
    },
}

OUTCOME_UNKNOWN: Final = (
    "outcome unknown: an earlier attempt for this step timed out or was cut after it was sent, "
    "and may have answered it"
)
"""How a dead-letter copy begins whose step an attempt with a lost answer may have answered."""

# Transport failures get these synthetic codes so every failure has one.
CONNECTION_ERROR: Final = "ConnectionError"
READ_TIMEOUT: Final = "ReadTimeout"

_RETRY: Final = Rule(Action.RETRY, advice="Nothing: relay retries with backoff.")
_UNEXPECTED: Final = Rule(
    Action.RETRY,
    exhausted=Reason.UNEXPECTED_ERROR,
    expires=False,
    advice="Read relay-error-code and relay-error-message; replay once understood.",
)


OTHER_CODE: Final = "other"
"""The metric label of every code outside DESIGN §1's table (an endpoint names codes at will)."""
_LABELLED_CODES: Final = frozenset({*CLASSIFICATION, CONNECTION_ERROR, READ_TIMEOUT})


def code_label(code: str) -> str:
    """The code as a metric label or EMF dimension: one of DESIGN §1's, else `other`; the full
    code stays in logs and dead-letter attributes."""
    return code if code in _LABELLED_CODES else OTHER_CODE


def classify(code: str, http_status: int | None = None) -> Rule:
    """The rule for an error code: the table, then any 5xx or transport error, else unexpected
    (retried and released like a 5xx; dead-lettered as unexpected_error on --max-receives)."""
    rule = CLASSIFICATION.get(code)
    if rule is not None:
        return rule
    if code in (CONNECTION_ERROR, READ_TIMEOUT):
        return _RETRY
    if http_status is not None and http_status >= 500:
        return _RETRY
    return _UNEXPECTED


# --- the decision ------------------------------------------------------------------------------


class QueueAction(StrEnum):
    """What happens to a message on its queue (DESIGN §3's last column)."""

    DELETE = "delete"
    DEAD_LETTER = "dead_letter"
    """Copy to the DLQ, then delete."""
    RELEASE = "release"
    """Leave it; its visibility is set to the verdict's delay, so SQS hands it out again."""


QUEUE_ACTIONS: Final[dict[Outcome, QueueAction]] = {
    Outcome.DELIVERED: QueueAction.DELETE,
    Outcome.DUPLICATE: QueueAction.DELETE,
    Outcome.CONFLICT: QueueAction.DEAD_LETTER,
    Outcome.DEAD_LETTERED: QueueAction.DEAD_LETTER,
    Outcome.RELEASED: QueueAction.RELEASE,
    Outcome.ABANDONED: QueueAction.RELEASE,
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """How a message ends: its outcome, and for a dead-letter its reason, code and text (the
    copy's `relay-*` attributes), for a release the delay before SQS hands it out again."""

    outcome: Outcome
    reason: Reason | None = None
    code: str = ""
    text: str = ""
    delay_s: float | None = None

    @property
    def action(self) -> QueueAction:
        """What to do on the queue."""
        return QUEUE_ACTIONS[self.outcome]

    @property
    def error(self) -> str:
        """The error for the log line: `code: text`, or the text alone."""
        return f"{self.code}: {self.text}" if self.code else self.text


@dataclass(frozen=True, slots=True)
class CallFailure:
    """The last error of a callback that did not succeed."""

    code: str
    message: str
    http_status: int | None = None
    retry_after_s: float | None = None

    @property
    def rule(self) -> Rule:
        """Its rule in the classification table."""
        return classify(self.code, self.http_status)


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """The settings the rules read: `relay run`'s options of the same names (their defaults
    live on `relay.config.RunConfig`)."""

    max_receives: int
    callback_deadline_s: float
    breaker_cooldown_s: float
    release_base_s: float
    release_cap_s: float

    def release_delay_s(
        self, receive_count: int, retry_after_s: float | None = None, jitter: float = 1.0
    ) -> float:
        """Visibility delay of a released message: doubling per receive, capped, with jitter
        (0..1) over its upper half; never under RetryAfterSeconds."""
        ceiling = min(self.release_cap_s, self.release_base_s * 2.0 ** max(0, receive_count - 1))
        delay = ceiling / 2 * (1 + min(1.0, max(0.0, jitter)))
        return max(delay, retry_after_s or 0.0)


@dataclass(frozen=True, kw_only=True, slots=True)
class Situation:
    """Everything the rules need to know about one message, at one point of its path."""

    receive_count: int
    """`ApproximateReceiveCount`, this receive included."""
    age_s: float = 0.0
    """Seconds since the producer sent it."""
    status: str | None = None
    """The status this message reports."""
    workflow_id: str = ""
    delivered_status: str | None = None
    """The status the delivered-memory says this step was answered with, if any."""
    copy_ended: Verdict | None = None
    """How a copy of this step that was in flight ended, when it did not deliver. A copy
    inherits another copy's delivery (through `delivered_status`), never its failure."""
    table_unanswered: bool = False
    """The fleet's table did not answer the claim though it is not down (one failure): look
    again shortly rather than call without a claim."""
    answer_lost: bool = False
    """An earlier attempt for this step (this receive, an earlier one, or another task's lapsed
    claim) timed out or was cut after sending: the service may have answered it unseen."""
    circuit_wait_s: float | None = None
    """The workflow's circuit is open (no call): seconds until its probe is due (0: probing)."""
    held_elsewhere_s: float | None = None
    """Another task of the fleet holds a live claim on this step: seconds until it lapses."""
    jitter: float = 1.0
    """A random draw in 0..1 that spreads release delays."""


@dataclass(frozen=True, slots=True)
class Send:
    """No end yet: the callback goes out, and `judge` decides on its answer."""


SEND: Final = Send()


@dataclass(frozen=True, slots=True)
class Accepted:
    """Transfer Family answered 200."""


ACCEPTED: Final = Accepted()


@dataclass(frozen=True, slots=True)
class NotStarted:
    """Shutdown left no time for this receive's first attempt: none was made."""


NOT_STARTED: Final = NotStarted()

Answer = Accepted | CallFailure | NotStarted
"""How this receive's calls ended: accepted, the last attempt's failure, or none made."""


def rejected(invalid: str) -> Verdict:
    """DESIGN §2: a body that is not a step result is dead-lettered at once, as `validation`,
    with the parser's error naming the field and the rule."""
    return Verdict(Outcome.DEAD_LETTERED, Reason.VALIDATION, "ValidationError", invalid)


def decide(situation: Situation, limits: Limits) -> Verdict | Send:
    """DESIGN §1 and §3 for a step result before a call: its verdict, or `SEND`."""
    s = situation
    at_limit = s.receive_count >= limits.max_receives
    if s.delivered_status is not None:
        if s.delivered_status == s.status:
            return Verdict(Outcome.DUPLICATE)
        text = (
            f"step already delivered with status {s.delivered_status}; this message says {s.status}"
        )
        return Verdict(Outcome.CONFLICT, Reason.CONFLICT, "Conflict", text)
    if s.copy_ended is not None:
        # Its failure is not this copy's: released (on its own receive count) to try itself.
        delay = limits.release_delay_s(s.receive_count, jitter=s.jitter)
        text = f"a copy in flight did not deliver ({s.copy_ended.outcome.value}); trying again"
        return Verdict(Outcome.RELEASED, text=text, delay_s=delay)
    if s.held_elsewhere_s is not None:
        # Not a failure, so never dead-lettered: the other task delivers (a duplicate when this
        # comes back) or its lease lapses and this one takes the step over.
        # Look again soon (the holder usually answers within a call), at the latest when its
        # lease lapses.
        backoff = max(1.0, limits.release_delay_s(s.receive_count, jitter=s.jitter))
        delay = min(s.held_elsewhere_s + s.jitter, backoff)
        return Verdict(Outcome.RELEASED, text="another task is delivering this step", delay_s=delay)
    if s.circuit_wait_s is not None:
        if at_limit:
            text = f"circuit open for workflow {s.workflow_id} after AccessDeniedException"
            return Verdict(
                Outcome.DEAD_LETTERED, Reason.ACCESS_DENIED, "AccessDeniedException", text
            )
        # While the probe is out, come back soon rather than a full cooldown later.
        wait = s.circuit_wait_s
        delay = wait if wait > 0 else limits.release_delay_s(s.receive_count, jitter=s.jitter)
        return Verdict(Outcome.RELEASED, text="circuit open", delay_s=delay)
    if s.table_unanswered and not at_limit:
        # Not the message's fault, so never dead-lettered; at --max-receives it goes without
        # the claim rather than loop.
        delay = max(1.0, min(limits.release_delay_s(s.receive_count, jitter=s.jitter), 5.0))
        return Verdict(Outcome.RELEASED, text="the dedupe table did not answer", delay_s=delay)
    return SEND


def judge(situation: Situation, answer: Answer, limits: Limits) -> Verdict:
    """DESIGN §1 and §3 after this receive's calls. A shutdown that cut the retries short
    changes nothing: the last answer decides."""
    if isinstance(answer, Accepted):
        return Verdict(Outcome.DELIVERED)
    if isinstance(answer, NotStarted):
        return Verdict(Outcome.ABANDONED, text="shutdown before the call", delay_s=0.0)
    return _after_failure(situation, answer, limits, situation.receive_count >= limits.max_receives)


def _after_failure(s: Situation, failure: CallFailure, limits: Limits, at_limit: bool) -> Verdict:
    rule = failure.rule
    code, message = failure.code, failure.message
    if rule.action is Action.CIRCUIT:
        if at_limit:
            return Verdict(Outcome.DEAD_LETTERED, Reason.ACCESS_DENIED, code, message)
        return Verdict(Outcome.RELEASED, code=code, text=message, delay_s=limits.breaker_cooldown_s)
    if rule.action is Action.DEAD_LETTER and rule.reason is not None:
        if s.answer_lost:
            # Most likely the lost attempt answered the step; but that is not known, so the
            # message is not deleted: its copy says what happened (DESIGN §1).
            message = f"{OUTCOME_UNKNOWN}; then {code}: {message}"
        return Verdict(Outcome.DEAD_LETTERED, rule.reason, code, message)
    if at_limit:
        return Verdict(Outcome.DEAD_LETTERED, rule.exhausted, code, message)
    if rule.expires and s.age_s > limits.callback_deadline_s:
        return Verdict(Outcome.DEAD_LETTERED, Reason.EXPIRED, code, message)
    delay = limits.release_delay_s(s.receive_count, failure.retry_after_s, s.jitter)
    return Verdict(Outcome.RELEASED, code=code, text=message, delay_s=delay)
