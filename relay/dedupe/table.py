"""The delivered-memory a fleet shares (DESIGN §10): the items, claims and records on the table.

One item per step, keyed by a digest of (workflow id, execution id, token), never the token:

| attribute | type | value |
|---|---|---|
| `pk` | S | `table_key(step)`: 32 hex digits of a keyed BLAKE2b of the three ids |
| `state` | S | `claim`, `delivered`, `released` or `lost` (below) |
| `status` | S | `SUCCESS` or `FAILURE`: the status claimed, or the status delivered |
| `owner` | S | which claim wrote it: the task's owner id and a per-claim number (for people) |
| `expires_at` | N | epoch seconds, whole: a claim's lease end, a record's end of window |

The states: `claim`, a task is calling (`expires_at` its lease); `delivered`, Transfer Family
answered 200 (kept `--dedupe-ttl`); `released`, a claim ended early because its call did not
deliver (`expires_at` a minute ago); `lost`, a claim ended early because its call's answer was
lost, so the step's outcome is unknown (kept `--dedupe-ttl`).

An item whose `expires_at` has passed counts as absent. DynamoDB's TTL deletes it some time
later (typically within two days, and it can still be read until then), so every condition here
compares `expires_at` itself rather than trusting the item to be gone. Whole seconds, rounded up,
because TTL takes epoch seconds: a lease or window is never shorter than asked, at most a second
longer. A `lost` item is claimable at once, yet kept for the window: the claim that takes it
over learns that an earlier call's outcome is unknown (`Claimed.answer_lost`, DESIGN §1 "A call
whose answer was lost"), and so does one that takes over a lapsed claim of another task (killed
mid-call, or its delivered record never landed).

The clocks of different tasks meet in `expires_at`: leases are tens of seconds and ECS tasks keep
their clocks within milliseconds, so skew does not matter; `give_up` writes a time a minute in
the past so that even a task whose clock is behind sees the claim as ended.

botocore's retries are off for this client: each call is retried here (tenacity, full jitter)
within a budget that fits what it is worth, a claim a second (`CLAIM_RETRY`), a record of a
call already made three (`RECORD_RETRY`). A call that still fails raises `DedupeUnavailable`;
after `FAILURES_TO_OPEN` such calls in a row the table counts as down (`TableCircuit`): calls
fail at once, but for one probe every `COOLDOWN_S`, whose answer closes the circuit. Every
failure of the table (unreachable, throttled past the retries, denied, missing, an item it
cannot have written) raises `DedupeUnavailable`, which says whether the table is down: then
callers fall back to their own memory for that message; after one failed call they release it
briefly and look again. botocore's exceptions are caught in this package and nowhere else.
"""

import asyncio
import contextlib
import functools
import hashlib
import itertools
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast

from aiobotocore.session import AioSession
from botocore.exceptions import ClientError
from tenacity import AsyncRetrying

from relay.aws import new_session
from relay.awsjson.signing import ClockOffset
from relay.dedupe.calls import (
    CAUGHT,
    CLAIM_RETRY,
    CONFIG_CODES,
    RECORD_RETRY,
    DedupeUnavailable,
    TableCircuit,
    TableRetry,
    dedupe_config,
    error_code,
    retried,
    retrying,
    unavailable,
)
from relay.dedupe.client import LeanDynamoDB, open_lean_dynamodb
from relay.errors import ConfigError
from relay.message import Status, StepKey
from relay.tracing import NO_TRACING, Tracing

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

T = TypeVar("T")

KEY: Final = "pk"
TTL_ATTRIBUTE: Final = "expires_at"
CLAIM: Final = "claim"
DELIVERED: Final = "delivered"
RELEASED: Final = "released"
LOST: Final = "lost"
CHECK_KEY: Final = "relay:check"
"""The sentinel item `check` reads; never written (a table key is 32 hex digits, so no clash)."""
LEASE_MARGIN_S: Final = 5.0
"""Added to the longest a send can take: the delivered record's own write, skew, scheduling."""
CLAIM_ROUNDS: Final = 3
"""Claims tried for one step when an endpoint answers a failed condition without the item and
the item read back has ended meanwhile."""
LOST_KEPT_S: Final = 3600.0
"""How long a lost outcome is kept when the caller does not say: `--dedupe-ttl`'s default."""
_GIVEN_UP_AGO_S: Final = 60
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"


