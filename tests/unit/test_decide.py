"""`relay.outcomes.decide`: DESIGN §1 and §3, row by row, with no I/O.

Each case is a message's situation and the verdict the design says it gets: its outcome, the
queue action, the dead-letter reason and code, or the release delay.
"""

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relay.outcomes import (
    ACCEPTED,
    CONNECTION_ERROR,
    IDENTITY_CODES,
    NOT_STARTED,
    OTHER_CODE,
    OUTCOME_UNKNOWN,
    READ_TIMEOUT,
    SEND,
    CallFailure,
    Limits,
    Outcome,
    QueueAction,
    Reason,
    Situation,
    Verdict,
    code_label,
    decide,
    judge,
    rejected,
)

LIMITS = Limits(
    max_receives=10,
    callback_deadline_s=1800.0,
    breaker_cooldown_s=300.0,
    release_base_s=5.0,
    release_cap_s=300.0,
)
FIRST = Situation(receive_count=1, age_s=1.0, status="SUCCESS", workflow_id="w-1", jitter=0.5)
"""A valid message on its first receive, a second after it was sent."""
LAST = dataclasses.replace(FIRST, receive_count=LIMITS.max_receives)
"""The same message on the receive that reaches --max-receives."""


def answered(
    situation: Situation, code: str | None, *, limits: Limits = LIMITS, **failure: object
) -> Verdict:
    """The verdict after a call that succeeded (code None) or failed with `code`."""
    if code is None:
        return judge(situation, ACCEPTED, limits)
    error = CallFailure(code=code, message=f"{code} happened", **failure)  # type: ignore[arg-type]
    return judge(situation, error, limits)


def test_a_valid_message_with_nothing_known_about_it_is_sent() -> None:
    """No verdict before the call: the callback goes out (SEND)."""
    assert decide(FIRST, LIMITS) is SEND


def test_a_200_is_delivered_and_deleted() -> None:
    """Transfer Family answered 200: delivered, delete (§3)."""
    verdict = answered(FIRST, None)
    assert verdict == Verdict(Outcome.DELIVERED)
    assert verdict.action is QueueAction.DELETE


def test_an_invalid_body_is_dead_lettered_as_validation_with_the_parser_error() -> None:
    """Not a step result (§2): dead-letter at once, reason validation, code ValidationError."""
    verdict = rejected("Token: must match [A-Za-z0-9_]{1,64}")
    assert verdict == Verdict(
        Outcome.DEAD_LETTERED,
        Reason.VALIDATION,
        "ValidationError",
        "Token: must match [A-Za-z0-9_]{1,64}",
    )
    assert verdict.action is QueueAction.DEAD_LETTER


def test_a_copy_of_a_delivered_step_with_the_same_status_is_a_duplicate() -> None:
    """Same four fields delivered before: duplicate, deleted, no call (§3)."""
    verdict = decide(dataclasses.replace(FIRST, delivered_status="SUCCESS"), LIMITS)
    assert verdict == Verdict(Outcome.DUPLICATE)
    assert verdict.action is QueueAction.DELETE


def test_a_copy_with_the_other_status_is_a_conflict_dead_lettered_without_a_call() -> None:
    """Delivered with the other status: conflict, dead-letter reason conflict (§3)."""
    verdict = decide(dataclasses.replace(FIRST, delivered_status="FAILURE"), LIMITS)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason, verdict.code) == (
        Outcome.CONFLICT,
        Reason.CONFLICT,
        "Conflict",
    )
    assert "FAILURE" in verdict.text
    assert "SUCCESS" in verdict.text
    assert verdict.action is QueueAction.DEAD_LETTER


