"""The pure parts of the shared delivered-memory: its item key, its lease, its waits, the
circuit that says the table is down, and how a claim reads an endpoint's odd answers."""

import re
from typing import Any

import pytest
from botocore.exceptions import ClientError

from relay.dedupe import (
    CHECK_KEY,
    ClaimedElsewhere,
    DedupeTable,
    DedupeUnavailable,
    TableCircuit,
    lease_for,
    table_key,
)
from relay.message import Status

STEP = ("w-abcdefghijklmnopq", "12345678-1234-1234-1234-123456789abc", "tok_1")


def test_the_item_key_never_changes_between_versions() -> None:
    """Tasks of two versions during a rolling deploy share the table: the key format is fixed."""
    assert table_key(STEP) == "d02db87ab2ab51bca9c2776c207bafa5"


def test_the_item_key_depends_on_every_id_and_hides_them() -> None:
    """Changing any one id changes the key; the key is 32 hex digits and contains none of them."""
    keys = {
        table_key(STEP),
        table_key(("w-abcdefghijklmnopr", STEP[1], STEP[2])),
        table_key((STEP[0], "12345678-1234-1234-1234-123456789abd", STEP[2])),
        table_key((STEP[0], STEP[1], "tok_2")),
    }
    assert len(keys) == 4
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        assert not any(part in key for part in STEP)
    assert CHECK_KEY not in keys


def test_the_item_key_does_not_run_ids_together() -> None:
    """Ids are joined with a separator they cannot contain: shifting a character between two
    ids gives another key."""
    assert table_key(("ab", "c", "d")) != table_key(("a", "bc", "d"))


def test_a_lease_outlasts_the_send_it_covers() -> None:
    """The lease covers the retry budget plus a last attempt's whole timeout, with a margin."""
    assert lease_for(20.0, 10.0) > 30.0
    assert lease_for(20.0, 10.0) - 30.0 <= 10.0


def test_a_held_step_says_how_long_to_wait() -> None:
    """The wait is the time left on the other lease, never negative."""
    assert ClaimedElsewhere(until=1000.0).wait_s(now=990.5) == 9.5
    assert ClaimedElsewhere(until=1000.0).wait_s(now=1001.0) == 0.0


# --- the circuit: whether the table is down -------------------------------------------------


class FakeClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def opened(clock: FakeClock) -> TableCircuit:
    """A circuit (3 failures, 5 s cooldown) just opened by three failed calls."""
    circuit = TableCircuit(failures_to_open=3, cooldown_s=5.0, clock=clock)
    for _ in range(3):
        assert circuit.allow()
        circuit.failed()
    return circuit


def test_the_circuit_opens_only_after_failures_in_a_row() -> None:
    """Two failed calls leave the table in use; the third in a row makes it down."""
    circuit = TableCircuit(failures_to_open=3, cooldown_s=5.0, clock=FakeClock())
    circuit.failed()
    circuit.failed()
    assert not circuit.is_down
    assert circuit.allow()
    circuit.failed()
    assert circuit.is_down
    assert not circuit.allow()


def test_an_answer_between_failures_starts_the_count_again() -> None:
    """Any answer (a failed condition included) resets the count: a table that answers
    sometimes is not down."""
    circuit = TableCircuit(failures_to_open=3, cooldown_s=5.0, clock=FakeClock())
    for _ in range(10):
        circuit.failed()
        circuit.failed()
        circuit.answered()
    assert not circuit.is_down
    assert circuit.failures == 0


def test_an_open_circuit_lets_one_probe_through_per_cooldown() -> None:
    """While down, calls are refused until the cooldown has passed; then exactly one goes
    through, and the rest wait for the next cooldown."""
    clock = FakeClock()
    circuit = opened(clock)
    clock.now += 4.9
    assert not circuit.allow()
    assert circuit.wait_s() == pytest.approx(0.1)
    clock.now += 0.1
    assert circuit.allow()
    assert not circuit.allow()
    assert circuit.wait_s() == pytest.approx(5.0)


