"""The clock offset: learnt only from time-window refusals, logged once per real change."""

from datetime import UTC, datetime, timedelta

from structlog.testing import capture_logs

from relay.awsjson import WireError
from relay.signing import ClockOffset

LOCAL = datetime(2026, 11, 29, 12, 5, tzinfo=UTC)
EXPIRED = (
    "Signature expired: 20261129T120500Z is now earlier than 20261129T121500Z "
    "(20261129T122000Z - 5 min.)"
)


def refusal(server_offset_s: float, code: str = "InvalidSignatureException") -> WireError:
    """A refused signature from a service whose clock is this far ahead of LOCAL."""
    return WireError(
        code=code,
        message=EXPIRED,
        http_status=400,
        typed=True,
        server_time=LOCAL + timedelta(seconds=server_offset_s),
    )


def test_the_offset_is_the_services_time_minus_ours() -> None:
    """A time-window refusal sets the offset to the Date header minus the local time."""
    clock = ClockOffset()

    assert clock.learn(refusal(900), LOCAL) is True
    assert clock.seconds == 900
    assert clock.learn(refusal(-42.5, code="RequestTimeTooSkewed"), LOCAL) is True
    assert clock.seconds == -42.5


def test_other_errors_and_missing_dates_teach_nothing() -> None:
    """Only a clock-skew refusal that carries a Date header moves the offset."""
    clock = ClockOffset()
    wrong_key = WireError(
        code="InvalidSignatureException",
        message="The request signature we calculated does not match",
        http_status=400,
        typed=True,
        server_time=LOCAL + timedelta(hours=1),
    )
    undated = WireError(code="RequestExpired", message="", http_status=400, typed=True)

    assert clock.learn(wrong_key, LOCAL) is False
    assert clock.learn(undated, LOCAL) is False
    assert clock.seconds == 0


def test_it_warns_when_first_learnt_and_when_it_moves_more_than_a_second() -> None:
    """One WARNING when learnt, none for the Date header's rounding, one for a real change."""
    clock = ClockOffset()

    with capture_logs() as logs:
        clock.learn(refusal(900), LOCAL)
        clock.learn(refusal(900.8), LOCAL)
        clock.learn(refusal(600), LOCAL)

    warnings = [(entry["log_level"], entry["offset_s"]) for entry in logs]
    assert warnings == [("warning", 900), ("warning", 600)]
    assert clock.seconds == 600


def test_signing_time_is_now_plus_the_offset() -> None:
    """`now()` is this host's UTC time moved by the offset, naive as botocore's signer wants."""
    clock = ClockOffset(seconds=3600)

    signing = clock.now()

    assert signing.tzinfo is None
    drift = signing - datetime.now(UTC).replace(tzinfo=None)
    assert timedelta(seconds=3590) < drift < timedelta(seconds=3610)
