"""The shared delivered-memory (DESIGN §10) when the table misbehaves: throttled and failing
calls retried within their budgets, answers lost after a write landed, a table that stays down
(the circuit and its probe), and an endpoint that answers a failed condition without the item.

Proxies on loopback stand between the tables and moto's DynamoDB server (tests/dedupe_support).
"""

import asyncio
import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import pytest

from relay.aws import new_session
from relay.dedupe import (
    CLAIM_RETRY,
    FAILURES_TO_OPEN,
    RECORD_RETRY,
    Claim,
    Claimed,
    ClaimedElsewhere,
    DedupeTable,
    DedupeUnavailable,
    Delivered,
    TableCircuit,
    TableRetry,
    create_dedupe_table,
    dedupe_config,
    table_key,
)
from relay.local import MotoServer
from relay.message import Status, StepKey
from tests.dedupe_support import (
    FAILED,
    FAILED_AFTER,
    HUNG,
    HUNG_AFTER,
    PATHS,
    STRIPPED,
    THROTTLED,
    open_table_at,
    serve_faulty_dynamodb,
)
from tests.support import make_steps

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

LEASE_S = 30.0
TTL_S = 3600.0
QUICK = TableRetry(max_attempts=3, budget_s=2.0, base_s=0.001, cap_s=0.005)
"""Three attempts with hardly a wait: what a test of retrying needs, fast."""
UNHURRIED_CLAIM = dataclasses.replace(CLAIM_RETRY, budget_s=10.0)
UNHURRIED_RECORD = dataclasses.replace(RECORD_RETRY, budget_s=30.0)
"""The default attempts and waits, with the time to make them on a loaded test host (where one
attempt can take a good part of a second); the time budgets are proven apart."""


@pytest.fixture
async def moto(local_dynamodb: MotoServer) -> AsyncIterator[DynamoDBClient]:
    """A client straight to moto's DynamoDB, behind no proxy: the table as it really is."""
    config = dedupe_config()
    async with new_session().create_client(
        "dynamodb", endpoint_url=local_dynamodb.url, config=config
    ) as client:
        yield client


@pytest.fixture
async def table_name(moto: DynamoDBClient) -> str:
    """A fresh table made like the template's."""
    name = f"relay-faults-{uuid.uuid4().hex[:12]}"
    await create_dedupe_table(moto, name)
    return name


@pytest.fixture
def step_key() -> StepKey:
    """One step's (workflow, execution, token)."""
    return make_steps(1)[0].step_key


async def item(moto: DynamoDBClient, table_name: str, key: StepKey) -> dict[str, Any] | None:
    """A step's item as moto stores it (a consistent read)."""
    answer = await moto.get_item(
        TableName=table_name, Key={"pk": {"S": table_key(key)}}, ConsistentRead=True
    )
    return answer.get("Item")


