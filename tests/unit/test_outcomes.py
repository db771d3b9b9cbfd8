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


EXHAUSTED = Reason.RETRIES_EXHAUSTED
UNEXPECTED = Reason.UNEXPECTED_ERROR


@pytest.mark.parametrize(
    ("code", "http_status", "action", "reason", "at_limit", "identity"),
    [
        ("ThrottlingException", 400, Action.RETRY, None, EXHAUSTED, False),
        ("ServiceUnavailableException", 500, Action.RETRY, None, EXHAUSTED, False),
        ("InternalServiceError", 500, Action.RETRY, None, EXHAUSTED, False),
        (
            "InvalidRequestException",
            400,
            Action.DEAD_LETTER,
            Reason.INVALID_REQUEST,
            EXHAUSTED,
            False,
        ),
        ("ResourceNotFoundException", 400, Action.DEAD_LETTER, Reason.NOT_FOUND, EXHAUSTED, False),
        ("AccessDeniedException", 400, Action.CIRCUIT, Reason.ACCESS_DENIED, EXHAUSTED, False),
        (CONNECTION_ERROR, None, Action.RETRY, None, EXHAUSTED, False),
        (READ_TIMEOUT, None, Action.RETRY, None, EXHAUSTED, False),
        ("BadGateway", 502, Action.RETRY, None, EXHAUSTED, False),
        ("ServiceUnavailable", 503, Action.RETRY, None, EXHAUSTED, False),
        ("GatewayTimeout", 504, Action.RETRY, None, EXHAUSTED, False),
        ("", 599, Action.RETRY, None, EXHAUSTED, False),
        ("ExpiredTokenException", 400, Action.RETRY, None, EXHAUSTED, True),
        ("ExpiredToken", 400, Action.RETRY, None, EXHAUSTED, True),
        ("UnrecognizedClientException", 403, Action.RETRY, None, EXHAUSTED, True),
        ("InvalidClientTokenId", 403, Action.RETRY, None, EXHAUSTED, True),
        ("InvalidSignatureException", 400, Action.RETRY, None, EXHAUSTED, True),
        ("SignatureDoesNotMatch", 403, Action.RETRY, None, EXHAUSTED, True),
        ("IncompleteSignature", 400, Action.RETRY, None, EXHAUSTED, True),
        ("MissingAuthenticationToken", 403, Action.RETRY, None, EXHAUSTED, True),
        ("RequestExpired", 400, Action.RETRY, None, EXHAUSTED, True),
        ("RequestTimeTooSkewed", 403, Action.RETRY, None, EXHAUSTED, True),
        ("ValidationException", 400, Action.RETRY, None, UNEXPECTED, False),
        ("ConflictException", 409, Action.RETRY, None, UNEXPECTED, False),
        ("SomethingNew", None, Action.RETRY, None, UNEXPECTED, False),
        ("400", 400, Action.RETRY, None, UNEXPECTED, False),
        ("", None, Action.RETRY, None, UNEXPECTED, False),
    ],
)
def test_classify_follows_the_design_table(
    code: str,
    http_status: int | None,
    action: Action,
    reason: Reason | None,
    at_limit: Reason,
    identity: bool,
) -> None:
    """Each error code, transport failure and status gets DESIGN §1's decision, its reason,
    the reason it is dead-lettered with on --max-receives, and whether it is about relay's own
    request rather than the message."""
    rule = classify(code, http_status)
    assert (rule.action, rule.reason, rule.exhausted, rule.identity) == (
        action,
        reason,
        at_limit,
        identity,
    )
    assert rule.throttle is (code == "ThrottlingException")


@pytest.mark.parametrize("code", sorted(CLASSIFICATION))
@pytest.mark.parametrize("http_status", [None, 400, 500, 503])
def test_a_code_in_the_table_decides_whatever_the_status(
    code: str, http_status: int | None
) -> None:
    """A known code is decided by the table alone; the HTTP status matters only for others."""
    assert classify(code, http_status) is CLASSIFICATION[code]


def test_the_table_holds_exactly_the_codes_of_the_design() -> None:
    """The table names the six Transfer Family codes and the ten identity and clock codes of
    DESIGN §1."""
    assert {code: rule.http_status for code, rule in CLASSIFICATION.items()} == {
        "ThrottlingException": 400,
        "ServiceUnavailableException": 500,
        "InternalServiceError": 500,
        "InvalidRequestException": 400,
        "ResourceNotFoundException": 400,
        "AccessDeniedException": 400,
        **{code: rule.http_status for code, rule in CLASSIFICATION.items() if rule.identity},
    }
    assert {code for code, rule in CLASSIFICATION.items() if rule.identity} == {
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
