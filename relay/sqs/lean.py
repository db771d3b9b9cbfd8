"""SQS's three hot calls on the lean AWS JSON client (awsJson1_0), answering as aiobotocore does.

`ReceiveMessage`, `DeleteMessageBatch` and `ChangeMessageVisibilityBatch` are made per message
(or per batch of ten); through aiobotocore they cost about as much CPU as the callback itself.
`LeanSqs` makes these three on `relay.awsjson.lean` and hands every other call (queue checks,
counts, dead-letter sends) to the aiobotocore client it wraps, so callers keep one client.

What aiobotocore would answer, these answer: SQS's JSON protocol returns the shapes botocore's
parser passes through unchanged for the members relay reads (strings, numbers, lists, maps;
`BinaryValue`, a blob, is decoded from base64 as botocore does). A refusal is botocore's
`ClientError` with the code botocore reads (the body's `__type`, undecorated, or the status;
the query-compatible code of `x-amzn-query-error` first, as botocore maps it), a transport
failure aiobotocore's botocore exception for it. botocore's retries (standard mode, three
attempts, `relay.sqs.client.sqs_config`) are matched: a throttle, a 5xx or a transport failure
is tried again, up to three attempts, with botocore's own backoff.
"""

import asyncio
import base64
import binascii
import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import aiohttp
from aiobotocore.session import AioSession
from botocore.exceptions import ClientError

from relay.awsjson.lean import (
    AwsJsonError,
    LeanJsonClient,
    botocore_client_error,
    modeled_error_members,
    open_lean_json,
)
from relay.awsjson.signing import ClockOffset
from relay.sqs.client import open_sqs, sqs_config

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

MAX_ANSWER_BYTES: Final = 16 * 1024 * 1024
"""The most of an answer read: ten messages of up to 1 MiB each and their attributes."""
MAX_ATTEMPTS: Final = 3
"""As `sqs_config`'s standard retry mode: three attempts in all."""
_BACKOFF_CAP_S: Final = 20.0
# botocore's standard mode: throttling codes, transient codes and statuses, and transport errors.
_THROTTLES: Final = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_TRANSIENT_CODES: Final = frozenset(
    {"RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}
)
_TRANSIENT_STATUSES: Final = frozenset({500, 502, 503, 504})


class LeanSqs:
    """An aiobotocore SQS client whose three hot calls go through the lean client."""

    def __init__(
        self,
        json_client: LeanJsonClient,
        fallback: Any,
        error_members: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.json = json_client
        self._fallback = fallback
        self._error_members = error_members or {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fallback, name)

    async def receive_message(self, **params: Any) -> dict[str, Any]:
        """ReceiveMessage, answered as aiobotocore answers it."""
        answer = await self._call("ReceiveMessage", params)
        for message in answer.get("Messages") or ():
            for value in (message.get("MessageAttributes") or {}).values():
                _decode_blobs(value)
        return answer

    async def delete_message_batch(self, **params: Any) -> dict[str, Any]:
        """DeleteMessageBatch, answered as aiobotocore answers it."""
        return await self._call("DeleteMessageBatch", params)

    async def change_message_visibility_batch(self, **params: Any) -> dict[str, Any]:
        """ChangeMessageVisibilityBatch, answered as aiobotocore answers it."""
        return await self._call("ChangeMessageVisibilityBatch", params)

    async def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(MAX_ATTEMPTS):
            try:
                answer, request_id = await self.json.call(operation, params)
            except AwsJsonError as exc:
                error = botocore_client_error(
                    exc, operation, self.json.endpoint_url, self._error_members
                )
                if attempt + 1 >= MAX_ATTEMPTS or not _retryable(error):
                    raise error from None
                # botocore's standard mode: full jitter, base 1 s doubling, capped at 20 s.
                await asyncio.sleep(random.random() * min(_BACKOFF_CAP_S, 2**attempt))
                continue
            answer["ResponseMetadata"] = {
                "RequestId": request_id,
                "HTTPStatusCode": 200,
                "RetryAttempts": attempt,
            }
            return answer
        raise AssertionError("unreachable")  # pragma: no cover


def _retryable(error: Exception) -> bool:
    if not isinstance(error, ClientError):
        return True  # a transport failure
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code in _THROTTLES or code in _TRANSIENT_CODES or status in _TRANSIENT_STATUSES


def _decode_blobs(value: dict[str, Any]) -> None:
    """A message attribute's blobs as botocore returns them: bytes, not base64 text."""
    raw = value.get("BinaryValue")
    if isinstance(raw, str):
        with contextlib.suppress(binascii.Error, ValueError):
            value["BinaryValue"] = base64.b64decode(raw)
    listed = value.get("BinaryListValues")
    if isinstance(listed, list):
        with contextlib.suppress(binascii.Error, ValueError, TypeError):
            value["BinaryListValues"] = [base64.b64decode(item) for item in listed]


@contextlib.asynccontextmanager
async def open_lean_sqs(
    session: AioSession,
    fallback: Any,
    *,
    max_pool_connections: int = 10,
    clock: ClockOffset | None = None,
    endpoint_url: str | None = None,
) -> AsyncIterator[LeanSqs]:
    """`fallback` (an aiobotocore SQS client) with its three hot calls made lean: the same
    endpoint (`AWS_ENDPOINT_URL_SQS`), region, credentials and timeouts (`sqs_config`)."""
    config = sqs_config(max_pool_connections=1)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=30)
    async with open_lean_json(
        session,
        "sqs",
        config=config,
        timeout=timeout,
        max_pool_connections=max_pool_connections,
        clock=clock,
        max_answer_bytes=MAX_ANSWER_BYTES,
        endpoint_url=endpoint_url,
    ) as json_client:
        yield LeanSqs(json_client, fallback, await modeled_error_members(session, "sqs"))


@contextlib.asynccontextmanager
async def open_hot_sqs(
    session: AioSession, *, lean: bool, max_pool_connections: int, clock: ClockOffset
) -> AsyncIterator["SQSClient"]:
    """The worker's SQS client: aiobotocore's, its receives, batch deletes and batch visibility
    changes made lean when `lean` (relay's `--lean-sender`)."""
    async with open_sqs(session, max_pool_connections=max_pool_connections) as sqs:
        if not lean:
            yield sqs
            return
        async with open_lean_sqs(
            session, sqs, max_pool_connections=max_pool_connections, clock=clock
        ) as hot:
            yield cast("SQSClient", hot)  # the same calls, answered the same way