@pytest.mark.parametrize(
    "first",
    [
        Verdict(Outcome.DEAD_LETTERED, Reason.NOT_FOUND, "ResourceNotFoundException", "gone"),
        Verdict(Outcome.DEAD_LETTERED, Reason.RETRIES_EXHAUSTED, "InternalServiceError", "x"),
        Verdict(Outcome.DEAD_LETTERED, Reason.EXPIRED, "ThrottlingException", "late"),
        Verdict(Outcome.DEAD_LETTERED, Reason.ACCESS_DENIED, "AccessDeniedException", "no"),
        Verdict(Outcome.ABANDONED, delay_s=0.0),
    ],
)
def test_a_copy_never_inherits_a_failure_and_is_released_on_its_own_count(first: Verdict) -> None:
    """A copy in flight ended without delivering: this copy, on its first receive, is released
    with its own backoff to try itself, never dead-lettered with the other's reason (§3)."""
    verdict = decide(dataclasses.replace(FIRST, copy_ended=first), LIMITS)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason) == (Outcome.RELEASED, None)
    assert verdict.delay_s == LIMITS.release_delay_s(1, jitter=0.5)


def test_a_copy_of_one_that_was_released_is_released_too() -> None:
    """A copy in flight did not deliver: release this one with the backoff, no call of its own."""
    first = Verdict(Outcome.RELEASED, code="ThrottlingException", text="slow down", delay_s=3)
    verdict = decide(dataclasses.replace(FIRST, copy_ended=first), LIMITS)
    assert isinstance(verdict, Verdict)
    assert verdict.outcome is Outcome.RELEASED
    assert verdict.delay_s == LIMITS.release_delay_s(1, jitter=0.5)


def test_the_delivered_memory_wins_over_a_copy_in_flight() -> None:
    """The first copy delivered meanwhile: this one is a duplicate, not a shared failure."""
    first = Verdict(Outcome.RELEASED, text="x", delay_s=1)
    situation = dataclasses.replace(FIRST, delivered_status="SUCCESS", copy_ended=first)
    assert decide(situation, LIMITS) == Verdict(Outcome.DUPLICATE)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("ServiceUnavailableException", 500),
        ("InternalServiceError", 500),
        (CONNECTION_ERROR, None),
        (READ_TIMEOUT, None),
        ("502", 502),
        ("SomethingNew", 503),
    ],
)
def test_transient_failures_are_released_with_backoff_then_exhausted(
    code: str, status: int | None
) -> None:
    """Throttling, 5xx, connection errors, timeouts: released with the receive's backoff; on
    --max-receives, dead-lettered as retries_exhausted with the code (§1, §3)."""
    released = answered(FIRST, code, http_status=status)
    assert isinstance(released, Verdict)
    assert (released.outcome, released.action) == (Outcome.RELEASED, QueueAction.RELEASE)
    assert released.delay_s == LIMITS.release_delay_s(1, jitter=0.5)
    assert released.code == code
    exhausted = answered(LAST, code, http_status=status)
    assert isinstance(exhausted, Verdict)
    assert (exhausted.outcome, exhausted.reason, exhausted.code) == (
        Outcome.DEAD_LETTERED,
        Reason.RETRIES_EXHAUSTED,
        code,
    )


@pytest.mark.parametrize("code", IDENTITY_CODES)  # pinned to DESIGN §1 in test_outcomes
def test_errors_about_relays_own_request_never_dead_letter_before_the_limit(code: str) -> None:
    """Credentials, signature, clock: released (even past --callback-deadline), and only on
    --max-receives dead-lettered as retries_exhausted with the code (§1)."""
    old = dataclasses.replace(FIRST, age_s=LIMITS.callback_deadline_s * 10)
    for situation in (FIRST, old, dataclasses.replace(LAST, receive_count=9)):
        verdict = answered(situation, code, http_status=403)
        assert isinstance(verdict, Verdict)
        assert verdict.outcome is Outcome.RELEASED, situation
    last = answered(LAST, code, http_status=403)
    assert last == Verdict(
        Outcome.DEAD_LETTERED, Reason.RETRIES_EXHAUSTED, code, f"{code} happened"
    )


