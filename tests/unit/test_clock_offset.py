"""The clock offset: learnt only from time-window refusals, logged once per real change, and
never beyond ±24 h, so no answer can make signing fail."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from aiobotocore.credentials import AioCredentials
from botocore.awsrequest import AWSRequest
from structlog.testing import capture_logs

from relay.awsjson import WireError
from relay.awsjson.signing import MAX_CLOCK_OFFSET_S, ClockOffset, sign_at_service_time

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


def test_an_offset_beyond_a_day_is_not_applied_and_is_logged_at_error() -> None:
    """An offset past ±24 h either way leaves the one in use and is logged at ERROR; one of
    exactly 24 h is still applied."""
    clock = ClockOffset()
    clock.learn(refusal(900), LOCAL)

    with capture_logs() as logs:
        ahead = clock.learn(refusal(MAX_CLOCK_OFFSET_S + 1), LOCAL)
        behind = clock.learn(refusal(-MAX_CLOCK_OFFSET_S - 1), LOCAL)
    kept = clock.seconds
    at_the_bound = clock.learn(refusal(-MAX_CLOCK_OFFSET_S), LOCAL)

    assert (ahead, behind, kept) == (False, False, 900)
    assert at_the_bound is True
    assert clock.seconds == -MAX_CLOCK_OFFSET_S
    [error] = logs  # the second refusal falls within the minute of the first
    assert (error["log_level"], error["event"]) == (
        "error",
        "clock offset out of bounds, not applied",
    )
    assert (error["offset_s"], error["applied_s"]) == (MAX_CLOCK_OFFSET_S + 1, 900)


def test_out_of_bounds_offsets_are_logged_once_a_minute_with_a_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A flood of out-of-bounds answers logs one ERROR a minute, each saying how many it
    stands for."""
    now = [1000.0]
    monkeypatch.setattr("relay.awsjson.signing.monotonic", lambda: now[0])
    clock = ClockOffset()

    with capture_logs() as logs:
        for _ in range(100):
            clock.learn(refusal(2 * MAX_CLOCK_OFFSET_S), LOCAL)
            now[0] += 0.5  # 100 answers in 50 s
        now[0] += 10.0
        clock.learn(refusal(2 * MAX_CLOCK_OFFSET_S), LOCAL)

    assert [(e["log_level"], e["refused"]) for e in logs] == [("error", 1), ("error", 100)]
    assert clock.seconds == 0


def dated(server_time: datetime) -> WireError:
    """A "Signature expired" refusal whose Date header says `server_time`."""
    return WireError(
        code="InvalidSignatureException",
        message=EXPIRED,
        http_status=400,
        typed=True,
        server_time=server_time,
    )


LAST_SECOND = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
"""`Fri, 31 Dec 9999 23:59:59 GMT`: one answer dated so once made every later signing overflow."""


async def signed_at(clock: ClockOffset) -> datetime:
    """The X-Amz-Date `sign_at_service_time` puts on a signed request, with this offset."""
    request = AWSRequest(method="POST", url="https://transfer.us-east-1.amazonaws.com/", data=b"{}")
    request.headers["Authorization"] = "AWS4-HMAC-SHA256 signed by botocore at this host's time"
    await sign_at_service_time(
        clock, AioCredentials("AKID", "secret"), "us-east-1", request, signing_name="transfer"
    )
    return datetime.strptime(request.headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def test_a_service_time_of_9999_teaches_nothing_and_now_stays_this_hosts_time() -> None:
    """After a refusal dated 31 Dec 9999, `now()` is still this host's time (no offset)."""
    clock = ClockOffset()

    assert clock.learn(dated(LAST_SECOND)) is False
    assert abs(clock.now() - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)


async def test_signing_keeps_the_offset_in_use_after_a_refusal_dated_9999() -> None:
    """A refusal dated 9999 after a real offset was learnt leaves signing at that offset."""
    clock = ClockOffset()
    clock.learn(dated(datetime.now(UTC) + timedelta(seconds=900)))

    clock.learn(dated(LAST_SECOND))
    signed = await signed_at(clock)

    assert abs(signed - datetime.now(UTC) - timedelta(seconds=900)) < timedelta(seconds=5)


async def test_signing_works_at_the_largest_offset_an_answer_can_teach() -> None:
    """At the bound (+24 h) a request is still signed, a day ahead of this host."""
    signed = await signed_at(ClockOffset(seconds=MAX_CLOCK_OFFSET_S))

    assert abs(signed - datetime.now(UTC) - timedelta(days=1)) < timedelta(seconds=5)


@pytest.mark.parametrize("seconds", [MAX_CLOCK_OFFSET_S + 1, -MAX_CLOCK_OFFSET_S - 1, math.nan])
def test_an_offset_outside_the_bound_cannot_be_given(seconds: float) -> None:
    """A starting offset beyond ±24 h (or not a number) is refused at once, not at signing."""
    with pytest.raises(ValueError, match="within"):
        ClockOffset(seconds=seconds)
