"""The shared delivered-memory (DESIGN §10) against moto's DynamoDB server over real HTTP.

Claims, delivered records and early releases, the races between tasks, what a message costs in
table calls, and every way the table can fail.
"""

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest

from relay.aws import new_session
from relay.dedupe import (
    CHECK_KEY,
    Claimed,
    DedupeTable,
    DedupeUnavailable,
    Delivered,
    HeldElsewhere,
    create_dedupe_table,
    dedupe_config,
    open_dedupe_table,
    table_key,
)
from relay.errors import ConfigError
from relay.limits import StepKey
from relay.local import MotoServer
from relay.message import Status
from tests.dedupe_support import serve_refusing_dynamodb
from tests.support import eventually, make_steps

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

LEASE_S = 30.0
TTL_S = 3600.0


@pytest.fixture
async def dynamodb(
    local_dynamodb: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[DynamoDBClient]:
    """A DynamoDB client found the way relay finds it: AWS_ENDPOINT_URL_DYNAMODB."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
    async with new_session().create_client("dynamodb", config=dedupe_config()) as client:
        yield client


@pytest.fixture
async def table_name(dynamodb: DynamoDBClient) -> str:
    """A fresh table made like the template's."""
    name = f"relay-dedupe-{uuid.uuid4().hex[:12]}"
    await create_dedupe_table(dynamodb, name)
    return name


@pytest.fixture
def step_key() -> StepKey:
    """One step's (workflow, execution, token)."""
    return make_steps(1)[0].step_key


def task(dynamodb: DynamoDBClient, table_name: str, owner: str) -> DedupeTable:
    """The table as one task sees it."""
    return DedupeTable(dynamodb, table_name, owner)


async def items(dynamodb: DynamoDBClient, table_name: str) -> list[dict[str, Any]]:
    """Every item in the table, as DynamoDB stores it."""
    response = await dynamodb.scan(TableName=table_name, ConsistentRead=True)
    return list(response["Items"])


async def test_claim_on_an_empty_table_is_claimed(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """The first claim of a step gets the lease, stored as a claim ending at its `until`."""
    before = time.time()
    claim = await task(dynamodb, table_name, "a").claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(claim, Claimed)
    assert before + LEASE_S <= claim.until <= time.time() + LEASE_S + 1
    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "claim"}
    assert item["status"] == {"S": "SUCCESS"}
    assert item["expires_at"] == {"N": str(int(claim.until))}
    assert item["owner"]["S"].startswith("a#")


async def test_a_live_claim_is_held_elsewhere_for_another_task(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A second task's claim of a claimed step learns when the first lease ends, and gets none."""
    first = await task(dynamodb, table_name, "a").claim(step_key, Status.SUCCESS, LEASE_S)
    second = await task(dynamodb, table_name, "b").claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(first, Claimed)
    assert second == HeldElsewhere(until=first.until)
    assert 0 < second.wait_s() <= LEASE_S + 1


async def test_a_second_claim_by_the_same_task_is_held_too(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim is one send's, not the task's: the same task claiming again is held off."""
    table = task(dynamodb, table_name, "a")
    first = await table.claim(step_key, Status.SUCCESS, LEASE_S)
    second = await table.claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(first, Claimed)
    assert isinstance(second, HeldElsewhere)


@pytest.mark.parametrize("copy_status", [Status.SUCCESS, Status.FAILURE])
async def test_a_delivered_step_is_delivered_with_its_status(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey, copy_status: Status
) -> None:
    """A copy of a delivered step learns the delivered status, whichever status it carries."""
    first = task(dynamodb, table_name, "a")
    assert isinstance(await first.claim(step_key, Status.SUCCESS, LEASE_S), Claimed)
    await first.record_delivered(step_key, Status.SUCCESS, TTL_S)

    copy = await task(dynamodb, table_name, "b").claim(step_key, copy_status, LEASE_S)

    # The caller's rule: the same status is a duplicate, the other a conflict.
    assert copy == Delivered(Status.SUCCESS)
    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "delivered"}
    assert int(item["expires_at"]["N"]) >= time.time() + TTL_S - 5


async def test_an_expired_claim_is_taken_over(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim left by a task that died is taken over once its lease has run out."""
    dead = await task(dynamodb, table_name, "dead").claim(step_key, Status.SUCCESS, 0.2)
    assert isinstance(dead, Claimed)
    other = task(dynamodb, table_name, "b")
    assert isinstance(await other.claim(step_key, Status.SUCCESS, LEASE_S), HeldElsewhere)

    taken: list[Claimed] = []

    async def take_over() -> bool:
        claim = await other.claim(step_key, Status.SUCCESS, LEASE_S)
        if isinstance(claim, Claimed):
            taken.append(claim)
        return bool(taken)

    # Leases are whole seconds rounded up: 0.2 s ends within 1.2 s.
    await eventually(take_over, timeout_s=5, interval_s=0.1, what="the expired claim taken over")
    assert time.time() >= dead.until
    assert await task(dynamodb, table_name, "c").claim(
        step_key, Status.SUCCESS, LEASE_S
    ) == HeldElsewhere(until=taken[0].until)


async def test_a_delivered_record_ends_with_its_window(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """Past `--dedupe-ttl` a delivered step is forgotten, even before DynamoDB's TTL deletes it."""
    first = task(dynamodb, table_name, "a")
    await first.record_delivered(step_key, Status.SUCCESS, 0.2)
    late = task(dynamodb, table_name, "b")

    async def claimable() -> bool:
        return isinstance(await late.claim(step_key, Status.SUCCESS, LEASE_S), Claimed)

    await eventually(claimable, timeout_s=5, interval_s=0.1, what="the window to end")


async def test_give_up_lets_another_task_claim_at_once(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim given up after a failed call leaves the step free for the next copy at once."""
    first = task(dynamodb, table_name, "a")
    claim = await first.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(claim, Claimed)

    await first.give_up(claim)

    assert isinstance(
        await task(dynamodb, table_name, "b").claim(step_key, Status.SUCCESS, LEASE_S), Claimed
    )


async def test_give_up_after_a_takeover_leaves_the_new_claim(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A slow task giving up a claim that was taken over does not free the new holder's claim."""
    slow = task(dynamodb, table_name, "slow")
    old = await slow.claim(step_key, Status.SUCCESS, 0.2)
    assert isinstance(old, Claimed)
    fast = task(dynamodb, table_name, "fast")
    taken: list[Claimed] = []

    async def take_over() -> bool:
        claim = await fast.claim(step_key, Status.SUCCESS, LEASE_S)
        if isinstance(claim, Claimed):
            taken.append(claim)
        return bool(taken)

    await eventually(take_over, timeout_s=5, interval_s=0.1, what="the takeover")

    await slow.give_up(old)

    third = await task(dynamodb, table_name, "c").claim(step_key, Status.SUCCESS, LEASE_S)
    assert third == HeldElsewhere(until=taken[0].until)


async def test_give_up_never_undoes_a_delivered_record(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A task whose call failed cannot erase the 200 another task recorded meanwhile."""
    loser = task(dynamodb, table_name, "loser")
    claim = await loser.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(claim, Claimed)
    await task(dynamodb, table_name, "winner").record_delivered(step_key, Status.SUCCESS, TTL_S)

    await loser.give_up(claim)

    copy = await task(dynamodb, table_name, "c").claim(step_key, Status.FAILURE, LEASE_S)
    assert copy == Delivered(Status.SUCCESS)


async def test_many_tasks_racing_for_one_step_make_exactly_one_claim(
    local_dynamodb: MotoServer,
    dynamodb: DynamoDBClient,
    table_name: str,
    step_key: StepKey,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """20 claims at once by 5 tasks, each on its own client: one is Claimed, 19 are held off."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
    async with contextlib.AsyncExitStack() as stack:
        tables = [
            await stack.enter_async_context(open_dedupe_table(table_name, owner=f"task{i}"))
            for i in range(5)
        ]
        claims = await asyncio.gather(
            *(table.claim(step_key, Status.SUCCESS, LEASE_S) for table in tables for _ in range(4))
        )

    winners = [claim for claim in claims if isinstance(claim, Claimed)]
    assert len(winners) == 1
    assert claims.count(HeldElsewhere(until=winners[0].until)) == 19


async def test_the_table_stores_no_token_and_no_ids(
    dynamodb: DynamoDBClient, table_name: str
) -> None:
    """Items are keyed by a digest: neither the token nor the workflow or execution id is stored."""
    step = make_steps(1)[0]
    table = task(dynamodb, table_name, "a")
    await table.claim(step.step_key, step.status, LEASE_S)
    other = make_steps(1)[0]
    await table.record_delivered(other.step_key, other.status, TTL_S)

    stored = repr(await items(dynamodb, table_name))
    for value in (*step.step_key, *other.step_key):
        assert value not in stored
    assert table_key(step.step_key) in stored


async def test_a_delivered_message_costs_two_writes_and_a_duplicate_one(
    local_dynamodb: MotoServer, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """Calls per message: delivered 2 PutItem; a duplicate 1 PutItem; a failed call 1 more."""

    def since(before: Counter[str]) -> Counter[str]:
        return local_dynamodb.calls - before

    a, b = task(dynamodb, table_name, "a"), task(dynamodb, table_name, "b")
    before = Counter(local_dynamodb.calls)
    await a.claim(step_key, Status.SUCCESS, LEASE_S)
    await a.record_delivered(step_key, Status.SUCCESS, TTL_S)
    assert since(before) == Counter({"PutItem": 2})

    before = Counter(local_dynamodb.calls)
    assert await b.claim(step_key, Status.SUCCESS, LEASE_S) == Delivered(Status.SUCCESS)
    # The winner's item comes back on the failed condition: no GetItem.
    assert since(before) == Counter({"PutItem": 1})

    failed_key = make_steps(1)[0].step_key
    before = Counter(local_dynamodb.calls)
    claim = await a.claim(failed_key, Status.SUCCESS, LEASE_S)
    assert isinstance(claim, Claimed)
    await a.give_up(claim)
    assert since(before) == Counter({"PutItem": 1, "UpdateItem": 1})


async def test_the_created_table_expires_items_by_expires_at(
    dynamodb: DynamoDBClient, table_name: str
) -> None:
    """The helper makes the template's table: key pk (String), on-demand, TTL on expires_at."""
    described = (await dynamodb.describe_table(TableName=table_name))["Table"]
    ttl = (await dynamodb.describe_time_to_live(TableName=table_name))["TimeToLiveDescription"]

    assert described["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


async def test_check_passes_on_the_table_and_writes_nothing(
    dynamodb: DynamoDBClient, table_name: str
) -> None:
    """The start-up check reads and tries both writes, yet leaves the table empty."""
    await task(dynamodb, table_name, "a").check()
    assert await items(dynamodb, table_name) == []

    # Even a sentinel item that somebody wrote is left as it was (its state not removed).
    sentinel = {"pk": {"S": CHECK_KEY}, "state": {"S": "planted"}}
    await dynamodb.put_item(TableName=table_name, Item=sentinel)
    await task(dynamodb, table_name, "a").check()
    assert await items(dynamodb, table_name) == [sentinel]


async def test_check_refuses_a_missing_table(dynamodb: DynamoDBClient) -> None:
    """A table that does not exist is a configuration error naming it."""
    with pytest.raises(ConfigError, match="relay-missing-table: no such table in us-east-1"):
        await task(dynamodb, "relay-missing-table", "a").check()


async def test_check_refuses_a_table_with_another_key(dynamodb: DynamoDBClient) -> None:
    """A table keyed on anything but `pk` is a configuration error, not a silent fallback."""
    name = f"relay-wrong-{uuid.uuid4().hex[:8]}"
    await dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigError, match="ValidationException"):
        await task(dynamodb, name, "a").check()


async def test_a_missing_table_mid_run_is_unavailable(
    dynamodb: DynamoDBClient, step_key: StepKey
) -> None:
    """A table deleted under a running task fails claims with one exception type and its code."""
    table = task(dynamodb, "relay-gone-table", "a")
    with pytest.raises(DedupeUnavailable) as raised:
        await table.claim(step_key, Status.SUCCESS, LEASE_S)
    assert raised.value.code == "ResourceNotFoundException"


async def test_an_unreachable_table_is_unavailable_then_skipped(
    step_key: StepKey, closed_port: int
) -> None:
    """Nothing listening: the claim fails with DedupeUnavailable, later calls skip the table."""
    url = f"http://127.0.0.1:{closed_port}"
    config = dedupe_config()
    async with new_session().create_client("dynamodb", endpoint_url=url, config=config) as client:
        table = DedupeTable(client, "relay-dedupe", "a")
        with pytest.raises(DedupeUnavailable) as raised:
            await table.claim(step_key, Status.SUCCESS, LEASE_S)
        assert raised.value.code == "EndpointConnectionError"

        with pytest.raises(DedupeUnavailable) as skipped:
            await table.record_delivered(step_key, Status.SUCCESS, TTL_S)
        assert skipped.value.code == "cooling_down"
        assert "EndpointConnectionError" in str(skipped.value)

        with pytest.raises(DedupeUnavailable):
            await table.check()


async def test_the_table_is_used_again_after_the_cooldown(
    dynamodb: DynamoDBClient, step_key: StepKey
) -> None:
    """Once the cooldown has passed, a table that is back answers claims again."""
    name = f"relay-late-{uuid.uuid4().hex[:8]}"
    table = DedupeTable(dynamodb, name, "a", cooldown_s=0.3)
    with pytest.raises(DedupeUnavailable):
        await table.claim(step_key, Status.SUCCESS, LEASE_S)
    await create_dedupe_table(dynamodb, name)

    codes: list[str] = []

    async def claimed() -> bool:
        try:
            return isinstance(await table.claim(step_key, Status.SUCCESS, LEASE_S), Claimed)
        except DedupeUnavailable as exc:
            codes.append(exc.code)
            return False

    await eventually(claimed, timeout_s=5, interval_s=0.05, what="the table used again")
    # Between the failure and the recovery, calls were skipped, not sent to the table.
    assert set(codes) <= {"cooling_down"}


async def test_a_throttled_table_is_retried_by_botocore_then_unavailable(
    step_key: StepKey,
) -> None:
    """Throttling is retried with backoff (3 attempts, standard mode), then DedupeUnavailable."""
    async with serve_refusing_dynamodb("ProvisionedThroughputExceededException") as endpoint:
        config = dedupe_config()
        async with new_session().create_client(
            "dynamodb", endpoint_url=endpoint.url, config=config
        ) as client:
            with pytest.raises(DedupeUnavailable) as raised:
                await DedupeTable(client, "relay-dedupe", "a").claim(
                    step_key, Status.SUCCESS, LEASE_S
                )

    assert raised.value.code == "ProvisionedThroughputExceededException"
    assert endpoint.requests == ["PutItem"] * 3


async def test_a_denied_table_fails_the_check_and_the_calls(step_key: StepKey) -> None:
    """A role without access: check() is a ConfigError; a claim is DedupeUnavailable at once."""
    async with serve_refusing_dynamodb("AccessDeniedException") as endpoint:
        config = dedupe_config()
        async with new_session().create_client(
            "dynamodb", endpoint_url=endpoint.url, config=config
        ) as client:
            with pytest.raises(ConfigError, match="AccessDeniedException"):
                await DedupeTable(client, "relay-dedupe", "a").check()
            with pytest.raises(DedupeUnavailable) as raised:
                await DedupeTable(client, "relay-dedupe", "a").claim(
                    step_key, Status.SUCCESS, LEASE_S
                )

    assert raised.value.code == "AccessDeniedException"
    # Not retried: a denial does not go away by asking again.
    assert endpoint.requests == ["GetItem", "PutItem"]
