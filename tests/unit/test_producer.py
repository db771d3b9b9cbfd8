"""The producer's logic without a network: the SendMessageBatch bookkeeping, FIFO ids, retries
of entries SQS fails, and the custom-step decorator's decisions (the same behaviours run
against moto's server in tests/integration/test_producer.py)."""

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ParamValidationError
from hypothesis import given, settings
from hypothesis import strategies as st

from relay.errors import ConfigError
from relay.producer import (
    QUEUE_URL_ENV,
    InvalidMessage,
    Publishable,
    PublishError,
    Status,
    StepResult,
    StepResultPublisher,
    custom_step,
    message_for,
    publish_deadline_s,
    shared_publisher,
)
from relay.sqs.outgoing import (
    DEADLINE_EXCEEDED,
    MIN_CALL_S,
    NO_ANSWER,
    BatchRequest,
    BatchSend,
    OutgoingMessage,
)
from relay.sqs.sizes import MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES
from tests.support import make_steps

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/results"
EVENT: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[2] / "examples" / "custom-step-event-s3.json").read_text()
)
STEPS = make_steps(30, seed=11)


def client_error(code: str, status: int) -> ClientError:
    """A botocore ClientError as SQS would raise it."""
    response: Any = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "SendMessageBatch")


# --- FIFO ids ------------------------------------------------------------------------------


def test_standard_queue_messages_carry_no_fifo_ids() -> None:
    """On a standard queue the body goes alone."""
    assert message_for(STEPS[0].to_body(), fifo=False) == OutgoingMessage(STEPS[0].to_body())


def test_fifo_messages_group_by_execution_and_deduplicate_by_the_four_fields() -> None:
    """Group = execution id; deduplication id = the hash of the four fields, whatever the shape."""
    step = STEPS[0]
    event_shape = json.dumps({**EVENT, "status": "SUCCESS"})
    from_event = StepResult.from_event(EVENT, Status.SUCCESS)
    for body, expected in [(step.to_body(), step), (event_shape, from_event)]:
        message = message_for(body, fifo=True)
        assert message.group_id == expected.execution_id
        assert message.deduplication_id == expected.dedup_id()


def test_an_unparseable_body_sent_on_purpose_still_gets_fifo_ids() -> None:
    """A bad body sent unvalidated goes to a fixed group, deduplicated by its own hash."""
    message = message_for("not json", fifo=True)
    assert message.group_id == "relay"
    assert message.deduplication_id == hashlib.sha256(b"not json").hexdigest()


# --- the SendMessageBatch bookkeeping ------------------------------------------------------


def messages(count: int, size: int = 0) -> list[OutgoingMessage]:
    """`count` messages, padded to `size` bytes when given."""
    return [OutgoingMessage(body="x" * size or STEPS[i].to_body()) for i in range(count)]


def answer(request: BatchRequest, failed: dict[int, bool] | None = None) -> dict[str, Any]:
    """SQS's answer to a request: entries in `failed` (index: sender fault) failed."""
    failed = failed or {}
    return {
        "Successful": [
            {"Id": str(i), "MessageId": f"id-{i}"} for i in request.indexes if i not in failed
        ],
        "Failed": [
            {"Id": str(i), "Code": "InternalError", "Message": "oops", "SenderFault": fault}
            for i, fault in failed.items()
            if i in request.indexes
        ],
    }


def only_round(job: BatchSend) -> tuple[float, list[BatchRequest]]:
    """The first round's delay and requests, all answered with success; it must be the last."""
    rounds = job.rounds()
    delay, requests = next(rounds)
    for request in requests:
        job.record_response(request, answer(request))
    assert list(rounds) == []
    return delay, requests


def test_planned_requests_respect_both_limits_and_keep_order() -> None:
    """25 messages go as 10 + 10 + 5; three of 400 KB as 2 + 1; entry ids are the indexes."""
    delay, requests = only_round(BatchSend(messages(25)))
    assert delay == 0
    assert [len(r.entries) for r in requests] == [10, 10, 5]
    assert [e["Id"] for r in requests for e in r.entries] == [str(i) for i in range(25)]
    _, big = only_round(BatchSend(messages(3, 400_000)))
    assert [r.indexes for r in big] == [(0, 1), (2,)]