class FakeClock:
    """A monotonic clock a test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


LOOKS: Final = 200
"""A claim looks again at most this often (a worker's release and take-again, bounded)."""


class ClaimingTask:
    """A task's claims as its worker makes them: at most `in_flight` at once, and after one
    failed call a claim looks again a little later; a table found down is noted (the worker
    would then call without a claim)."""

    def __init__(self, table: DedupeTable, in_flight: int = 8) -> None:
        self.table = table
        self._gate = asyncio.Semaphore(in_flight)
        self.won: list[StepKey] = []
        self.lost_to: list[Claim] = []
        self.looked_again = 0
        self.found_down: list[DedupeUnavailable] = []

    async def claim(self, key: StepKey) -> None:
        """Claims the step until the table says who has it (or is down)."""
        async with self._gate:
            for _ in range(LOOKS):
                try:
                    claim = await self.table.claim(key, Status.SUCCESS, LEASE_S)
                except DedupeUnavailable as exc:
                    if exc.table_down:
                        self.found_down.append(exc)
                        return
                    self.looked_again += 1
                    await asyncio.sleep(0.05)
                    continue
                if isinstance(claim, Claimed):
                    self.won.append(key)
                else:
                    self.lost_to.append(claim)
                return
            raise AssertionError(f"{key}: no answer from the table in {LOOKS} looks")


# --- attempts cut short, answers lost, a table that fails often -----------------------------


@pytest.mark.parametrize("fault", [HUNG, FAILED])
@PATHS
async def test_a_call_cut_before_the_table_is_retried_and_claims(
    lean: bool, local_dynamodb: MotoServer, table_name: str, step_key: StepKey, fault: str
) -> None:
    """A first attempt that times out or fails before reaching the table is tried again, and
    the claim is an ordinary one (nothing earlier to be unsure of)."""
    async with (
        serve_faulty_dynamodb(local_dynamodb.url, next_faults=[fault], hang_s=5.0) as endpoint,
        # A read timeout that cuts the hung attempt, yet outlasts a real answer on a loaded
        # host (at 0.5 s the retry's own answer could time out too, and its claim then come
        # back as ours with an unknown outcome); a budget that leaves room to retry after it.
        open_table_at(
            endpoint.url,
            table_name,
            "a",
            read_timeout_s=2.0,
            claim_retry=dataclasses.replace(QUICK, budget_s=10.0),
            lean=lean,
        ) as table,
    ):
        claim = await table.claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(claim, Claimed)
    assert claim.answer_lost is False
    assert endpoint.seen[fault] == 1
    assert endpoint.operations["PutItem"] == 2


@pytest.mark.parametrize("fault", [HUNG_AFTER, FAILED_AFTER])
@PATHS
async def test_a_claim_whose_answer_was_lost_is_known_as_ours_on_the_retry(
    lean: bool,
    local_dynamodb: MotoServer,
    moto: DynamoDBClient,
    table_name: str,
    step_key: StepKey,
    fault: str,
) -> None:
    """The claim's write landed but its answer was lost: the retry finds our own claim and
    holds it (outcome of what it replaced unseen, so `answer_lost`); another task is held off."""
    async with serve_faulty_dynamodb(
        local_dynamodb.url, next_faults=[fault], hang_s=5.0
    ) as endpoint:
        async with open_table_at(
            endpoint.url, table_name, "a", read_timeout_s=0.5, claim_retry=QUICK, lean=lean
        ) as table:
            claim = await table.claim(step_key, Status.SUCCESS, LEASE_S)
        async with open_table_at(endpoint.url, table_name, "b", lean=lean) as other:
            held = await other.claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(claim, Claimed)
    assert claim.answer_lost is True
    stored = await item(moto, table_name, step_key)
    assert stored is not None
    assert stored["owner"] == {"S": claim.claim_id}
    assert held == ClaimedElsewhere(until=claim.until)


@PATHS
async def test_a_delivered_record_whose_answer_was_lost_is_written_again(
    lean: bool, local_dynamodb: MotoServer, moto: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A delivered record that landed with a 500 for an answer is written again, no error."""
    async with (
        serve_faulty_dynamodb(local_dynamodb.url, next_faults=[FAILED_AFTER]) as endpoint,
        open_table_at(endpoint.url, table_name, "a", record_retry=QUICK, lean=lean) as table,
    ):
        await table.record_delivered(step_key, Status.FAILURE, TTL_S)

    assert endpoint.operations["PutItem"] == 2
    stored = await item(moto, table_name, step_key)
    assert stored is not None
    assert stored["state"] == {"S": "delivered"}
    assert stored["status"] == {"S": "FAILURE"}


@PATHS
async def test_tasks_racing_on_a_throttled_failing_table_claim_each_step_once(
    lean: bool, local_dynamodb: MotoServer, moto: DynamoDBClient, table_name: str
) -> None:
    """Half the calls throttled and a tenth failing with 500s (the default attempts and waits):
    three tasks claiming 30 steps twice each, 8 at a time each, give each step to exactly one,
    no claim finds the table down (so none would call unclaimed), and every record lands."""
    keys = [step.step_key for step in make_steps(30, seed=4040)]
    async with (
        serve_faulty_dynamodb(
            local_dynamodb.url, seed=11, throttle_share=0.5, error_share=0.1
        ) as endpoint,
        contextlib.AsyncExitStack() as stack,
    ):
        tasks = [
            ClaimingTask(
                await stack.enter_async_context(
                    open_table_at(
                        endpoint.url,
                        table_name,
                        f"t{i}",
                        claim_retry=UNHURRIED_CLAIM,
                        record_retry=UNHURRIED_RECORD,
                        lean=lean,
                    )
                )
            )
            for i in range(3)
        ]
        await asyncio.gather(*(task.claim(key) for task in tasks for key in keys for _ in range(2)))
        await asyncio.gather(
            *(
                task.table.record_delivered(key, Status.SUCCESS, TTL_S)
                for task in tasks
                for key in task.won
            )
        )

    assert [task.found_down for task in tasks] == [[], [], []]
    assert sorted(key for task in tasks for key in task.won) == sorted(keys)
    for key in keys:
        stored = await item(moto, table_name, key)
        assert stored is not None
        assert stored["state"] == {"S": "delivered"}
    # The faults did happen, and a claim that failed after its retries was rare.
    assert endpoint.seen[THROTTLED] > 80
    assert endpoint.seen[FAILED] > 15
    assert sum(task.looked_again for task in tasks) < 30


# --- the circuit ----------------------------------------------------------------------------


@PATHS
async def test_a_table_that_stays_down_opens_the_circuit_probes_and_closes(
    lean: bool, local_dynamodb: MotoServer, table_name: str
) -> None:
    """Down for good: each call fails after its retries until the third in a row opens the
    circuit; then calls fail at once without a request but for one probe per cooldown, and
    the first probe the table answers closes it."""
    clock = FakeClock()
    circuit = TableCircuit(cooldown_s=5.0, clock=clock)
    keys = [step.step_key for step in make_steps(8, seed=77)]
    async with (
        serve_faulty_dynamodb(local_dynamodb.url, down=True) as endpoint,
        open_table_at(
            endpoint.url,
            table_name,
            "a",
            claim_retry=QUICK,
            record_retry=QUICK,
            circuit=circuit,
            lean=lean,
        ) as table,
    ):
        failures: list[DedupeUnavailable] = []
        for key in keys[:FAILURES_TO_OPEN]:
            with pytest.raises(DedupeUnavailable) as raised:
                await table.claim(key, Status.SUCCESS, LEASE_S)
            failures.append(raised.value)
        assert [f.table_down for f in failures] == [False] * (FAILURES_TO_OPEN - 1) + [True]
        assert {f.code for f in failures} == {"InternalServerError"}
        assert table.is_down
        assert endpoint.seen[FAILED] == FAILURES_TO_OPEN * QUICK.max_attempts

        async def fails_fast(call: Any) -> None:
            sent = endpoint.operations.total()
            with pytest.raises(DedupeUnavailable) as raised:
                await call
            assert raised.value.code == "table_down"
            assert raised.value.table_down is True
            assert "InternalServerError" in str(raised.value)
            assert endpoint.operations.total() == sent  # no request

        await fails_fast(table.claim(keys[3], Status.SUCCESS, LEASE_S))
        await fails_fast(table.record_delivered(keys[3], Status.SUCCESS, TTL_S))

        clock.now += 5.0  # the probe is due: it goes through, fails, and reopens
        with pytest.raises(DedupeUnavailable) as probe:
            await table.claim(keys[4], Status.SUCCESS, LEASE_S)
        assert probe.value.code == "InternalServerError"
        assert probe.value.table_down is True
        await fails_fast(table.claim(keys[4], Status.SUCCESS, LEASE_S))
        clock.now += 4.0
        await fails_fast(table.claim(keys[4], Status.SUCCESS, LEASE_S))

        endpoint.down = False
        clock.now += 1.0  # the next probe is due, and the table answers
        assert isinstance(await table.claim(keys[5], Status.SUCCESS, LEASE_S), Claimed)
        assert not table.is_down
        assert isinstance(await table.claim(keys[6], Status.SUCCESS, LEASE_S), Claimed)


@PATHS
async def test_a_success_between_failures_keeps_the_circuit_closed(
    lean: bool, local_dynamodb: MotoServer, table_name: str
) -> None:
    """Failed calls that are not in a row never open the circuit: a table that answers
    sometimes is not down."""
    keys = [step.step_key for step in make_steps(9, seed=78)]
    async with (
        serve_faulty_dynamodb(local_dynamodb.url) as endpoint,
        open_table_at(endpoint.url, table_name, "a", claim_retry=QUICK, lean=lean) as table,
    ):
        for index, key in enumerate(keys):
            if index % 3 == 2:
                assert isinstance(await table.claim(key, Status.SUCCESS, LEASE_S), Claimed)
                continue
            endpoint.next_faults = [FAILED] * QUICK.max_attempts
            with pytest.raises(DedupeUnavailable) as raised:
                await table.claim(key, Status.SUCCESS, LEASE_S)
            assert raised.value.table_down is False
        assert not table.is_down


# --- an endpoint that answers a failed condition without the item ---------------------------


@PATHS
async def test_a_failed_condition_without_the_item_is_read_back(
    lean: bool, local_dynamodb: MotoServer, table_name: str, step_key: StepKey
) -> None:
    """The endpoint omits the winner's item: one consistent GetItem finds the live claim (held
    elsewhere), and later the delivered record (delivered), instead of failing open."""
    async with (
        serve_faulty_dynamodb(local_dynamodb.url, strip_item=True) as endpoint,
        open_table_at(endpoint.url, table_name, "a", lean=lean) as first,
        open_table_at(endpoint.url, table_name, "b", lean=lean) as second,
    ):
        claim = await first.claim(step_key, Status.SUCCESS, LEASE_S)
        assert isinstance(claim, Claimed)
        before = local_dynamodb.calls["GetItem"]
        assert await second.claim(step_key, Status.SUCCESS, LEASE_S) == ClaimedElsewhere(
            until=claim.until
        )
        assert local_dynamodb.calls["GetItem"] == before + 1

        await first.record_delivered(step_key, Status.SUCCESS, TTL_S)
        assert await second.claim(step_key, Status.FAILURE, LEASE_S) == Delivered(Status.SUCCESS)

    assert endpoint.seen[STRIPPED] == 2


@PATHS
async def test_a_claim_ended_before_the_read_back_is_claimed_again(
    lean: bool, local_dynamodb: MotoServer, table_name: str, step_key: StepKey
) -> None:
    """The holder gives up between our failed write and our read: the step is claimable, so
    the claim is tried again and wins (a clean give-up: no outcome in doubt)."""
    async with (
        serve_faulty_dynamodb(local_dynamodb.url, strip_item=True) as endpoint,
        open_table_at(endpoint.url, table_name, "a", lean=lean) as first,
        open_table_at(endpoint.url, table_name, "b", lean=lean) as second,
    ):
        held = await first.claim(step_key, Status.SUCCESS, LEASE_S)
        assert isinstance(held, Claimed)

        async def give_up_once() -> None:
            endpoint.on_stripped = None
            await first.give_up(held)

        endpoint.on_stripped = give_up_once
        puts = endpoint.operations["PutItem"]
        claim = await second.claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(claim, Claimed)
    assert claim.answer_lost is False
    assert endpoint.operations["PutItem"] == puts + 2
    assert endpoint.operations["GetItem"] == 1


@PATHS
async def test_tasks_racing_through_an_endpoint_without_items_never_share_a_step(
    lean: bool, local_dynamodb: MotoServer, table_name: str
) -> None:
    """Two tasks claim 20 steps three times each at once through an endpoint that omits the
    item on every failed condition: each step is claimed by exactly one claim."""
    keys = [step.step_key for step in make_steps(20, seed=3030)]
    async with (
        serve_faulty_dynamodb(local_dynamodb.url, strip_item=True) as endpoint,
        open_table_at(endpoint.url, table_name, "a", lean=lean) as first,
        open_table_at(endpoint.url, table_name, "b", lean=lean) as second,
    ):
        tasks = [ClaimingTask(first), ClaimingTask(second)]
        await asyncio.gather(*(task.claim(key) for key in keys for _ in range(3) for task in tasks))

    assert [task.found_down for task in tasks] == [[], []]
    assert sorted(key for task in tasks for key in task.won) == sorted(keys)
    assert all(isinstance(claim, ClaimedElsewhere) for task in tasks for claim in task.lost_to)
    assert endpoint.seen[STRIPPED] >= 5 * len(keys)  # every claim but the winners