@pytest.mark.parametrize(
    ("code", "status"),
    [("SomethingNew", 400), ("ValidationException", 400), ("400", 400), ("", None)],
)
def test_an_unknown_error_is_retried_like_a_5xx_and_dead_lettered_only_at_the_limit(
    code: str, status: int | None
) -> None:
    """An unknown code or a bare 4xx: released (past the deadline too); unexpected_error only
    on --max-receives (§1)."""
    old = dataclasses.replace(FIRST, age_s=LIMITS.callback_deadline_s * 10)
    for situation in (FIRST, old):
        verdict = answered(situation, code, http_status=status)
        assert isinstance(verdict, Verdict)
        assert verdict.outcome is Outcome.RELEASED
    last = answered(LAST, code, http_status=status)
    assert isinstance(last, Verdict)
    assert (last.outcome, last.reason, last.code) == (
        Outcome.DEAD_LETTERED,
        Reason.UNEXPECTED_ERROR,
        code,
    )


def test_throttling_is_released_no_sooner_than_retry_after_seconds() -> None:
    """RetryAfterSeconds above the backoff sets the release delay (§1)."""
    verdict = answered(FIRST, "ThrottlingException", retry_after_s=120.0)
    assert isinstance(verdict, Verdict)
    assert verdict.delay_s == 120.0


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("InvalidRequestException", Reason.INVALID_REQUEST),
        ("ResourceNotFoundException", Reason.NOT_FOUND),
    ],
)
def test_what_can_never_succeed_is_dead_lettered_on_the_first_receive(
    code: str, reason: Reason
) -> None:
    """InvalidRequestException and ResourceNotFoundException: dead-letter at once with the
    service's code and message (§1)."""
    verdict = answered(FIRST, code, http_status=400)
    assert verdict == Verdict(Outcome.DEAD_LETTERED, reason, code, f"{code} happened")


def test_access_denied_releases_for_the_cooldown_then_dead_letters_at_the_limit() -> None:
    """AccessDeniedException: released for --breaker-cooldown; access_denied only on
    --max-receives, so an IAM mistake does not drain the queue (§1)."""
    released = answered(FIRST, "AccessDeniedException", http_status=400)
    assert isinstance(released, Verdict)
    assert (released.outcome, released.delay_s) == (Outcome.RELEASED, LIMITS.breaker_cooldown_s)
    last = answered(LAST, "AccessDeniedException", http_status=400)
    assert isinstance(last, Verdict)
    assert (last.outcome, last.reason) == (Outcome.DEAD_LETTERED, Reason.ACCESS_DENIED)


def test_an_open_circuit_releases_until_its_probe_without_a_call() -> None:
    """The workflow's circuit is open: released until the probe is due (§1)."""
    verdict = decide(dataclasses.replace(FIRST, circuit_wait_s=42.0), LIMITS)
    assert verdict == Verdict(Outcome.RELEASED, text="circuit open", delay_s=42.0)


def test_while_the_probe_is_out_messages_come_back_with_the_backoff() -> None:
    """The probe is in flight (wait 0): come back soon rather than a full cooldown later."""
    verdict = decide(dataclasses.replace(FIRST, circuit_wait_s=0.0), LIMITS)
    assert isinstance(verdict, Verdict)
    assert verdict.delay_s == LIMITS.release_delay_s(1, jitter=0.5)


def test_an_open_circuit_dead_letters_as_access_denied_at_the_limit() -> None:
    """Still denied on --max-receives: access_denied, code AccessDeniedException."""
    verdict = decide(dataclasses.replace(LAST, circuit_wait_s=10.0), LIMITS)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason, verdict.code) == (
        Outcome.DEAD_LETTERED,
        Reason.ACCESS_DENIED,
        "AccessDeniedException",
    )
    assert "w-1" in verdict.text


def test_a_retryable_failure_past_the_callback_deadline_is_expired() -> None:
    """Older than --callback-deadline: no callback can help; expired (§3)."""
    old = dataclasses.replace(FIRST, age_s=LIMITS.callback_deadline_s + 1)
    verdict = answered(old, "ThrottlingException")
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason) == (Outcome.DEAD_LETTERED, Reason.EXPIRED)


