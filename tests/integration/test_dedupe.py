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
from botocore.exceptions import ClientError

from relay.aws import new_session
from relay.dedupe import (
    CHECK_KEY,
    CLAIM_RETRY,
    FAILURES_TO_OPEN,
    Claimed,
    ClaimedElsewhere,
    DedupeTable,
    DedupeUnavailable,
    Delivered,
    TableRetry,
    create_dedupe_table,
    dedupe_config,
    open_dedupe_table,
    table_key,
)
from relay.errors import ConfigError
from relay.local import MotoServer
from relay.message import Status, StepKey
from tests.dedupe_support import PATHS, open_table_at, open_table_client, serve_refusing_dynamodb
from tests.support import eventually, make_steps

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient

    from relay.dedupe.client import LeanDynamoDB

    TableClient = DynamoDBClient | LeanDynamoDB
else:
    DynamoDBClient = Any
    TableClient = Any

LEASE_S = 30.0
TTL_S = 3600.0
QUICK = TableRetry(max_attempts=3, budget_s=2.0, base_s=0.001, cap_s=0.005)
"""Three attempts with hardly a wait: what a test of retrying needs, fast."""


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


@pytest.fixture(params=[True, False], ids=["lean", "aiobotocore"])
async def client(
    request: pytest.FixtureRequest, local_dynamodb: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[TableClient]:
    """The table's client, each test run on both: the lean AWS JSON client and aiobotocore's."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", local_dynamodb.url)
    async with open_table_client(lean=request.param) as opened:
        yield opened


@pytest.fixture
def step_key() -> StepKey:
    """One step's (workflow, execution, token)."""
    return make_steps(1)[0].step_key


def task(client: TableClient, table_name: str, owner: str) -> DedupeTable:
    """The table as one task sees it."""
    return DedupeTable(client, table_name, owner)


async def items(dynamodb: DynamoDBClient, table_name: str) -> list[dict[str, Any]]:
    """Every item in the table, as DynamoDB stores it."""
    response = await dynamodb.scan(TableName=table_name, ConsistentRead=True)
    return list(response["Items"])


async def test_claim_on_an_empty_table_is_claimed(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """The first claim of a step gets the lease, stored as a claim ending at its `until`."""
    before = time.time()
    claim = await task(client, table_name, "a").claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(claim, Claimed)
    assert claim.answer_lost is False
    assert before + LEASE_S <= claim.until <= time.time() + LEASE_S + 1
    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "claim"}
    assert item["status"] == {"S": "SUCCESS"}
    assert item["expires_at"] == {"N": str(int(claim.until))}
    assert item["owner"]["S"].startswith("a#")


async def test_a_live_claim_is_held_elsewhere_for_another_task(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A second task's claim of a claimed step learns when the first lease ends, and gets none."""
    first = await task(client, table_name, "a").claim(step_key, Status.SUCCESS, LEASE_S)
    second = await task(client, table_name, "b").claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(first, Claimed)
    assert second == ClaimedElsewhere(until=first.until)
    assert 0 < second.wait_s() <= LEASE_S + 1


async def test_a_second_claim_by_the_same_task_is_held_too(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim is one send's, not the task's: the same task claiming again is held off."""
    table = task(client, table_name, "a")
    first = await table.claim(step_key, Status.SUCCESS, LEASE_S)
    second = await table.claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(first, Claimed)
    assert isinstance(second, ClaimedElsewhere)


@pytest.mark.parametrize("copy_status", [Status.SUCCESS, Status.FAILURE])
async def test_a_delivered_step_is_delivered_with_its_status(
    client: TableClient,
    dynamodb: DynamoDBClient,
    table_name: str,
    step_key: StepKey,
    copy_status: Status,
) -> None:
    """A copy of a delivered step learns the delivered status, whichever status it carries."""
    first = task(client, table_name, "a")
    assert isinstance(await first.claim(step_key, Status.SUCCESS, LEASE_S), Claimed)
    await first.record_delivered(step_key, Status.SUCCESS, TTL_S)

    copy = await task(client, table_name, "b").claim(step_key, copy_status, LEASE_S)

    # The caller's rule: the same status is a duplicate, the other a conflict.
    assert copy == Delivered(Status.SUCCESS)
    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "delivered"}
    assert int(item["expires_at"]["N"]) >= time.time() + TTL_S - 5


async def test_an_expired_claim_is_taken_over(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim left by a task that died is taken over once its lease has run out, and the
    taker is told that the dead task's call may have been made (its outcome unknown)."""
    dead = await task(client, table_name, "dead").claim(step_key, Status.SUCCESS, 0.2)
    assert isinstance(dead, Claimed)
    other = task(client, table_name, "b")
    assert isinstance(await other.claim(step_key, Status.SUCCESS, LEASE_S), ClaimedElsewhere)

    taken: list[Claimed] = []

    async def take_over() -> bool:
        claim = await other.claim(step_key, Status.SUCCESS, LEASE_S)
        if isinstance(claim, Claimed):
            taken.append(claim)
        return bool(taken)

    # Leases are whole seconds rounded up: 0.2 s ends within 1.2 s.
    await eventually(take_over, timeout_s=5, interval_s=0.1, what="the expired claim taken over")
    assert time.time() >= dead.until
    assert taken[0].answer_lost is True
    assert await task(client, table_name, "c").claim(
        step_key, Status.SUCCESS, LEASE_S
    ) == ClaimedElsewhere(until=taken[0].until)


async def test_a_delivered_record_ends_with_its_window(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """Past `--dedupe-ttl` a delivered step is forgotten, even before DynamoDB's TTL deletes it."""
    first = task(client, table_name, "a")
    await first.record_delivered(step_key, Status.SUCCESS, 0.2)
    late = task(client, table_name, "b")

    claims: list[Claimed] = []

    async def claimable() -> bool:
        claim = await late.claim(step_key, Status.SUCCESS, LEASE_S)
        if isinstance(claim, Claimed):
            claims.append(claim)
        return bool(claims)

    await eventually(claimable, timeout_s=5, interval_s=0.1, what="the window to end")
    # A delivered step's outcome is known, even once its window has closed.
    assert claims[0].answer_lost is False


async def test_give_up_lets_another_task_claim_at_once(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim given up after a failed call is released: the step is free for the next copy
    at once, which is told that no earlier outcome is in doubt."""
    first = task(client, table_name, "a")
    claim = await first.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(claim, Claimed)

    await first.give_up(claim)

    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "released"}
    assert int(item["expires_at"]["N"]) < time.time()
    again = await task(client, table_name, "b").claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(again, Claimed)
    assert again.answer_lost is False


async def test_a_claim_after_a_lost_answer_is_told_the_outcome_is_unknown(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim given up as lost is kept for the window, yet the next copy claims the step at
    once and learns that an earlier call's outcome is unknown."""
    first = task(client, table_name, "a")
    claim = await first.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(claim, Claimed)

    await first.give_up(claim, lost=True, ttl_s=TTL_S)

    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "lost"}
    assert int(item["expires_at"]["N"]) >= time.time() + TTL_S - 5
    again = await task(client, table_name, "b").claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(again, Claimed)
    assert again.answer_lost is True


async def test_a_lost_outcome_is_passed_on_until_a_delivery_settles_it(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """A claim over a lost outcome that is given up plainly leaves the outcome lost for the
    next claim; only a delivered record ends it, and then copies find the step delivered."""
    lost = task(client, table_name, "a")
    first = await lost.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(first, Claimed)
    await lost.give_up(first, lost=True, ttl_s=TTL_S)

    second_task = task(client, table_name, "b")
    second = await second_task.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(second, Claimed)
    await second_task.give_up(second)
    [item] = await items(dynamodb, table_name)
    assert item["state"] == {"S": "lost"}

    third_task = task(client, table_name, "c")
    third = await third_task.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(third, Claimed)
    assert third.answer_lost is True
    await third_task.record_delivered(step_key, Status.SUCCESS, TTL_S)

    copy = await task(client, table_name, "d").claim(step_key, Status.SUCCESS, LEASE_S)
    assert copy == Delivered(Status.SUCCESS)


async def test_a_claim_given_up_by_an_older_version_counts_as_lost(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """Before `released`, a give-up left a claim ending a minute ago, which cannot be told from
    a lapsed lease: a claim over it is told the outcome is unknown."""
    await dynamodb.put_item(
        TableName=table_name,
        Item={
            "pk": {"S": table_key(step_key)},
            "state": {"S": "claim"},
            "status": {"S": "SUCCESS"},
            "owner": {"S": "old-task#1"},
            "expires_at": {"N": str(int(time.time()) - 60)},
        },
    )

    claim = await task(client, table_name, "new").claim(step_key, Status.SUCCESS, LEASE_S)

    assert isinstance(claim, Claimed)
    assert claim.answer_lost is True


@pytest.mark.parametrize("lost", [False, True])
async def test_give_up_after_a_takeover_leaves_the_new_claim(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey, lost: bool
) -> None:
    """A slow task giving up a claim that was taken over (released or lost) does not touch
    the new holder's claim."""
    slow = task(client, table_name, "slow")
    old = await slow.claim(step_key, Status.SUCCESS, 0.2)
    assert isinstance(old, Claimed)
    fast = task(client, table_name, "fast")
    taken: list[Claimed] = []

    async def take_over() -> bool:
        claim = await fast.claim(step_key, Status.SUCCESS, LEASE_S)
        if isinstance(claim, Claimed):
            taken.append(claim)
        return bool(taken)

    await eventually(take_over, timeout_s=5, interval_s=0.1, what="the takeover")

    await slow.give_up(old, lost=lost, ttl_s=TTL_S)

    third = await task(client, table_name, "c").claim(step_key, Status.SUCCESS, LEASE_S)
    assert third == ClaimedElsewhere(until=taken[0].until)


@pytest.mark.parametrize("lost", [False, True])
async def test_give_up_never_undoes_a_delivered_record(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str, step_key: StepKey, lost: bool
) -> None:
    """A task whose call failed (or whose answer was lost) cannot erase the 200 another task
    recorded meanwhile."""
    loser = task(client, table_name, "loser")
    claim = await loser.claim(step_key, Status.SUCCESS, LEASE_S)
    assert isinstance(claim, Claimed)
    await task(client, table_name, "winner").record_delivered(step_key, Status.SUCCESS, TTL_S)

    await loser.give_up(claim, lost=lost, ttl_s=TTL_S)

    copy = await task(client, table_name, "c").claim(step_key, Status.FAILURE, LEASE_S)
    assert copy == Delivered(Status.SUCCESS)


@PATHS
async def test_many_tasks_racing_for_one_step_make_exactly_one_claim(
    lean: bool,
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
            await stack.enter_async_context(
                open_dedupe_table(table_name, owner=f"task{i}", lean=lean)
            )
            for i in range(5)
        ]
        claims = await asyncio.gather(
            *(table.claim(step_key, Status.SUCCESS, LEASE_S) for table in tables for _ in range(4))
        )

    winners = [claim for claim in claims if isinstance(claim, Claimed)]
    assert len(winners) == 1
    assert claims.count(ClaimedElsewhere(until=winners[0].until)) == 19


async def test_the_table_stores_no_token_and_no_ids(
    client: TableClient, dynamodb: DynamoDBClient, table_name: str
) -> None:
    """Items are keyed by a digest: neither the token nor the workflow or execution id is stored."""
    step = make_steps(1)[0]
    table = task(client, table_name, "a")
    await table.claim(step.step_key, step.status, LEASE_S)
    other = make_steps(1)[0]
    await table.record_delivered(other.step_key, other.status, TTL_S)

    stored = repr(await items(dynamodb, table_name))
    for value in (*step.step_key, *other.step_key):
        assert value not in stored
    assert table_key(step.step_key) in stored


async def test_a_delivered_message_costs_two_writes_and_a_duplicate_one(
    client: TableClient,
    local_dynamodb: MotoServer,
    dynamodb: DynamoDBClient,
    table_name: str,
    step_key: StepKey,
) -> None:
    """Calls per message: delivered 2 PutItem; a duplicate 1 PutItem; a failed call 1 more."""

    def since(before: Counter[str]) -> Counter[str]:
        return local_dynamodb.calls - before

    a, b = task(client, table_name, "a"), task(client, table_name, "b")
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
    client: TableClient, dynamodb: DynamoDBClient, table_name: str
) -> None:
    """The start-up check reads and tries both writes, yet leaves the table empty."""
    await task(client, table_name, "a").check()
    assert await items(dynamodb, table_name) == []

    # Even a sentinel item that somebody wrote is left as it was (its state not removed).
    sentinel = {"pk": {"S": CHECK_KEY}, "state": {"S": "planted"}}
    await dynamodb.put_item(TableName=table_name, Item=sentinel)
    await task(client, table_name, "a").check()
    assert await items(dynamodb, table_name) == [sentinel]


async def test_check_refuses_a_missing_table(client: TableClient, dynamodb: DynamoDBClient) -> None:
    """A table that does not exist is a configuration error naming it."""
    with pytest.raises(ConfigError, match="relay-missing-table: no such table in us-east-1"):
        await task(client, "relay-missing-table", "a").check()


async def test_check_refuses_a_table_with_another_key(
    client: TableClient, dynamodb: DynamoDBClient
) -> None:
    """A table keyed on anything but `pk` is a configuration error, not a silent fallback."""
    name = f"relay-wrong-{uuid.uuid4().hex[:8]}"
    await dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(ConfigError, match="ValidationException"):
        await task(client, name, "a").check()


async def test_a_missing_table_mid_run_is_unavailable(
    client: TableClient, dynamodb: DynamoDBClient, step_key: StepKey
) -> None:
    """A table deleted under a running task fails claims with one exception type and its code."""
    table = task(client, "relay-gone-table", "a")
    with pytest.raises(DedupeUnavailable) as raised:
        await table.claim(step_key, Status.SUCCESS, LEASE_S)
    assert raised.value.code == "ResourceNotFoundException"


@PATHS
async def test_an_unreachable_table_is_down_after_calls_fail_in_a_row(
    lean: bool, step_key: StepKey, closed_port: int
) -> None:
    """Nothing listening: each claim fails (retried, then DedupeUnavailable, not down) until
    the third in a row, which finds the table down; later calls fail at once, saying why."""
    url = f"http://127.0.0.1:{closed_port}"
    async with open_table_client(url, lean=lean) as client:
        table = DedupeTable(client, "relay-dedupe", "a", claim_retry=QUICK, record_retry=QUICK)
        failures: list[DedupeUnavailable] = []
        for _ in range(FAILURES_TO_OPEN):
            with pytest.raises(DedupeUnavailable) as raised:
                await table.claim(step_key, Status.SUCCESS, LEASE_S)
            failures.append(raised.value)
        assert {f.code for f in failures} == {"EndpointConnectionError"}
        assert [f.table_down for f in failures] == [False] * (FAILURES_TO_OPEN - 1) + [True]
        assert table.is_down

        with pytest.raises(DedupeUnavailable) as skipped:
            await table.record_delivered(step_key, Status.SUCCESS, TTL_S)
        assert skipped.value.code == "table_down"
        assert skipped.value.table_down is True
        assert "EndpointConnectionError" in str(skipped.value)

        # The start-up check asks the table itself, whatever the circuit says.
        with pytest.raises(DedupeUnavailable) as checked:
            await table.check()
        assert checked.value.code == "EndpointConnectionError"


async def test_one_failed_call_does_not_switch_the_table_off(
    client: TableClient, dynamodb: DynamoDBClient, step_key: StepKey
) -> None:
    """A call that failed (the table missing for a moment) leaves the table in use: the next
    claim goes to it at once and is claimed."""
    name = f"relay-late-{uuid.uuid4().hex[:8]}"
    table = DedupeTable(client, name, "a")
    with pytest.raises(DedupeUnavailable) as raised:
        await table.claim(step_key, Status.SUCCESS, LEASE_S)
    assert raised.value.code == "ResourceNotFoundException"
    assert raised.value.table_down is False
    assert not table.is_down
    await create_dedupe_table(dynamodb, name)

    assert isinstance(await table.claim(step_key, Status.SUCCESS, LEASE_S), Claimed)


@pytest.mark.parametrize(
    ("code", "http_status"),
    [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
        ("SomethingNew", 502),
    ],
)
@PATHS
async def test_a_throttled_or_failing_call_is_retried_then_unavailable(
    lean: bool, step_key: StepKey, code: str, http_status: int
) -> None:
    """Throttles, server errors and any 5xx are asked again (by relay: botocore's retries are
    off) up to the policy's attempts; then DedupeUnavailable with the code, the table not down
    after one such call."""
    async with (
        serve_refusing_dynamodb(code, http_status) as endpoint,
        open_table_at(endpoint.url, "relay-dedupe", "a", lean=lean, claim_retry=QUICK) as table,
    ):
        with pytest.raises(DedupeUnavailable) as raised:
            await table.claim(step_key, Status.SUCCESS, LEASE_S)

    assert raised.value.code == code
    assert raised.value.table_down is False
    assert endpoint.requests == ["PutItem"] * QUICK.max_attempts


@pytest.mark.parametrize(
    "code",
    ["ResourceNotFoundException", "AccessDeniedException", "ValidationException", "Unknown4xx"],
)
@PATHS
async def test_a_call_that_asking_again_cannot_mend_fails_at_once(
    lean: bool, step_key: StepKey, code: str
) -> None:
    """A missing table, a denial, a malformed request or an unknown 400 are not retried."""
    async with (
        serve_refusing_dynamodb(code) as endpoint,
        open_table_at(endpoint.url, "relay-dedupe", "a", lean=lean, claim_retry=QUICK) as table,
    ):
        with pytest.raises(DedupeUnavailable) as raised:
            await table.claim(step_key, Status.SUCCESS, LEASE_S)

    assert raised.value.code == code
    assert endpoint.requests == ["PutItem"]


@PATHS
async def test_a_claim_on_a_table_that_always_throttles_ends_within_its_budget(
    lean: bool,
    step_key: StepKey,
) -> None:
    """With the default policy, a claim throttled every time gives up after at most eight
    attempts and a second of retrying: a claim is worth no more."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the real wait, recorded
        waits.append(seconds)
        await asyncio.sleep(seconds)

    async with (
        serve_refusing_dynamodb("ProvisionedThroughputExceededException") as endpoint,
        open_table_at(endpoint.url, "relay-dedupe", "a", lean=lean, sleep=sleep) as table,
    ):
        with pytest.raises(DedupeUnavailable):
            await table.claim(step_key, Status.SUCCESS, LEASE_S)

    assert 2 <= len(endpoint.requests) <= CLAIM_RETRY.max_attempts
    # One wait between two attempts, and together they stay within the budget.
    assert len(waits) == len(endpoint.requests) - 1
    assert sum(waits) <= CLAIM_RETRY.budget_s


@PATHS
async def test_a_denied_table_fails_the_check_and_the_calls(lean: bool, step_key: StepKey) -> None:
    """A role without access: check() is a ConfigError; a claim is DedupeUnavailable at once."""
    async with (
        serve_refusing_dynamodb("AccessDeniedException") as endpoint,
        open_table_client(endpoint.url, lean=lean) as client,
    ):
        with pytest.raises(ConfigError, match="AccessDeniedException"):
            await DedupeTable(client, "relay-dedupe", "a").check()
        with pytest.raises(DedupeUnavailable) as raised:
            await DedupeTable(client, "relay-dedupe", "a").claim(step_key, Status.SUCCESS, LEASE_S)

    assert raised.value.code == "AccessDeniedException"
    # Not retried: a denial does not go away by asking again.
    assert endpoint.requests == ["GetItem", "PutItem"]


async def test_both_clients_answer_every_table_call_alike(
    dynamodb: DynamoDBClient, table_name: str, step_key: StepKey
) -> None:
    """PutItem, a failed condition with and without the item returned, GetItem and UpdateItem
    answer the same through the lean client as through aiobotocore's (request ids aside)."""
    key = {"pk": {"S": table_key(step_key)}}
    item = {**key, "state": {"S": "claim"}, "owner": {"S": "a#1"}, "expires_at": {"N": "99"}}
    absent = "attribute_not_exists(pk)"

    async def calls(client: TableClient) -> list[Any]:
        """The same calls on a fresh item, each answer (or refusal) as the table code sees it."""
        await dynamodb.delete_item(TableName=table_name, Key=key)
        seen: list[Any] = [await client.put_item(TableName=table_name, Item=item)]
        for returned in ("ALL_OLD", "NONE"):
            with pytest.raises(ClientError) as refused:
                await client.put_item(
                    TableName=table_name,
                    Item=item,
                    ConditionExpression=absent,
                    ReturnValuesOnConditionCheckFailure=returned,
                )
            seen.append(refused.value.response)
        seen.append(await client.get_item(TableName=table_name, Key=key, ConsistentRead=True))
        seen.append(
            await client.update_item(
                TableName=table_name,
                Key=key,
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":s": {"S": "released"}},
                ReturnValues="ALL_NEW",
            )
        )
        for answer in seen:
            metadata = answer.pop("ResponseMetadata")
            assert metadata["HTTPStatusCode"] in (200, 400)
        return seen

    async with open_table_client(lean=True) as lean, open_table_client(lean=False) as aio:
        lean_answers = await calls(lean)
        aio_answers = await calls(aio)

    assert lean_answers == aio_answers
    assert lean_answers[1]["Error"]["Code"] == "ConditionalCheckFailedException"
    assert lean_answers[1]["Item"] == item
    assert "Item" not in lean_answers[2]
    assert lean_answers[3]["Item"] == item
