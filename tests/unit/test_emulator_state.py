"""The emulator's decisions and memory without a server: registration, bucket continuity, reset."""

import pytest

from relay.emulator import EmulatorState, FailureKind, Faults
from relay.emulator.executions import next_token, read_next_token
from relay.emulator.protocol import NO_FIELDS, GatewayBody, GatewayError, ServiceError, StepCall

WORKFLOW = "w-0123456789abcdefg"
EXECUTION = "0123abcd-0123-4567-89ef-0123456789ab"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def call(token: str = "t", status: str = "SUCCESS") -> StepCall:
    """A well-formed call for the test execution."""
    return StepCall(workflow_id=WORKFLOW, execution_id=EXECUTION, token=token, status=status)


def code_of(answer: object) -> str | None:
    """The error code of an answer, None for success."""
    return answer.code if isinstance(answer, ServiceError) else None


def test_registering_an_answered_step_makes_it_wait_again() -> None:
    """Re-registering an answered token re-arms it, so tests and demos can reuse steps."""
    state = EmulatorState()
    state.register(WORKFLOW, EXECUTION, "t")
    assert state.decide(call()) is None

    state.register(WORKFLOW, EXECUTION, "t")

    assert state.is_waiting(WORKFLOW, EXECUTION, "t")
    assert state.decide(call()) is None


def test_registering_many_is_all_or_nothing() -> None:
    """One malformed step in a batch raises ValueError and registers none of the batch."""
    state = EmulatorState()

    with pytest.raises(ValueError, match="'Token'"):
        state.register_many([(WORKFLOW, EXECUTION, "good"), (WORKFLOW, EXECUTION, "bad token")])

    assert state.waiting_tokens == 0
    assert code_of(state.decide(call("good"))) == "ResourceNotFoundException"


def test_changing_other_faults_does_not_refill_the_bucket() -> None:
    """Setting new latency keeps the throttle's bucket as it was; changing the rate refills it."""
    clock = FakeClock()
    state = EmulatorState(
        accept_any=True, faults=Faults(throttle_rps=1, throttle_burst=1), clock=clock
    )
    assert state.decide(call("a")) is None

    state.set_faults(Faults(throttle_rps=1, throttle_burst=1, latency_ms=5))
    throttled = state.decide(call("b"))
    state.set_faults(Faults(throttle_rps=2, throttle_burst=1))

    assert code_of(throttled) == "ThrottlingException"
    assert state.decide(call("b")) is None


def test_reset_forgets_everything_and_repeats_the_seeded_draws() -> None:
    """After reset the state is empty, faults are off, and the seeded draws start over."""
    state = EmulatorState(faults=Faults(jitter_ms=10), seed=3)
    first_draws = [state.sample_delay_ms() for _ in range(3)]
    state.register(WORKFLOW, EXECUTION, "t")
    state.record_call(
        received_at=0.0,
        fields=NO_FIELDS,
        http_status=400,
        error_code="X",
        delay_ms=0.0,
        request_id=None,
    )

    state.reset()
    state.set_faults(Faults(jitter_ms=10))

    assert [state.sample_delay_ms() for _ in range(3)] == first_draws
    assert state.calls == ()
    assert state.counts == {}
    assert state.waiting_tokens == 0


def test_call_log_indexes_and_counts_each_call() -> None:
    """Each recorded call gets the next index and bumps its result's counter."""
    state = EmulatorState()
    for code in (None, "ThrottlingException", None):
        state.record_call(
            received_at=1.0,
            fields=NO_FIELDS,
            http_status=200 if code is None else 400,
            error_code=code,
            delay_ms=0.0,
            request_id="r",
        )

    assert [record.index for record in state.calls_since(1)] == [1, 2]
    assert state.counts == {"success": 2, "ThrottlingException": 1}
    assert state.stats()["calls"] == 3