def test_an_answered_probe_closes_the_circuit() -> None:
    """The probe's answer closes the circuit: every call goes through again."""
    clock = FakeClock()
    circuit = opened(clock)
    clock.now += 5.0
    assert circuit.allow()
    circuit.answered()
    assert not circuit.is_down
    assert circuit.wait_s() == 0.0
    assert all(circuit.allow() for _ in range(5))


def test_a_failed_probe_keeps_the_circuit_open_for_another_cooldown() -> None:
    """A probe that fails (after its retries) holds off the next one a cooldown from its end."""
    clock = FakeClock()
    circuit = opened(clock)
    clock.now += 5.0
    assert circuit.allow()
    clock.now += 2.0  # the probe's retries took two seconds
    circuit.failed()
    assert circuit.is_down
    clock.now += 4.9
    assert not circuit.allow()
    clock.now += 0.1
    assert circuit.allow()


def test_a_probe_that_never_reports_holds_off_the_next_for_a_cooldown() -> None:
    """A cancelled probe reports nothing, and leaves nothing stuck: the next probe is due a
    cooldown after it was taken."""
    clock = FakeClock()
    circuit = opened(clock)
    clock.now += 5.0
    assert circuit.allow()  # taken, then cancelled
    clock.now += 4.9
    assert not circuit.allow()
    clock.now += 0.1
    assert circuit.allow()


# --- claims against an endpoint that answers oddly (an in-memory client) ---------------------


class OddEndpoint:
    """A DynamoDB client whose every claim fails its condition without the item, and whose
    reads return `read` (None: absent)."""

    def __init__(self, read: dict[str, Any] | None = None, failed_with: Any = None) -> None:
        self.read = read
        self.failed_with = failed_with
        self.calls: list[str] = []

    async def put_item(self, **_: Any) -> dict[str, Any]:
        self.calls.append("PutItem")
        error: dict[str, Any] = {"Error": {"Code": "ConditionalCheckFailedException"}}
        if self.failed_with is not None:
            error["Item"] = self.failed_with
        raise ClientError(error, "PutItem")

    async def get_item(self, **kwargs: Any) -> dict[str, Any]:
        assert kwargs["ConsistentRead"] is True
        self.calls.append("GetItem")
        return {} if self.read is None else {"Item": self.read}


async def test_a_claim_gives_up_after_three_rounds_of_a_vanishing_holder() -> None:
    """Each round's write fails yet the read finds no item: after three rounds the claim
    fails (the table did answer, so it is not down)."""
    endpoint = OddEndpoint(read=None)
    table = DedupeTable(endpoint, "relay-dedupe", "a")

    with pytest.raises(DedupeUnavailable) as raised:
        await table.claim(STEP, Status.SUCCESS, 30.0)

    assert raised.value.code == "contended"
    assert raised.value.table_down is False
    assert endpoint.calls == ["PutItem", "GetItem"] * 3
    assert not table.is_down


@pytest.mark.parametrize(
    "item",
    [
        {"state": {"S": "released"}, "expires_at": {"N": "1"}},
        {"state": {"S": "delivered"}, "status": {"S": "MAYBE"}},
        {"state": {"S": "claim"}},
        {"status": {"S": "SUCCESS"}},
    ],
)
async def test_an_item_this_module_cannot_have_written_is_a_bad_item(item: dict[str, Any]) -> None:
    """A failed condition can only be a live claim or a delivered record; any other item
    returned with it is refused as unreadable, not trusted."""
    table = DedupeTable(OddEndpoint(failed_with=item), "relay-dedupe", "a")

    with pytest.raises(DedupeUnavailable) as raised:
        await table.claim(STEP, Status.SUCCESS, 30.0)

    assert raised.value.code == "bad_item"


def test_a_failure_labels_metrics_with_bounded_codes() -> None:
    """A code an endpoint made up is labelled `other`; DynamoDB's codes, transport failures and
    relay's own words keep their names."""
    assert DedupeUnavailable("Made-Up", "x", from_service=True).label == "other"
    assert DedupeUnavailable("ThrottlingException", "x", from_service=True).label == (
        "ThrottlingException"
    )
    assert DedupeUnavailable("EndpointConnectionError", "x").label == "EndpointConnectionError"
    assert DedupeUnavailable("table_down", "x", table_down=True).label == "table_down"
