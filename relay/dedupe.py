"""The delivered-memory a fleet shares (DESIGN §10), on a DynamoDB table.

One item per step, keyed by a digest of (workflow id, execution id, token), never the token:

| attribute | type | value |
|---|---|---|
| `pk` | S | `table_key(step)`: 32 hex digits of a keyed BLAKE2b of the three ids |
| `state` | S | `claim` (a task is calling) or `delivered` (Transfer Family answered 200) |
| `status` | S | `SUCCESS` or `FAILURE`: the status claimed, or the status delivered |
| `owner` | S | which claim wrote it: the task's owner id and a per-claim number (for people) |
| `expires_at` | N | epoch seconds, whole: a claim's lease end, a delivered record's end of window |

An item whose `expires_at` has passed counts as absent. DynamoDB's TTL deletes it some time
later (typically within two days, and it can still be read until then), so every condition here
compares `expires_at` itself rather than trusting the item to be gone. Whole seconds, rounded up,
because TTL takes epoch seconds: a lease or window is never shorter than asked, at most a second
longer.

The clocks of different tasks meet in `expires_at`: leases are tens of seconds and ECS tasks keep
their clocks within milliseconds, so skew does not matter; `give_up` writes a time a minute in
the past so that even a task whose clock is behind sees the claim as ended.

Every failure of the table (unreachable, throttled past botocore's retries, denied, missing)
raises `DedupeUnavailable`; callers fall back to their own memory for that message. botocore's
exceptions are caught here and nowhere else.
"""

import contextlib
import hashlib
import itertools
import math
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import BotoCoreError, ClientError

from relay.aws import new_session
from relay.errors import ConfigError, RelayError
from relay.message import Status, StepKey

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

KEY: Final = "pk"
TTL_ATTRIBUTE: Final = "expires_at"
CLAIM: Final = "claim"
DELIVERED: Final = "delivered"
CHECK_KEY: Final = "relay:check"
"""The sentinel item `check` reads; never written (a table key is 32 hex digits, so no clash)."""
LEASE_MARGIN_S: Final = 5.0
"""Added to the longest a send can take: the delivered record's own write, skew, scheduling."""
COOLDOWN_S: Final = 5.0
"""After a table failure, calls fail at once for this long instead of each waiting out timeouts."""
_GIVEN_UP_AGO_S: Final = 60
# Only ValidationException here among AWS's codes: a key schema other than `pk` (String).
_CONFIG_CODES: Final = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "ValidationException"}
)


def dedupe_config(*, max_pool_connections: int = 64) -> AioConfig:
    """botocore settings for the table: standard retries, timeouts sized to single-item calls.

    Single-item reads and writes take milliseconds, so a second to connect (a regional or VPC
    endpoint connects in well under that) and two to answer are generous. Standard retries,
    3 attempts: a throttle waits rand(0, 1) s, then rand(0, 2) s, as for any AWS call. So a table
    that refuses connections fails a call within ~3 s, a black-holed one within ~6 s, a hanging
    one within ~9 s, and `COOLDOWN_S` keeps the next messages from paying that again at once.
    """
    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=1.0,
        read_timeout=2.0,
        max_pool_connections=max_pool_connections,
    )


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
    """This call holds the step's lease until `until` (epoch seconds): send the callback."""

    item_key: str
    claim_id: str
    until: float
    answer_lost: bool = False


@dataclass(frozen=True, slots=True)
class Delivered:
    """Some task delivered the step with `status`: finish as duplicate or conflict, no call."""

    status: Status


@dataclass(frozen=True, slots=True)
class HeldElsewhere:
    """Another claim is live until `until` (epoch seconds): release briefly, look again."""

    until: float

    def wait_s(self, now: float | None = None) -> float:
        """Seconds until the other claim's lease ends (0 if it has)."""
        return max(0.0, self.until - (time.time() if now is None else now))


Claim = Claimed | Delivered | HeldElsewhere


class DedupeUnavailable(RelayError):
    """The table could not answer; `code` is the AWS error code or the transport's failure."""

    def __init__(self, code: str, detail: str, *, table_down: bool = True) -> None:
        super().__init__(f"dedupe table unavailable: {code}: {detail}"[:500])
        self.code = code
        self.table_down = table_down

    @property
    def label(self) -> str:
        """The code as a metric label (bounded)."""
        return self.code