def test_the_receive_limit_is_read_before_the_deadline() -> None:
    """Both limits passed: retries_exhausted, the count the redrive policy also watches."""
    old_and_last = dataclasses.replace(LAST, age_s=LIMITS.callback_deadline_s + 1)
    verdict = answered(old_and_last, "InternalServiceError", http_status=500)
    assert isinstance(verdict, Verdict)
    assert verdict.reason is Reason.RETRIES_EXHAUSTED


@given(
    receive_count=st.integers(min_value=1, max_value=40),
    retry_after=st.one_of(st.none(), st.floats(min_value=0, max_value=900)),
    jitter=st.floats(min_value=0, max_value=1),
    base=st.floats(min_value=0, max_value=60),
    cap=st.floats(min_value=0, max_value=3600),
)
def test_release_delays_double_within_the_cap_never_under_retry_after(
    receive_count: int, retry_after: float | None, jitter: float, base: float, cap: float
) -> None:
    """A release delay lies in the upper half of min(cap, base·2^(n-1)), and never under
    RetryAfterSeconds."""
    limits = dataclasses.replace(LIMITS, release_base_s=base, release_cap_s=cap)
    delay = limits.release_delay_s(receive_count, retry_after, jitter)
    ceiling = min(cap, base * 2.0 ** (receive_count - 1))
    assert delay >= (retry_after or 0.0)
    if retry_after is None or retry_after <= ceiling / 2:
        assert ceiling / 2 - 1e-9 <= delay <= ceiling + 1e-9


@given(
    receive_count=st.integers(min_value=1, max_value=30),
    max_receives=st.integers(min_value=1, max_value=30),
    age_s=st.floats(min_value=0, max_value=7200),
    code=st.sampled_from(["ThrottlingException", "InternalServiceError", CONNECTION_ERROR]),
)
def test_a_retryable_failure_is_released_exactly_while_under_both_limits(
    receive_count: int, max_receives: int, age_s: float, code: str
) -> None:
    """Released while under --max-receives and --callback-deadline; dead-lettered otherwise,
    retries_exhausted taking precedence."""
    limits = dataclasses.replace(LIMITS, max_receives=max_receives)
    situation = dataclasses.replace(FIRST, receive_count=receive_count, age_s=age_s)
    verdict = answered(situation, code, limits=limits)
    assert isinstance(verdict, Verdict)
    if receive_count >= max_receives:
        assert verdict.reason is Reason.RETRIES_EXHAUSTED
    elif age_s > limits.callback_deadline_s:
        assert verdict.reason is Reason.EXPIRED
    else:
        assert verdict.outcome is Outcome.RELEASED
        assert verdict.delay_s is not None
        assert math.isfinite(verdict.delay_s)


def test_every_outcome_maps_to_the_queue_action_of_the_design() -> None:
    """DESIGN §3's last column, as data."""
    expected = {
        Outcome.DELIVERED: QueueAction.DELETE,
        Outcome.DUPLICATE: QueueAction.DELETE,
        Outcome.CONFLICT: QueueAction.DEAD_LETTER,
        Outcome.DEAD_LETTERED: QueueAction.DEAD_LETTER,
        Outcome.RELEASED: QueueAction.RELEASE,
        Outcome.ABANDONED: QueueAction.RELEASE,
    }
    assert {o: Verdict(o).action for o in Outcome} == expected


def test_a_step_another_task_is_delivering_is_released_never_dead_lettered() -> None:
    """Another task of the fleet holds a live claim (DESIGN §10): released to look again soon,
    at the latest when the lease lapses, and not dead-lettered even on --max-receives."""
    for situation in (FIRST, LAST):
        verdict = decide(dataclasses.replace(situation, held_elsewhere_s=20.0), LIMITS)
        assert isinstance(verdict, Verdict)
        assert verdict.outcome is Outcome.RELEASED
        assert verdict.delay_s is not None
        assert 1.0 <= verdict.delay_s <= 20.0 + 1.0
    lapsing = decide(dataclasses.replace(FIRST, held_elsewhere_s=0.2), LIMITS)
    assert isinstance(lapsing, Verdict)
    assert lapsing.delay_s is not None
    assert lapsing.delay_s <= 0.2 + 1.0