def lease_for(retry_budget_s: float, call_timeout_s: float) -> float:
    """A claim's lease: a send's budget, plus its last attempt's timeout, plus a margin."""
    # tenacity stops *before* an attempt past the budget, so the last one may start just
    # inside it and run its whole timeout.
    return retry_budget_s + call_timeout_s + LEASE_MARGIN_S


def table_key(key: StepKey) -> str:
    """The item key of a step: a digest of its three ids (the token never stored in clear)."""
    # Keyed apart from the local memory's digest: this one is stored and shared across
    # versions, so it must never change with that one. The ids cannot contain NUL.
    digest = hashlib.blake2b("\x00".join(key).encode(), digest_size=16, person=b"relay.dedupe.v1")
    return digest.hexdigest()


def new_owner() -> str:
    """This task's owner id: host name, process id and a random part (a restart is new)."""
    return f"{socket.gethostname()[:64]}/{os.getpid()}/{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Claimed:
    """This call holds the step's lease until `until` (epoch seconds): send the callback.

    `answer_lost`: an earlier call for the step may have reached Transfer Family with its
    answer lost (the claim took over a `lost` record or another task's lapsed claim), so a
    refusal now may mean that call was answered (DESIGN §1).
    """

    item_key: str
    claim_id: str
    until: float
    answer_lost: bool = False


@dataclass(frozen=True, slots=True)
class Delivered:
    """Some task delivered the step with `status`: finish as duplicate or conflict, no call."""

    status: Status


@dataclass(frozen=True, slots=True)
class ClaimedElsewhere:
    """Another claim is live until `until` (epoch seconds): release briefly, look again."""

    until: float

    def wait_s(self, now: float | None = None) -> float:
        """Seconds until the other claim's lease ends (0 if it has)."""
        return max(0.0, self.until - (time.time() if now is None else now))


Claim = Claimed | Delivered | ClaimedElsewhere


class _ConditionFailed(Exception):
    """A conditional write found the item otherwise; `item` as the endpoint returned it."""

    def __init__(self, item: Mapping[str, Any] | None) -> None:
        super().__init__("condition failed")
        self.item = item


