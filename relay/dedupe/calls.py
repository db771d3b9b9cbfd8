"""One table call, made resilient: botocore's retries off, relay's own within a budget
(`TableRetry`, tenacity, full jitter), and a circuit that says whether the table is down
(`TableCircuit`). Every failure becomes `DedupeUnavailable`; botocore's exceptions are caught
in this package (here and in `relay.dedupe.table`) and nowhere else.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError
from tenacity import (
    AsyncRetrying,
)

from relay.errors import RelayError
from relay.limits import RetryPolicy

T = TypeVar("T")

FAILURES_TO_OPEN: Final = 3
"""Calls failed in a row (each after its retries) after which the table counts as down."""
COOLDOWN_S: Final = 5.0
"""While the table is down, calls fail at once but for one probe this often."""

# Only ValidationException here among AWS's codes: a key schema other than `pk` (String).
CONFIG_CODES: Final = frozenset(
    {"ResourceNotFoundException", "AccessDeniedException", "ValidationException"}
)
RETRYABLE_CODES: Final = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
"""Table errors worth asking again (so is any 5xx and any transport failure); the rest fail
at once: a missing table, a denial, a malformed request do not change by asking again."""
DYNAMODB_ERROR_CODES: Final = (
    RETRYABLE_CODES
    | CONFIG_CODES
    | {
        "ItemCollectionSizeLimitExceededException",
        "LimitExceededException",
        "ResourceInUseException",
        "TransactionConflictException",
        "ReplicatedWriteConflictException",
        "UnrecognizedClientException",
        "MissingAuthenticationTokenException",
        "IncompleteSignatureException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "SerializationException",
    }
)
"""DynamoDB's documented error codes: the values a metric label may take (others are `other`)."""
TRANSPORT_ERRORS: Final = (
    BotocoreConnectionError,  # refused, connect timeout, TLS, proxy
    HTTPClientError,  # read timeout, connection closed mid-answer
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)
CAUGHT: Final = (BotoCoreError, aiohttp.ClientError, OSError, TimeoutError)


def dedupe_config(
    *, max_pool_connections: int = 64, connect_timeout_s: float = 0.5, read_timeout_s: float = 1.0
) -> AioConfig:
    """botocore settings for the table: retries off (relay retries), short timeouts.

    Single-item reads and writes take milliseconds, so half a second to connect (a regional or
    VPC endpoint connects in well under that) and one to answer are generous; an attempt that
    hangs is better cut and tried again than waited on, within `TableRetry`'s budget.
    """
    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        connect_timeout=connect_timeout_s,
        read_timeout=read_timeout_s,
        max_pool_connections=max_pool_connections,
    )


TableRetry = RetryPolicy
"""How one table call retries: the same kind of value as a callback's retry policy."""


def retrying(
    policy: TableRetry, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
) -> AsyncRetrying:
    """The tenacity controller for one call's attempts under `policy` (copy it per call);
    `sleep` waits between attempts."""
    return policy.controller(retryable, sleep=sleep)


CLAIM_RETRY: Final = TableRetry(max_attempts=8, budget_s=1.0, base_s=0.025, cap_s=0.25)
"""A claim only spares a duplicate call, and its message waits on it: retries for a second
(eight attempts against a table that throttles at once), then the caller releases the message
and looks again. A table that fails 60% of calls fails a claim about 2% of the time."""
RECORD_RETRY: Final = TableRetry(max_attempts=16, budget_s=3.0, base_s=0.025, cap_s=0.4)
"""A delivered, released or lost record follows a call already made, and spares the whole
fleet a call: retries for three seconds (about sixteen attempts against a table that throttles
at once; one record in a few thousand lost when 60% of calls fail)."""


class DedupeUnavailable(RelayError):
    """The table could not answer; `code` is the AWS error code (`from_service`), the transport
    failure's type name, or relay's own word: `table_down`, `bad_item`, `contended`.

    `table_down`: the table has failed call after call (or this call was not sent because it
    has), so the caller falls back to its own memory; False after one failed call, which the
    caller answers by releasing the message briefly and looking again.
    """

    def __init__(
        self, code: str, detail: str, *, table_down: bool = False, from_service: bool = False
    ) -> None:
        super().__init__(f"dedupe table unavailable: {code}: {detail}"[:500])
        self.code = code
        self.table_down = table_down
        self.from_service = from_service

    @property
    def label(self) -> str:
        """The code as a metric label: a code the endpoint chose is kept only if DynamoDB
        documents it (an endpoint must not grow /metrics at will); relay's own names as they are."""
        if not self.from_service or self.code in DYNAMODB_ERROR_CODES:
            return self.code
        return "other"


class TableCircuit:
    """Whether the table is down: `failures_to_open` failed calls in a row open the circuit;
    while open, one call every `cooldown_s` goes through as a probe, and any answer closes it.

    A probe is due `cooldown_s` after the last failure, and taking it starts another cooldown,
    so a probe that is cancelled or still running holds off the next one; no state to undo.
    """

    def __init__(
        self,
        *,
        failures_to_open: int = FAILURES_TO_OPEN,
        cooldown_s: float = COOLDOWN_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures_to_open = failures_to_open
        self.cooldown_s = cooldown_s
        self._clock = clock
        self.failures = 0
        """Calls failed in a row."""
        self._probe_at = 0.0

    @property
    def is_down(self) -> bool:
        """Open: calls fail at once, but for the probe."""
        return self.failures >= self.failures_to_open

    def allow(self) -> bool:
        """Whether a call may go to the table now (taking the probe if it is due)."""
        if not self.is_down:
            return True
        now = self._clock()
        if now < self._probe_at:
            return False
        self._probe_at = now + self.cooldown_s
        return True

    def wait_s(self) -> float:
        """Seconds until the next probe is due (0 when closed)."""
        return max(0.0, self._probe_at - self._clock()) if self.is_down else 0.0

    def answered(self) -> None:
        """The table answered (a failed condition is an answer too): close."""
        self.failures = 0

    def failed(self) -> None:
        """A call failed after its retries: one more in a row; the next probe a cooldown away."""
        self.failures += 1
        if self.is_down:
            self._probe_at = max(self._probe_at, self._clock() + self.cooldown_s)


async def retried(retrying: AsyncRetrying, call: Callable[[], Awaitable[T]]) -> T:
    """`call` with the attempts `retrying` allows; the last error is raised as it was."""
    async for attempt in retrying.copy():
        with attempt:
            return await call()
    raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover


def retryable(exc: BaseException) -> bool:
    """Worth asking again: a throttle, a server error, a transport failure."""
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in RETRYABLE_CODES or status >= 500
    return isinstance(exc, TRANSPORT_ERRORS)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))


def unavailable(
    exc: BaseException, operation: str = "", *, table_down: bool = False
) -> DedupeUnavailable:
    where = f"{operation}: " if operation else ""
    if isinstance(exc, ClientError):
        message = str(exc.response.get("Error", {}).get("Message", ""))
        detail = f"{where}{message}"[:300]
        return DedupeUnavailable(error_code(exc), detail, table_down=table_down, from_service=True)
    code = "ReadTimeoutError" if isinstance(exc, TimeoutError) else type(exc).__name__
    return DedupeUnavailable(code, f"{where}{exc}"[:300], table_down=table_down)