def test_entries_failed_through_no_fault_of_ours_go_again_with_backoff() -> None:
    """Failed entries (SenderFault false) are resent alone after 0.2 s; then all are sent."""
    job = BatchSend(messages(5), backoff_s=0.2)
    seen: list[tuple[float, list[tuple[int, ...]]]] = []
    for delay, requests in job.rounds():
        seen.append((delay, [r.indexes for r in requests]))
        for request in requests:
            job.record_response(
                request, answer(request, {1: False, 3: False} if not job.message_ids else {})
            )
    assert seen == [(0.0, [(0, 1, 2, 3, 4)]), (0.2, [(1, 3)])]
    assert job.message_ids == {i: f"id-{i}" for i in range(5)}
    assert job.failures() == []


def test_sender_faults_are_final_at_once() -> None:
    """An entry SQS refuses as the sender's fault is not sent again; the rest is sent."""
    job = BatchSend(messages(3))
    rounds = 0
    for _, requests in job.rounds():
        rounds += 1
        for request in requests:
            job.record_response(request, answer(request, {2: True}))
    assert rounds == 1
    [failure] = job.failures()
    assert (failure.index, failure.code, failure.sender_fault) == (2, "InternalError", True)
    assert sorted(job.message_ids) == [0, 1]


def test_retries_stop_after_the_attempts_and_report_the_last_reason() -> None:
    """An entry that keeps failing is tried `attempts` times, with doubling delays, then listed."""
    job = BatchSend(messages(2), attempts=4, backoff_s=0.1)
    delays = []
    for delay, requests in job.rounds():
        delays.append(delay)
        for request in requests:
            job.record_response(request, answer(request, {0: False}))
    assert delays == [0.0, 0.1, 0.2, 0.4]
    assert [(f.index, f.sender_fault) for f in job.failures()] == [(0, False)]
    assert list(job.message_ids) == [1]


def test_an_entry_the_answer_does_not_mention_is_not_counted_as_sent() -> None:
    """SQS's answer leaves one entry out: it is retried, and listed if it never comes back."""
    job = BatchSend(messages(2), attempts=2)
    for _, requests in job.rounds():
        for request in requests:
            response = answer(request)
            response["Successful"] = [s for s in response["Successful"] if s["Id"] != "1"]
            # An id this request did not carry must not count either.
            response["Successful"].append({"Id": "7", "MessageId": "stray"})
            job.record_response(request, response)
    assert job.message_ids == {0: "id-0"}
    [failure] = job.failures()
    assert (failure.index, failure.code) == (1, NO_ANSWER)


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (client_error("AWS.SimpleQueueService.NonExistentQueue", 400), False),
        (client_error("AccessDenied", 403), False),
        (client_error("RequestThrottled", 400), True),
        (client_error("InternalError", 500), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), True),
        (ParamValidationError(report="bad"), False),
    ],
    ids=["missing queue", "denied", "throttled", "5xx", "unreachable", "bad parameters"],
)
def test_a_whole_request_failing_fails_each_entry_retrying_only_what_may_pass(
    error: Exception, retried: bool
) -> None:
    """A request error fails each of its entries; only transient ones are tried again."""
    job = BatchSend(messages(12), attempts=3, backoff_s=0)
    calls = 0
    for _, requests in job.rounds():
        for request in requests:
            calls += 1
            job.record_error(request, error)  # type: ignore[arg-type]
    assert calls == (6 if retried else 2)
    failures = job.failures()
    assert [f.index for f in failures] == list(range(12))
    assert {f.sender_fault for f in failures} == {not retried}
    assert job.message_ids == {}


OUTCOMES = st.sampled_from(["sent", "retryable", "sender", "omitted"])


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 400_000), min_size=0, max_size=40),
    script=st.lists(st.lists(OUTCOMES, min_size=40, max_size=40), min_size=4, max_size=4),
    attempts=st.integers(1, 4),
)
def test_every_message_ends_sent_or_failed_never_both(
    sizes: list[int], script: list[list[str]], attempts: int
) -> None:
    """Whatever SQS answers, each message is in exactly one of the ids and the failures, and
    every request respects both limits."""
    job = BatchSend([OutgoingMessage("x" * size) for size in sizes], attempts=attempts)
    rounds = 0
    for round_number, (_, requests) in enumerate(job.rounds()):
        rounds += 1
        for request in requests:
            assert len(request.entries) <= MAX_BATCH_ENTRIES
            assert len(request.indexes) == 1 or sum(sizes[i] for i in request.indexes) <= (
                MAX_MESSAGE_BYTES
            )
            outcome = {i: script[round_number][i] for i in request.indexes}
            job.record_response(
                request,
                {
                    "Successful": [
                        {"Id": str(i), "MessageId": f"m{i}"}
                        for i, what in outcome.items()
                        if what == "sent"
                    ],
                    "Failed": [
                        {"Id": str(i), "Code": "X", "SenderFault": what == "sender"}
                        for i, what in outcome.items()
                        if what in ("retryable", "sender")
                    ],
                },
            )
    assert rounds <= attempts
    failed = {f.index for f in job.failures()}
    assert failed.isdisjoint(job.message_ids)
    assert failed | set(job.message_ids) == set(range(len(sizes)))


