"""The error-classification table of DESIGN §1 and the words of DESIGN §3-4."""

import pytest

from relay.outcomes import (
    CLASSIFICATION,
    CONNECTION_ERROR,
    READ_TIMEOUT,
    Action,
    Outcome,
    Reason,
    classify,
)

# DESIGN §3's outcomes and §4's `relay-reason` values, copied word for word.
DESIGN_OUTCOMES = ["delivered", "duplicate", "conflict", "dead_lettered", "released", "abandoned"]
DESIGN_REASONS = [
    "validation",
    "invalid_request",
    "not_found",
    "access_denied",
    "conflict",
    "retries_exhausted",
    "expired",
    "unexpected_error",
]


@pytest.mark.parametrize(
    ("code", "http_status", "action", "reason", "throttle"),
    [
        ("ThrottlingException", 400, Action.RETRY, None, True),
        ("ServiceUnavailableException", 500, Action.RETRY, None, False),
        ("InternalServiceError", 500, Action.RETRY, None, False),
        ("InvalidRequestException", 400, Action.DEAD_LETTER, Reason.INVALID_REQUEST, False),
        ("ResourceNotFoundException", 400, Action.DEAD_LETTER, Reason.NOT_FOUND, False),
        ("AccessDeniedException", 400, Action.CIRCUIT, Reason.ACCESS_DENIED, False),
        (CONNECTION_ERROR, None, Action.RETRY, None, False),
        (READ_TIMEOUT, None, Action.RETRY, None, False),
        ("BadGateway", 502, Action.RETRY, None, False),
        ("ServiceUnavailable", 503, Action.RETRY, None, False),
        ("GatewayTimeout", 504, Action.RETRY, None, False),
        ("", 599, Action.RETRY, None, False),
        ("ValidationException", 400, Action.DEAD_LETTER, Reason.UNEXPECTED_ERROR, False),
        ("ConflictException", 409, Action.DEAD_LETTER, Reason.UNEXPECTED_ERROR, False),
        ("UnrecognizedClientException", 403, Action.DEAD_LETTER, Reason.UNEXPECTED_ERROR, False),
        ("SomethingNew", None, Action.DEAD_LETTER, Reason.UNEXPECTED_ERROR, False),
        ("", None, Action.DEAD_LETTER, Reason.UNEXPECTED_ERROR, False),
    ],
)
def test_classify_follows_the_design_table(
    code: str, http_status: int | None, action: Action, reason: Reason | None, throttle: bool
) -> None:
    """Each error code, transport failure and status gets DESIGN §1's decision and reason."""
    rule = classify(code, http_status)
    assert (rule.action, rule.reason, rule.throttle) == (action, reason, throttle)


@pytest.mark.parametrize("code", sorted(CLASSIFICATION))
@pytest.mark.parametrize("http_status", [None, 400, 500, 503])
def test_a_code_in_the_table_decides_whatever_the_status(
    code: str, http_status: int | None
) -> None:
    """A known code is decided by the table alone; the HTTP status matters only for others."""
    assert classify(code, http_status) is CLASSIFICATION[code]


def test_the_table_holds_exactly_the_codes_of_the_design() -> None:
    """The table names the six AWS codes of DESIGN §1 with their documented HTTP status."""
    assert {code: rule.http_status for code, rule in CLASSIFICATION.items()} == {
        "ThrottlingException": 400,
        "ServiceUnavailableException": 500,
        "InternalServiceError": 500,
        "InvalidRequestException": 400,
        "ResourceNotFoundException": 400,
        "AccessDeniedException": 400,
    }


@pytest.mark.parametrize(
    ("code", "http_status"),
    [*((code, None) for code in CLASSIFICATION), (CONNECTION_ERROR, None), ("X", 503), ("X", 400)],
)
def test_every_rule_is_consistent_and_advises_the_operator(
    code: str, http_status: int | None
) -> None:
    """Dead-letter and circuit rules carry a reason, retries do not, and each says what to do."""
    rule = classify(code, http_status)
    assert (rule.reason is None) == (rule.action is Action.RETRY)
    assert rule.advice


def test_reasons_are_the_design_list_exactly() -> None:
    """Reason values are DESIGN §4's `relay-reason` values, verbatim and in order."""
    assert [reason.value for reason in Reason] == DESIGN_REASONS


def test_outcomes_are_the_design_list_exactly() -> None:
    """Outcome values are DESIGN §3's words, verbatim and in order."""
    assert [outcome.value for outcome in Outcome] == DESIGN_OUTCOMES


def test_outcomes_and_reasons_are_strings_as_logged() -> None:
    """Outcomes and reasons format as their bare words, as logs and metric labels use them."""
    assert f"{Outcome.DEAD_LETTERED}" == "dead_lettered"
    assert str(Reason.RETRIES_EXHAUSTED) == "retries_exhausted"
    assert Reason("not_found") is Reason.NOT_FOUND
