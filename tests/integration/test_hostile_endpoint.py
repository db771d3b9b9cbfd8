"""An endpoint's answers are bounded (DESIGN §1): a Date, an error type or a body it sends can
neither stop a sender nor make it hold what the endpoint chooses, through both senders."""

import asyncio
import contextlib
import random
import string
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import generate_latest
from structlog.testing import capture_logs

from relay.awsjson import MAX_ERROR_BODY_BYTES
from relay.awsjson.signing import ClockOffset
from relay.outcomes import CONNECTION_ERROR, READ_TIMEOUT, Action, Reason
from relay.transfer import (
    CallbackError,
    RetryPolicy,
    TransferSender,
    open_lean_transfer,
    open_transfer,
)
from tests.conftest import Queues
from tests.hostile_endpoint import (
    ACCEPTED,
    FAR_FUTURE,
    FAR_FUTURE_WEST,
    HUGE,
    Answer,
    HostileEndpoint,
    broken_body,
    dated_refusal,
    error_type,
    hostile_endpoint,
    padded_error,
    streamed_body,
)
from tests.integration.worker_support import fast_config, outcome_totals, run_to_empty, sample
from tests.support import SQSClient, drain, eventually, make_steps, send_bodies, total_depth

SENDERS = ("lean", "aiobotocore")
ATTEMPTS_SERIES = "relay_callback_attempts_total{"
# What a client that stops reading still lets through: its read buffer, the two sockets' kernel
# buffers on loopback and the server's own; far below the 20 MB the endpoint offers.
UNREAD_SLACK = 8 * 1024 * 1024


@contextlib.asynccontextmanager
async def sender(
    kind: str,
    endpoint: HostileEndpoint,
    monkeypatch: pytest.MonkeyPatch,
    *,
    pool: int = 2,
    call_timeout_s: float = 5,
    clock: ClockOffset | None = None,
) -> AsyncIterator[TransferSender]:
    """A one-attempt sender of this kind on the hostile endpoint, signing with `clock` (a fresh
    offset unless given)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", endpoint.url)
    opener = open_lean_transfer if kind == "lean" else open_transfer
    async with opener(
        max_pool_connections=pool, call_timeout_s=call_timeout_s, clock=clock or ClockOffset()
    ) as client:
        yield TransferSender(
            client, RetryPolicy(max_attempts=1, budget_s=5.0, base_s=0.0, cap_s=0.0)
        )


def signed_at(request_headers: dict[str, str]) -> datetime:
    """The signing time a request carries (its X-Amz-Date)."""
    return datetime.strptime(request_headers["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("kind", SENDERS)
@pytest.mark.parametrize(
    ("date", "logged"),
    [
        # A real time, too far off: refused aloud.
        (FAR_FUTURE, [("clock offset out of bounds, not applied", "error")]),
        # No time a datetime holds: the Date header is ignored.
        (FAR_FUTURE_WEST, []),
    ],
    ids=["gmt", "minus_1200"],
)
async def test_a_refusal_dated_9999_is_not_learnt_and_the_next_call_is_signed_and_delivered(
    kind: str, date: str, logged: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "Signature expired" refusal dated 9999 is an ordinary InvalidSignatureException; the
    offset stays 0 and the next call is signed at this host's time and succeeds."""
    step = make_steps(1, seed=501)[0]
    clock = ClockOffset()
    async with (
        hostile_endpoint([dated_refusal(date)]) as endpoint,
        sender(kind, endpoint, monkeypatch, clock=clock) as callbacks,
    ):
        with capture_logs() as logs, pytest.raises(CallbackError) as refused:
            await callbacks.call(step)
        await callbacks.call(step)

    assert (refused.value.code, refused.value.http_status) == ("InvalidSignatureException", 400)
    assert clock.seconds == 0
    assert len(endpoint.requests) == 2
    assert abs(signed_at(endpoint.requests[1]) - datetime.now(UTC)) < timedelta(minutes=1)
    clock_logs = [(e["event"], e["log_level"]) for e in logs if e["event"].startswith("clock")]
    assert clock_logs == logged