@pytest.mark.parametrize(
    ("code", "status", "namespace"),
    [
        ("ThrottlingException", 400, ""),
        ("AccessDeniedException", 400, ""),
        ("ResourceNotFoundException", 400, ""),
        ("InvalidRequestException", 400, ""),
        ("ServiceUnavailableException", 500, ""),
        ("InternalServiceError", 500, ""),
        ("ExpiredTokenException", 400, "com.amazon.coral.service#"),
        ("UnrecognizedClientException", 400, "com.amazon.coral.service#"),
        ("InvalidSignatureException", 400, "com.amazon.coral.service#"),
        ("SomethingNewException", 400, ""),
    ],
)
def test_error_workflows_answer_the_chosen_code_before_anything_else(
    code: str, status: int, namespace: str
) -> None:
    """A workflow in error_workflows gets that code (with its status) even when also denied."""
    state = EmulatorState(accept_any=True)
    state.set_faults(
        Faults(
            error_workflows={WORKFLOW: code},
            deny_workflows=frozenset({WORKFLOW}),
            retry_after_s=3,
        )
    )

    answer = state.decide(call())

    assert isinstance(answer, ServiceError)
    assert (answer.code, answer.http_status, answer.namespace) == (code, status, namespace)
    assert answer.message
    if code == "ThrottlingException":
        assert answer.members == {"RetryAfterSeconds": "3"}
    assert state.decide(call()) == answer, "an injected error keeps answering"
    assert state.waiting_tokens == 0


def test_other_workflows_are_not_touched_by_error_workflows() -> None:
    """Only the named workflow gets the injected error; others complete as usual."""
    state = EmulatorState(accept_any=True)
    state.set_faults(Faults(error_workflows={"w-zzzzzzzzzzzzzzzzz": "ExpiredTokenException"}))

    assert state.decide(call()) is None


@pytest.mark.parametrize(
    ("kind", "status"),
    [
        (FailureKind.BAD_GATEWAY, 502),
        (FailureKind.GATEWAY_UNAVAILABLE, 503),
        (FailureKind.GATEWAY_TIMEOUT, 504),
    ],
)
@pytest.mark.parametrize("body", list(GatewayBody))
def test_gateway_failures_answer_their_status_with_a_page_or_nothing(
    kind: FailureKind, status: int, body: GatewayBody
) -> None:
    """Each gateway kind answers its status, with an HTML page or an empty body as set."""
    state = EmulatorState(accept_any=True)
    state.set_faults(Faults(error_rate=1.0, error_kinds=(kind,), gateway_body=body))

    answer = state.decide(call())

    assert isinstance(answer, GatewayError)
    assert answer.http_status == status
    assert answer.body.startswith(b"<html>") if body is GatewayBody.HTML else answer.body == b""


def test_listing_pages_go_on_after_the_last_listed_and_end_with_the_last_in_progress() -> None:
    """`page` lists executions in progress in start order; its cursor is None exactly when no
    execution in progress follows, so the last page never comes back empty."""
    clock = FakeClock()
    state = EmulatorState(clock=clock)
    ids = [f"0000000{i}-0123-4567-89ef-0123456789ab" for i in range(5)]
    state.register_many([(WORKFLOW, execution, "t") for execution in ids])
    state.decide(StepCall(workflow_id=WORKFLOW, execution_id=ids[4], token="t", status="SUCCESS"))
    book = state.executions

    first, after = book.page(WORKFLOW, 0, 2)
    assert [e.execution_id for e in first] == ids[:2]
    assert after is not None
    rest, end = book.page(WORKFLOW, after, 2)
    assert [e.execution_id for e in rest] == ids[2:4]
    assert end is None, "the only later execution was answered"


def test_a_next_token_names_its_workflow_and_nothing_else_reads_as_one() -> None:
    """A NextToken reads back only for the workflow that handed it out."""
    token = next_token(WORKFLOW, 7)
    assert read_next_token(token, WORKFLOW) == 7
    assert read_next_token(token, "w-fffffffffffffffff") is None
    for bad in ("", "%%%", next_token(WORKFLOW, 7)[:-3]):
        assert read_next_token(bad, WORKFLOW) is None


def test_registering_in_the_past_and_bad_step_timeouts_are_checked() -> None:
    """`started_s_ago` must be a number >= 0 and a step timeout 0 to 1800 s; an execution
    started as long ago as its timeout is over at once."""
    state = EmulatorState(clock=FakeClock())
    with pytest.raises(ValueError, match="started_s_ago"):
        state.register_many([(WORKFLOW, EXECUTION, "t")], started_s_ago=-1)
    for bad in (-1.0, 1801.0, float("nan")):
        with pytest.raises(ValueError, match="step timeout"):
            state.set_step_timeout(WORKFLOW, bad)
    state.register_many([(WORKFLOW, EXECUTION, "t")], started_s_ago=1800)
    assert code_of(state.decide(call())) == "ResourceNotFoundException"
    assert state.stats()["in_progress"] == 0