# --- the synchronous publisher on a scripted client ----------------------------------------


class ScriptedSQS:
    """A botocore-like SQS client whose SendMessageBatch fails the given ids on the first call."""

    def __init__(self, fail_first: dict[str, bool]) -> None:
        self.fail_first = fail_first
        self.requests: list[list[dict[str, Any]]] = []

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:
        """Answers like SQS: the scripted failures on the first call, success afterwards."""
        failing = self.fail_first if not self.requests else {}
        self.requests.append(Entries)
        return {
            "Successful": [
                {"Id": e["Id"], "MessageId": f"m-{e['Id']}"}
                for e in Entries
                if e["Id"] not in failing
            ],
            "Failed": [
                {"Id": e["Id"], "Code": "InternalError", "SenderFault": failing[e["Id"]]}
                for e in Entries
                if e["Id"] in failing
            ],
        }


def test_publish_many_retries_failed_entries_and_returns_every_id_in_order() -> None:
    """Entries SQS failed on its side are sent again; the ids come back in the results' order."""
    client = ScriptedSQS({"1": False, "2": False})
    publisher = StepResultPublisher(QUEUE, client=client, backoff_s=0)
    assert publisher.publish_many(STEPS[:4]) == ["m-0", "m-1", "m-2", "m-3"]
    assert [[e["Id"] for e in r] for r in client.requests] == [["0", "1", "2", "3"], ["1", "2"]]


def test_publish_many_raises_listing_exactly_the_results_not_sent() -> None:
    """A sender fault is final: the error names that result, its reason and the others' ids."""
    publisher = StepResultPublisher(QUEUE, client=ScriptedSQS({"2": True}), backoff_s=0)
    with pytest.raises(PublishError) as caught:
        publisher.publish_many(STEPS[:3])
    [failure] = caught.value.failures
    assert (failure.index, failure.result, failure.code) == (2, STEPS[2], "InternalError")
    assert failure.body == STEPS[2].to_body()
    assert caught.value.message_ids == ["m-0", "m-1", None]
    assert str(caught.value) == f"1 of 3 result(s) not sent to {QUEUE}: InternalError: "


def test_publish_validates_everything_before_sending_anything() -> None:
    """One invalid result among valid ones: `InvalidMessage`, and no request was made."""
    client = ScriptedSQS({})
    publisher = StepResultPublisher(QUEUE, client=client)
    with pytest.raises(InvalidMessage) as caught:
        publisher.publish_many([STEPS[0], {**STEPS[1].to_request(), "ExecutionId": "x"}])
    assert caught.value.field == "ExecutionId"
    assert client.requests == []


def test_a_result_of_the_wrong_type_is_a_type_error() -> None:
    """Bytes or numbers are a programming mistake, not a bad result."""
    publisher = StepResultPublisher(QUEUE, client=ScriptedSQS({}))
    with pytest.raises(TypeError, match="StepResult"):
        publisher.publish(b"{}")  # type: ignore[arg-type]


def test_publishing_nothing_sends_nothing() -> None:
    """An empty list makes no request and returns no id."""
    client = ScriptedSQS({})
    assert StepResultPublisher(QUEUE, client=client).publish_many([]) == []
    assert client.requests == []


# --- the custom-step decorator -------------------------------------------------------------


class RecordingPublisher(StepResultPublisher):
    """A publisher that keeps what it is asked to publish instead of sending it."""

    def __init__(self) -> None:
        super().__init__(QUEUE, client=ScriptedSQS({}))
        self.published: list[Publishable] = []
        self.deadlines: list[float | None] = []

    def publish(self, result: Publishable, *, deadline_s: float | None = None) -> str:
        """Records the result and the deadline it was given."""
        self.published.append(result)
        self.deadlines.append(deadline_s)
        return f"m-{len(self.published)}"