@pytest.mark.parametrize("kind", SENDERS)
async def test_huge_error_bodies_are_read_up_to_the_cap_and_their_connections_dropped(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 calls in flight, each answered 500 with a 20 MB body: each fails as a status-only 500
    at once, the endpoint never gets to write a whole body, and the next call succeeds."""
    steps = make_steps(31, seed=502)
    async with (
        hostile_endpoint([streamed_body(500, HUGE)] * 30) as endpoint,
        sender(kind, endpoint, monkeypatch, pool=30) as callbacks,
    ):
        results = await asyncio.gather(
            *(callbacks.call(step) for step in steps[:30]), return_exceptions=True
        )
        await eventually(lambda: len(endpoint.streams) == 30, timeout_s=10, what="30 ends")
        await callbacks.call(steps[30])

    assert all(isinstance(result, CallbackError) for result in results), results
    errors = [result for result in results if isinstance(result, CallbackError)]
    assert {(e.code, e.http_status, e.rule.action) for e in errors} == {("500", 500, Action.RETRY)}
    assert not any(stream.complete for stream in endpoint.streams)
    assert max(stream.written for stream in endpoint.streams) < UNREAD_SLACK
    assert len(endpoint.requests) == 31


@pytest.mark.parametrize("kind", SENDERS)
async def test_a_huge_accepted_body_is_read_up_to_the_cap(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 200 with a 20 MB body is a delivered callback, and the body is not read to its end."""
    steps = make_steps(2, seed=503)
    async with (
        hostile_endpoint([streamed_body(200, HUGE)]) as endpoint,
        sender(kind, endpoint, monkeypatch) as callbacks,
    ):
        await callbacks.call(steps[0])
        await eventually(lambda: len(endpoint.streams) == 1, timeout_s=10, what="the end")
        await callbacks.call(steps[1])

    [stream] = endpoint.streams
    assert not stream.complete
    assert stream.written < UNREAD_SLACK


@pytest.mark.parametrize("kind", SENDERS)
@pytest.mark.parametrize(
    ("broken", "code"),
    [
        (broken_body(500, stall_after=1000), READ_TIMEOUT),
        (broken_body(500, cut_after=1000), CONNECTION_ERROR),
    ],
    ids=["stalled", "cut"],
)
async def test_a_body_that_stalls_or_is_cut_is_a_retryable_transport_error(
    kind: str, broken: Answer, code: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body that stops arriving is a read timeout, one cut off a connection error, on both
    senders alike, and the next call succeeds (the capped read keeps the transport's errors)."""
    steps = make_steps(2, seed=507)
    async with (
        hostile_endpoint([broken]) as endpoint,
        sender(kind, endpoint, monkeypatch, call_timeout_s=0.5) as callbacks,
    ):
        with pytest.raises(CallbackError) as failed:
            await callbacks.call(steps[0])
        await callbacks.call(steps[1])

    assert (failed.value.code, failed.value.rule.action) == (code, Action.RETRY)
    assert len(endpoint.requests) == 2


@pytest.mark.parametrize("kind", SENDERS)
async def test_an_error_body_of_exactly_the_cap_is_read_and_one_byte_more_is_not(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A JSON error body of exactly `MAX_ERROR_BODY_BYTES` is read whole (its code counts); one
    byte longer, it is cut, is no JSON, and leaves only the status."""
    steps = make_steps(3, seed=504)
    script = [
        padded_error("ThrottlingException", MAX_ERROR_BODY_BYTES),
        padded_error("ThrottlingException", MAX_ERROR_BODY_BYTES + 1),
    ]
    async with (
        hostile_endpoint(script) as endpoint,
        sender(kind, endpoint, monkeypatch) as callbacks,
    ):
        seen = []
        for step in steps[:2]:
            with pytest.raises(CallbackError) as failed:
                await callbacks.call(step)
            seen.append((failed.value.code, failed.value.http_status))
        await callbacks.call(steps[2])

    assert seen == [("ThrottlingException", 400), ("400", 400)]
    assert len(endpoint.requests) == 3


@pytest.mark.parametrize("kind", SENDERS)
async def test_a_4000_character_error_type_is_read_whole_and_classified_as_unexpected(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random 4,000-character codes in `X-Amzn-Errortype` come back whole (logs and DLQ keep the
    full code), each an unexpected error: retried, never a crash or a dead letter at once."""
    rng = random.Random(505)
    codes = ["".join(rng.choices(string.ascii_letters, k=4000)) for _ in range(3)]
    steps = make_steps(3, seed=505)
    async with (
        hostile_endpoint([error_type(code) for code in codes]) as endpoint,
        sender(kind, endpoint, monkeypatch) as callbacks,
    ):
        seen = []
        for step in steps:
            with pytest.raises(CallbackError) as failed:
                await callbacks.call(step)
            seen.append(failed.value)

    assert [error.code for error in seen] == codes
    assert {(e.http_status, e.rule.action, e.rule.exhausted) for e in seen} == {
        (400, Action.RETRY, Reason.UNEXPECTED_ERROR)
    }


@pytest.mark.parametrize("lean", [True, False], ids=SENDERS)
@pytest.mark.parametrize("date", [FAR_FUTURE, FAR_FUTURE_WEST], ids=["gmt", "minus_1200"])
async def test_the_worker_delivers_through_refusals_dated_9999(
    sqs: SQSClient, queues: Queues, monkeypatch: pytest.MonkeyPatch, lean: bool, date: str
) -> None:
    """An endpoint whose first answers are refusals dated 9999 costs retries, not the worker:
    every message is delivered, none fails unexpectedly, and the clock offset stays 0."""
    steps = make_steps(4, seed=506)
    await send_bodies(sqs, queues.url, [step.to_body() for step in steps])
    async with hostile_endpoint([dated_refusal(date)] * 3, then=ACCEPTED) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", endpoint.url)
        with capture_logs() as logs:
            worker = await run_to_empty(
                fast_config(queues.url, lean_sender=lean, max_receives=100), timeout_s=30
            )

    assert outcome_totals(worker) == {"delivered": 4}
    assert await total_depth(sqs, queues.url) == 0
    assert await drain(sqs, queues.dlq_url) == []
    assert [e for e in logs if e["event"] == "message failed unexpectedly"] == []
    assert sample(worker, "relay_clock_offset_seconds") == 0
    assert len(endpoint.requests) == 3 + 4
    now = datetime.now(UTC)
    assert all(abs(signed_at(r) - now) < timedelta(minutes=1) for r in endpoint.requests)


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])
async def test_random_error_codes_do_not_grow_the_metrics(
    sqs: SQSClient, queues: Queues, monkeypatch: pytest.MonkeyPatch, lean: bool
) -> None:
    """Forty answers with random 4,000-character error types: /metrics takes each as `other`
    (one series, not forty), while the dead-letter copies keep the full code; every message is
    accounted for."""
    rng = random.Random(507)
    codes = ["".join(rng.choice(string.ascii_letters) for _ in range(4000)) for _ in range(40)]
    steps = make_steps(10, seed=507)
    await send_bodies(sqs, queues.url, [step.to_body() for step in steps])
    async with hostile_endpoint([error_type(code) for code in codes], then=ACCEPTED) as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", endpoint.url)
        worker = await run_to_empty(
            fast_config(queues.url, lean_sender=lean, max_attempts=2, max_receives=3),
            timeout_s=60,
        )

    exposition = generate_latest(worker.metrics.registry).decode()
    attempts = [line for line in exposition.splitlines() if line.startswith(ATTEMPTS_SERIES)]
    assert {line.split('result="')[1].split('"')[0] for line in attempts} <= {"ok", "other"}
    assert sample(worker, "relay_callback_attempts_total", result="other") == 40
    assert len(exposition) < 20_000
    dead = await drain(sqs, queues.dlq_url)
    assert all(copy.attributes["relay-error-code"] in codes for copy in dead)
    totals = outcome_totals(worker)
    assert totals.get("delivered", 0) + len(dead) == 10
    assert await total_depth(sqs, queues.url) == 0