class DedupeTable:
    """Claims, delivered records and releases on one table, for one task (`owner`)."""

    def __init__(
        self,
        client: "DynamoDBClient | LeanDynamoDB",
        table_name: str,
        owner: str,
        *,
        claim_retry: TableRetry = CLAIM_RETRY,
        record_retry: TableRetry = RECORD_RETRY,
        circuit: TableCircuit | None = None,
        clock: Callable[[], float] = time.time,
        tracing: Tracing = NO_TRACING,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.tracing = tracing
        """Each table call (its retries within) is a client span when tracing is on."""
        self.client = client
        self.table_name = table_name
        self.owner = owner
        self.circuit = circuit or TableCircuit()
        self._clock = clock
        self._claims = itertools.count(1)
        # Built once; each call copies them (tenacity's own pattern).
        self._claim_retrying = retrying(claim_retry, sleep)
        self._record_retrying = retrying(record_retry, sleep)
        self._last_code = ""

    @property
    def is_down(self) -> bool:
        """The table failed call after call: calls fail at once (`table_down`) but for probes."""
        return self.circuit.is_down

    async def claim(self, key: StepKey, status: Status, lease_s: float) -> Claim:
        """Claims the step for one send, or says who has it: one conditional PutItem.

        An endpoint that answers a failed condition without the item costs a consistent GetItem
        more; if the item has ended by then, the claim is tried again (`CLAIM_ROUNDS` in all).
        """
        item_key = table_key(key)
        claim_id = f"{self.owner}#{next(self._claims)}"
        for _ in range(CLAIM_ROUNDS):
            now = self._clock()
            until = math.ceil(now + lease_s)
            put = functools.partial(
                self.client.put_item,
                TableName=self.table_name,
                Item={
                    KEY: {"S": item_key},
                    "state": {"S": CLAIM},
                    "status": {"S": status.value},
                    "owner": {"S": claim_id},
                    TTL_ATTRIBUTE: {"N": str(until)},
                },
                # Absent, past its time (a lease run out, a window closed), or an outcome
                # nobody knows (taken over at once, and the taker told so).
                ConditionExpression="attribute_not_exists(#k) OR #e < :now OR #s = :lost",
                ExpressionAttributeNames={"#k": KEY, "#e": TTL_ATTRIBUTE, "#s": "state"},
                ExpressionAttributeValues={":now": {"N": _number(now)}, ":lost": {"S": LOST}},
                # What we replaced comes back on success (was its outcome known?), and the
                # item that won comes back on the failure: no second call to read either.
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            try:
                answer = await self._call("PutItem", self._claim_retrying, put)
            except _ConditionFailed as failed:
                item = failed.item
                if item is None:
                    # Not every DynamoDB-compatible store returns it: read it back.
                    item = await self._read(item_key)
                    if item is None or _claimable(item, self._clock()):
                        continue  # it ended between our write and the read: claim again
                return _holder(item, item_key, claim_id)
            old = cast(Mapping[str, Any] | None, answer.get("Attributes"))
            return Claimed(
                item_key=item_key, claim_id=claim_id, until=until, answer_lost=_outcome_unknown(old)
            )
        raise DedupeUnavailable(
            "contended", f"PutItem: the item ended and came back {CLAIM_ROUNDS} times"
        )

    async def record_delivered(self, key: StepKey, status: Status, ttl_s: float) -> None:
        """Records a 200 for the step, kept `ttl_s` (`--dedupe-ttl`): one PutItem."""
        # Unconditional: a 200 is the truth whoever holds the claim now (a lease may have run
        # out mid-call), and the loser's give_up cannot undo it (it matches only its claim).
        # So a retry after an answer that was lost writes the same thing again.
        put = functools.partial(
            self.client.put_item,
            TableName=self.table_name,
            Item={
                KEY: {"S": table_key(key)},
                "state": {"S": DELIVERED},
                "status": {"S": status.value},
                "owner": {"S": self.owner},
                TTL_ATTRIBUTE: {"N": str(math.ceil(self._clock() + ttl_s))},
            },
        )
        await self._call("PutItem", self._record_retrying, put)

    async def give_up(
        self, claimed: Claimed, *, lost: bool = False, ttl_s: float = LOST_KEPT_S
    ) -> None:
        """Ends our claim early (the call did not deliver) so a copy need not wait out the lease.

        `lost`: the call's answer was lost (a timeout, a cut connection), so the step's outcome
        is unknown; that is kept `ttl_s` (pass `--dedupe-ttl`) for whoever claims it next. A
        claim that took over a lost outcome passes it on in any case. Otherwise the claim is
        `released`. One conditional UpdateItem (the task role has no DeleteItem): only while
        the item is still this very claim; a claim taken over since, or a delivered record, is
        left alone.
        """
        now = self._clock()
        if lost or claimed.answer_lost:
            state, expires = LOST, math.ceil(now + ttl_s)
        else:
            # In the past by a minute, for peers whose clock is behind ours; still recent, as
            # TTL ignores values more than five years old.
            state, expires = RELEASED, math.floor(now) - _GIVEN_UP_AGO_S
        update = functools.partial(
            self.client.update_item,
            TableName=self.table_name,
            Key={KEY: {"S": claimed.item_key}},
            UpdateExpression="SET #s = :state, #e = :expires",
            ConditionExpression="#s = :claim AND #o = :me",
            ExpressionAttributeNames={"#s": "state", "#o": "owner", "#e": TTL_ATTRIBUTE},
            ExpressionAttributeValues={
                ":state": {"S": state},
                ":expires": {"N": str(expires)},
                ":claim": {"S": CLAIM},
                ":me": {"S": claimed.claim_id},
            },
        )
        # A failed condition: not ours any more (or a retry after our own write landed).
        with contextlib.suppress(_ConditionFailed):
            await self._call("UpdateItem", self._record_retrying, update)

    async def check(self) -> None:
        """At start-up: ConfigError if the table is missing, has another key, or is denied.

        Reads a sentinel item, then tries PutItem and UpdateItem on it with a condition that is
        never true, so the role's three permissions are proven and nothing is written
        (DescribeTable is not in the task role). A table merely unreachable or throttled (after
        a claim's retries) raises `DedupeUnavailable`: not a configuration error, and callbacks
        never wait for the table. Not counted by the circuit.
        """
        key: dict[str, Any] = {KEY: {"S": CHECK_KEY}}
        # The item's key is CHECK_KEY whether or not it exists, so this is never true.
        never = "#k = :never"
        never_value = {":never": {"S": "relay:never"}}
        calls: tuple[Callable[[], Awaitable[object]], ...] = (
            lambda: self.client.get_item(TableName=self.table_name, Key=key),
            lambda: self.client.put_item(
                TableName=self.table_name,
                Item=key,
                ConditionExpression=never,
                ExpressionAttributeNames={"#k": KEY},
                ExpressionAttributeValues=never_value,
            ),
            lambda: self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="REMOVE #s",
                ConditionExpression=never,
                ExpressionAttributeNames={"#k": KEY, "#s": "state"},
                ExpressionAttributeValues=never_value,
            ),
        )
        for call in calls:
            try:
                await retried(self._claim_retrying, call)
            except ClientError as exc:
                code = error_code(exc)
                if code == _CONDITION_FAILED:
                    continue  # allowed to write, and the condition kept it from writing
                if code in CONFIG_CODES:
                    raise self._config_error(exc) from None
                raise unavailable(exc) from None
            except CAUGHT as exc:
                raise unavailable(exc) from None

    def _config_error(self, exc: ClientError) -> ConfigError:
        code = error_code(exc)
        region = self.client.meta.region_name
        if code == "ResourceNotFoundException":
            return ConfigError(f"--dedupe-table {self.table_name}: no such table in {region}")
        message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
        return ConfigError(f"--dedupe-table {self.table_name} ({region}): {code}: {message}")

    async def _read(self, item_key: str) -> Mapping[str, Any] | None:
        """The item as it stands (a consistent read), or None."""
        get = functools.partial(
            self.client.get_item,
            TableName=self.table_name,
            Key={KEY: {"S": item_key}},
            ConsistentRead=True,
        )
        answer = await self._call("GetItem", self._claim_retrying, get)
        return cast(Mapping[str, Any] | None, answer.get("Item"))

    async def _call(
        self, operation: str, retrying: AsyncRetrying, call: Callable[[], Awaitable[T]]
    ) -> T:
        """One table call through the circuit, retried: its answer, `_ConditionFailed` (with
        the item when the endpoint returned it), or `DedupeUnavailable`."""
        with self.tracing.table(operation, self.table_name):
            try:
                return await self._call_once(operation, retrying, call)
            except _ConditionFailed as exc:
                failed = exc  # an answer, not an error: raised once the span has ended
        raise failed

    async def _call_once(
        self, operation: str, retrying: AsyncRetrying, call: Callable[[], Awaitable[T]]
    ) -> T:
        if not self.circuit.allow():
            raise DedupeUnavailable(
                "table_down",
                f"{operation} not sent: {self.circuit.failures} calls failed in a row, "
                f"the last with {self._last_code}; next probe in {self.circuit.wait_s():.1f}s",
                table_down=True,
            )
        try:
            answer = await retried(retrying, call)
        except ClientError as exc:
            if error_code(exc) == _CONDITION_FAILED:
                self.circuit.answered()
                raise _ConditionFailed(cast(Mapping[str, Any], exc.response).get("Item")) from None
            error: BaseException = exc
        except CAUGHT as exc:
            error = exc
        else:
            self.circuit.answered()
            return answer
        self.circuit.failed()
        failure = unavailable(error, operation, table_down=self.circuit.is_down)
        self._last_code = failure.code
        raise failure from None


def _holder(item: Mapping[str, Any], item_key: str, claim_id: str) -> Claim:
    """Who holds the step, from the item that failed our claim's condition: a live claim or a
    delivered record; anything else this module cannot have written."""
    try:
        state = item["state"]["S"]
        if state == DELIVERED:
            return Delivered(Status(item["status"]["S"]))
        if state == CLAIM:
            until = float(item[TTL_ATTRIBUTE]["N"])
            if item["owner"]["S"] == claim_id:
                # Our own write, landed by an attempt whose answer was lost: what it replaced
                # went unseen, so an earlier outcome cannot be ruled out.
                return Claimed(item_key, claim_id, until, answer_lost=True)
            return ClaimedElsewhere(until=until)
    except (KeyError, TypeError, ValueError):
        pass
    raise DedupeUnavailable("bad_item", f"unreadable item {sorted(item)}")


def _claimable(item: Mapping[str, Any], now: float) -> bool:
    """Whether a claim's condition would pass on this item: past its time, or lost."""
    with contextlib.suppress(KeyError, TypeError, ValueError):
        if item["state"]["S"] == LOST:
            return True
    with contextlib.suppress(KeyError, TypeError, ValueError):
        return float(item[TTL_ATTRIBUTE]["N"]) < now
    return False


def _outcome_unknown(old: Mapping[str, Any] | None) -> bool:
    """Whether the item a claim replaced leaves an earlier call's outcome unknown: a `lost`
    record, or a claim whose lease lapsed (its task killed mid-call, or its delivered record
    never written; a claim given up before `released` existed looks the same)."""
    if old is None:
        return False
    try:
        return old["state"]["S"] not in (DELIVERED, RELEASED)
    except (KeyError, TypeError):
        return True


def _number(value: float) -> str:
    # DynamoDB numbers are decimal strings; milliseconds are enough and avoid 1e-05 forms.
    return f"{value:.3f}"


async def create_dedupe_table(client: DynamoDBClient, name: str) -> None:
    """Creates a table as the template does (on-demand, key `pk`, TTL on `expires_at`)."""
    await client.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": KEY, "AttributeType": "S"}],
        KeySchema=[{"AttributeName": KEY, "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    await client.get_waiter("table_exists").wait(
        TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
    await client.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
    )


@contextlib.asynccontextmanager
async def open_dedupe_table(
    table_name: str,
    *,
    session: AioSession | None = None,
    owner: str | None = None,
    max_pool_connections: int = 64,
    tracing: Tracing = NO_TRACING,
    lean: bool = True,
    clock: ClockOffset | None = None,
) -> AsyncIterator[DedupeTable]:
    """A `DedupeTable` on its own client (AWS_ENDPOINT_URL_DYNAMODB honoured), closed after:
    the lean AWS JSON client (`relay.dedupe.client`), or with `lean=False` aiobotocore's."""
    session = session or new_session()
    opened: contextlib.AbstractAsyncContextManager[Any]
    if lean:
        opened = open_lean_dynamodb(session, max_pool_connections=max_pool_connections, clock=clock)
    else:
        config = dedupe_config(max_pool_connections=max_pool_connections)
        opened = session.create_client("dynamodb", config=config)
    async with opened as client:
        yield DedupeTable(client, table_name, owner or new_owner(), tracing=tracing)