def test_a_bare_decorator_publishes_success_and_returns_the_handlers_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`@custom_step` without arguments uses the shared publisher; the wrapper keeps the
    handler's name and docstring."""
    publisher = RecordingPublisher()
    monkeypatch.setattr("relay.producer.lambda_step.shared_publisher", lambda queue_url: publisher)

    @custom_step
    def handler(event: dict[str, Any], context: Any) -> int:
        """Doc."""
        return 42

    assert handler(EVENT, None) == 42
    assert publisher.published == [StepResult.from_event(EVENT, Status.SUCCESS)]
    assert (handler.__name__, handler.__doc__) == ("handler", "Doc.")


def test_a_raising_handler_publishes_failure_and_returns_none() -> None:
    """The handler's exception becomes FAILURE; the wrapper returns normally."""
    publisher = RecordingPublisher()

    @custom_step(publisher=publisher)
    def handler(event: dict[str, Any], context: Any) -> int:
        raise ValueError("bad file")

    assert handler(EVENT, None) is None
    assert publisher.published == [StepResult.from_event(EVENT, Status.FAILURE)]


def test_on_error_raise_publishes_nothing_and_propagates() -> None:
    """on_error="raise": the exception propagates, nothing is published."""
    publisher = RecordingPublisher()

    @custom_step(publisher=publisher, on_error="raise")
    def handler(event: dict[str, Any], context: Any) -> int:
        raise ValueError("bad file")

    with pytest.raises(ValueError, match="bad file"):
        handler(EVENT, None)
    assert publisher.published == []


def test_an_interrupt_is_not_answered_as_failure() -> None:
    """KeyboardInterrupt and SystemExit are not step failures: they pass through unanswered."""
    publisher = RecordingPublisher()

    @custom_step(publisher=publisher)
    def handler(event: dict[str, Any], context: Any) -> int:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        handler(EVENT, None)
    assert publisher.published == []


def test_an_event_that_is_not_a_custom_steps_fails_before_the_handler_runs() -> None:
    """No execution id in the event: `InvalidMessage` naming it, handler not called."""
    publisher = RecordingPublisher()
    calls: list[Any] = []
    handler = custom_step(publisher=publisher)(lambda event, context: calls.append(event))
    event = json.loads(json.dumps(EVENT))
    del event["serviceMetadata"]["executionDetails"]["executionId"]
    with pytest.raises(InvalidMessage) as caught:
        handler(event, None)
    assert caught.value.field == "serviceMetadata.executionDetails.executionId"
    assert calls == []
    assert publisher.published == []


def test_without_a_queue_the_wrapper_says_how_to_name_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """No queue_url and no RELAY_QUEUE_URL: a `ConfigError` naming both; handler not called."""
    monkeypatch.delenv(QUEUE_URL_ENV, raising=False)
    calls: list[Any] = []
    handler = custom_step(lambda event, context: calls.append(event))
    with pytest.raises(ConfigError, match=QUEUE_URL_ENV):
        handler(EVENT, None)
    assert calls == []


def test_the_shared_publisher_is_made_once_per_queue_and_read_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The same queue reuses one publisher (Lambda container reuse); RELAY_QUEUE_URL is read on
    each call, so a changed value takes effect."""
    monkeypatch.setenv(QUEUE_URL_ENV, f"{QUEUE}-a")
    first = shared_publisher()
    assert shared_publisher() is first
    assert first.queue_url == f"{QUEUE}-a"
    monkeypatch.setenv(QUEUE_URL_ENV, f"{QUEUE}-b")
    assert shared_publisher().queue_url == f"{QUEUE}-b"
    assert shared_publisher(f"{QUEUE}-a") is first


def test_on_error_must_be_publish_or_raise() -> None:
    """A misspelt on_error fails at decoration time, not on the first failure."""
    with pytest.raises(ValueError, match="on_error"):
        custom_step(on_error="ignore")  # type: ignore[call-overload]


@pytest.mark.parametrize("name", ["lambda_step.py", "container_step.py"])
def test_the_readme_shows_each_example_as_the_tests_run_it(name: str) -> None:
    """The README's step-processor examples are the files the integration tests run."""
    root = Path(__file__).resolve().parents[2]
    example = (root / "examples" / name).read_text()
    assert f"```python\n{example}```" in (root / "README.md").read_text()