class DedupeTable:
    """Claims, delivered records and releases on one table, for one task (`owner`)."""

    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        owner: str,
        *,
        cooldown_s: float = COOLDOWN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.table_name = table_name
        self.owner = owner
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._claims = itertools.count(1)
        self._unavailable_until = 0.0
        self._last_code = ""

    async def claim(self, key: StepKey, status: Status, lease_s: float) -> Claim:
        """Claims the step for one send, or says who has it: one conditional PutItem."""
        item_key = table_key(key)
        claim_id = f"{self.owner}#{next(self._claims)}"
        now = self._clock()
        until = math.ceil(now + lease_s)
        async with self._call("PutItem"):
            try:
                await self.client.put_item(
                    TableName=self.table_name,
                    Item={
                        KEY: {"S": item_key},
                        "state": {"S": CLAIM},
                        "status": {"S": status.value},
                        "owner": {"S": claim_id},
                        TTL_ATTRIBUTE: {"N": str(until)},
                    },
                    # Absent, or present but past its time (a lease run out, a window closed).
                    ConditionExpression="attribute_not_exists(#k) OR #e < :now",
                    ExpressionAttributeNames={"#k": KEY, "#e": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={":now": {"N": _number(now)}},
                    # The item that won comes back on the failure: no second call to read it.
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise
                return _holder(cast(Mapping[str, Any], exc.response).get("Item"))
        return Claimed(item_key=item_key, claim_id=claim_id, until=until)

    async def record_delivered(self, key: StepKey, status: Status, ttl_s: float) -> None:
        """Records a 200 for the step, kept `ttl_s` (`--dedupe-ttl`): one PutItem."""
        # Unconditional: a 200 is the truth whoever holds the claim now (a lease may have run
        # out mid-call), and the loser's give_up cannot undo it (it matches only its claim).
        async with self._call("PutItem"):
            await self.client.put_item(
                TableName=self.table_name,
                Item={
                    KEY: {"S": table_key(key)},
                    "state": {"S": DELIVERED},
                    "status": {"S": status.value},
                    "owner": {"S": self.owner},
                    TTL_ATTRIBUTE: {"N": str(math.ceil(self._clock() + ttl_s))},
                },
            )

    async def give_up(self, claimed: Claimed, *, lost: bool = False, ttl_s: float = 0.0) -> None:
        """Ends our claim early (the call did not deliver) so a copy need not wait out the lease.

        One conditional UpdateItem (the task role has no DeleteItem): only while the item is
        still this very claim; a claim taken over since, or a delivered record, is left alone.
        """
        async with self._call("UpdateItem"):
            try:
                await self.client.update_item(
                    TableName=self.table_name,
                    Key={KEY: {"S": claimed.item_key}},
                    UpdateExpression="SET #e = :ended",
                    ConditionExpression="#s = :claim AND #o = :me",
                    ExpressionAttributeNames={"#s": "state", "#o": "owner", "#e": TTL_ATTRIBUTE},
                    ExpressionAttributeValues={
                        # In the past by a minute, for peers whose clock is behind ours; still
                        # recent, as TTL ignores values more than five years old.
                        ":ended": {"N": str(math.floor(self._clock()) - _GIVEN_UP_AGO_S)},
                        ":claim": {"S": CLAIM},
                        ":me": {"S": claimed.claim_id},
                    },
                )
            except ClientError as exc:
                if _code(exc) != "ConditionalCheckFailedException":
                    raise

    async def check(self) -> None:
        """At start-up: ConfigError if the table is missing, has another key, or is denied.

        Reads a sentinel item, then tries PutItem and UpdateItem on it with a condition that is
        never true, so the role's three permissions are proven and nothing is written
        (DescribeTable is not in the task role). A table merely unreachable or throttled raises
        `DedupeUnavailable`: not a configuration error, and callbacks never wait for the table.
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
                await call()
            except ClientError as exc:
                code = _code(exc)
                if code == "ConditionalCheckFailedException":
                    continue  # allowed to write, and the condition kept it from writing
                if code in _CONFIG_CODES:
                    raise self._config_error(exc) from None
                raise _unavailable(exc) from None
            except (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                raise _unavailable(exc) from None

    def _config_error(self, exc: ClientError) -> ConfigError:
        code = _code(exc)
        region = self.client.meta.region_name
        if code == "ResourceNotFoundException":
            return ConfigError(f"--dedupe-table {self.table_name}: no such table in {region}")
        message = str(exc.response.get("Error", {}).get("Message", ""))[:200]
        return ConfigError(f"--dedupe-table {self.table_name} ({region}): {code}: {message}")

    @contextlib.asynccontextmanager
    async def _call(self, operation: str) -> AsyncIterator[None]:
        """Turns every failure of one table call into `DedupeUnavailable`; starts the cooldown."""
        if time.monotonic() < self._unavailable_until:
            raise DedupeUnavailable("cooling_down", f"{operation} skipped after {self._last_code}")
        try:
            yield
        except (ClientError, BotoCoreError, aiohttp.ClientError, OSError, TimeoutError) as exc:
            unavailable = _unavailable(exc, operation)
            self._last_code = unavailable.code
            self._unavailable_until = time.monotonic() + self.cooldown_s
            raise unavailable from None


def _holder(item: Mapping[str, Any] | None) -> Claim:
    """Who beat our claim, from the item DynamoDB returned with the failed condition."""
    if item is None:
        # DynamoDB always returns the item here (a failed condition means one exists); an
        # endpoint that does not cannot be trusted to arbitrate.
        raise DedupeUnavailable(
            "unsupported_endpoint", "no item returned on a failed condition (ALL_OLD)"
        )
    try:
        state = item["state"]["S"]
        if state == DELIVERED:
            return Delivered(Status(item["status"]["S"]))
        if state == CLAIM:
            return HeldElsewhere(until=float(item[TTL_ATTRIBUTE]["N"]))
    except (KeyError, TypeError, ValueError):
        pass
    raise DedupeUnavailable("bad_item", f"unreadable item {sorted(item)}")


def _number(value: float) -> str:
    # DynamoDB numbers are decimal strings; milliseconds are enough and avoid 1e-05 forms.
    return f"{value:.3f}"


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def _unavailable(exc: BaseException, operation: str = "") -> DedupeUnavailable:
    where = f"{operation}: " if operation else ""
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))
        return DedupeUnavailable(_code(exc), f"{where}{message}"[:300])
    if isinstance(exc, TimeoutError):
        return DedupeUnavailable("ReadTimeoutError", f"{where}{exc}"[:300])
    return DedupeUnavailable(type(exc).__name__, f"{where}{exc}"[:300])


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
) -> AsyncIterator[DedupeTable]:
    """A `DedupeTable` on its own client (AWS_ENDPOINT_URL_DYNAMODB honoured), closed after."""
    session = session or new_session()
    config = dedupe_config(max_pool_connections=max_pool_connections)
    async with session.create_client("dynamodb", config=config) as client:
        yield DedupeTable(client, table_name, owner or new_owner())