def test_shutdown_before_the_first_attempt_abandons_the_message_visible_at_once() -> None:
    """No time left in the grace for a call: abandoned, visibility 0, no attempt (§3)."""
    verdict = judge(FIRST, NOT_STARTED, LIMITS)
    assert verdict == Verdict(Outcome.ABANDONED, text="shutdown before the call", delay_s=0.0)
    assert verdict.action is QueueAction.RELEASE


def test_shutdown_after_a_failed_attempt_ends_as_that_answer_says() -> None:
    """Attempts were made and the next could not start: the last answer decides (a 5xx at the
    limit is retries_exhausted), not the shutdown."""
    verdict = answered(LAST, "InternalServiceError")
    assert isinstance(verdict, Verdict)
    assert verdict.reason is Reason.RETRIES_EXHAUSTED


def test_a_table_that_did_not_answer_the_claim_releases_briefly_then_goes_without() -> None:
    """One failed claim of a table that is up (§10): released to look again within seconds,
    never dead-lettered; at --max-receives the call goes out without the claim (None)."""
    verdict = decide(dataclasses.replace(FIRST, table_unanswered=True), LIMITS)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason) == (Outcome.RELEASED, None)
    assert verdict.delay_s is not None
    assert 1.0 <= verdict.delay_s <= 5.0
    assert decide(dataclasses.replace(LAST, table_unanswered=True), LIMITS) is SEND


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("InvalidRequestException", Reason.INVALID_REQUEST),
        ("ResourceNotFoundException", Reason.NOT_FOUND),
    ],
)
def test_a_refusal_after_a_lost_answer_is_dead_lettered_saying_the_outcome_is_unknown(
    code: str, reason: Reason
) -> None:
    """An earlier attempt timed out or was cut after sending (§1): the refusal that follows is
    likely its own answer, but not known to be; the copy says so, and the message is not
    deleted (dead-lettered with the reason and code of the refusal)."""
    verdict = answered(dataclasses.replace(FIRST, answer_lost=True), code, http_status=400)
    assert isinstance(verdict, Verdict)
    assert (verdict.outcome, verdict.reason, verdict.code) == (
        Outcome.DEAD_LETTERED,
        reason,
        code,
    )
    assert verdict.text.startswith(OUTCOME_UNKNOWN)
    assert verdict.text.endswith(f"{code}: {code} happened")
    assert verdict.action is QueueAction.DEAD_LETTER


def test_a_lost_answer_changes_nothing_for_a_retryable_failure_or_a_200() -> None:
    """After a lost answer, a 5xx is still released and a 200 still delivered."""
    retry = answered(dataclasses.replace(FIRST, answer_lost=True), READ_TIMEOUT)
    assert isinstance(retry, Verdict)
    assert retry.outcome is Outcome.RELEASED
    ok = answered(dataclasses.replace(FIRST, answer_lost=True), None)
    assert ok == Verdict(Outcome.DELIVERED)


@pytest.mark.parametrize(
    ("code", "label"),
    [
        ("ThrottlingException", "ThrottlingException"),
        ("InvalidRequestException", "InvalidRequestException"),
        (CONNECTION_ERROR, CONNECTION_ERROR),
        (READ_TIMEOUT, READ_TIMEOUT),
        ("502", OTHER_CODE),
        ("X" * 4000, OTHER_CODE),
        ("", OTHER_CODE),
    ],
)
def test_metric_labels_take_only_the_codes_of_the_table(code: str, label: str) -> None:
    """An endpoint chooses its codes: a label keeps DESIGN §1's codes and buckets the rest."""
    assert code_label(code) == label