# --- deadlines -----------------------------------------------------------------------------


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeLambdaContext:
    """The part of Lambda's context object `custom_step` reads."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def test_no_round_starts_that_could_not_make_a_call_before_the_deadline() -> None:
    """After a failed round, the next one (0.2 s backoff) does not start when the deadline is
    nearer than the backoff plus the least time a call needs: the entry fails as
    DeadlineExceeded, saying why the last try failed."""
    clock = FakeClock()
    deadline = clock.now + 1.0
    job = BatchSend([OutgoingMessage("a")], backoff_s=0.2, deadline=deadline, clock=clock)
    rounds = job.rounds()
    delay_s, [request] = next(rounds)
    assert delay_s == 0
    clock.now += 0.9  # the call took most of the time and failed on SQS's side
    job.record_response(request, {"Failed": [{"Id": "0", "Code": "InternalError"}]})
    assert job.time_left_s() == pytest.approx(0.1)
    assert list(rounds) == []
    [failure] = job.failures()
    assert failure.code == DEADLINE_EXCEEDED
    assert "last try: InternalError" in failure.message
    assert not failure.sender_fault


def test_a_call_cut_short_at_the_deadline_is_reported_as_such() -> None:
    """A call its driver cut at the deadline fails its entries as DeadlineExceeded with the
    driver's reason, and the round that cannot follow keeps that reason."""
    clock = FakeClock()
    job = BatchSend([OutgoingMessage("a")], deadline=clock.now + 2 * MIN_CALL_S, clock=clock)
    rounds = job.rounds()
    _, [request] = next(rounds)
    clock.now += 2 * MIN_CALL_S
    job.record_expired(request, "the call was still running at the deadline")
    assert list(rounds) == []
    [failure] = job.failures()
    assert (failure.code, failure.message) == (
        DEADLINE_EXCEEDED,
        "the call was still running at the deadline",
    )


def test_a_deadline_already_past_sends_nothing() -> None:
    """With no time left, no round is yielded and every entry fails as DeadlineExceeded."""
    clock = FakeClock()
    job = BatchSend([OutgoingMessage("a"), OutgoingMessage("b")], deadline=clock.now, clock=clock)
    assert list(job.rounds()) == []
    assert [f.code for f in job.failures()] == [DEADLINE_EXCEEDED, DEADLINE_EXCEEDED]


def test_rounds_go_on_while_the_deadline_allows() -> None:
    """A far deadline changes nothing: failed entries are retried round after round."""
    clock = FakeClock()
    job = BatchSend([OutgoingMessage("a")], attempts=3, deadline=clock.now + 60, clock=clock)
    made = 0
    for _, requests in job.rounds():
        for request in requests:
            made += 1
            job.record_response(request, {"Failed": [{"Id": "0", "Code": "InternalError"}]})
    assert made == 3
    assert [f.code for f in job.failures()] == ["InternalError"]


def test_a_publisher_past_its_deadline_raises_without_calling_sqs() -> None:
    """`publish(deadline_s=0)` raises PublishError (DeadlineExceeded) and makes no call."""
    client = ScriptedSQS({})
    with pytest.raises(PublishError) as caught:
        StepResultPublisher(QUEUE, client=client).publish(STEPS[0], deadline_s=0)
    assert [f.code for f in caught.value.failures] == [DEADLINE_EXCEEDED]
    assert client.requests == []


@pytest.mark.parametrize(
    ("remaining_ms", "deadline_s"),
    [(500, 0.45), (5_000, 4.5), (10_000, 9.0), (60_000, 59.0), (900_000, 899.0), (0, 0.0)],
)
def test_custom_step_publishes_within_the_invocations_remaining_time_less_a_margin(
    remaining_ms: int, deadline_s: float
) -> None:
    """The margin is a tenth of the remaining time, at most a second; the wrapper hands the
    publisher that deadline, read after the handler ran."""
    assert publish_deadline_s(FakeLambdaContext(remaining_ms)) == pytest.approx(deadline_s)
    publisher = RecordingPublisher()
    context = FakeLambdaContext(remaining_ms)
    handler = custom_step(publisher=publisher)(
        lambda event, ctx: setattr(ctx, "remaining_ms", ctx.remaining_ms // 2)
    )
    handler(EVENT, context)
    assert publisher.deadlines == [publish_deadline_s(FakeLambdaContext(remaining_ms // 2))]


def test_outside_lambda_there_is_no_deadline() -> None:
    """A context without get_remaining_time_in_millis (None, a container's) sets none."""
    assert publish_deadline_s(None) is None
    assert publish_deadline_s(object()) is None
