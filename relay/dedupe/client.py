"""The fleet table's calls on the lean AWS JSON client (awsJson1_0), answering as aiobotocore's
DynamoDB client does: `relay.dedupe.table` cannot tell the two apart.

The three operations the table makes (PutItem, UpdateItem, GetItem) take and answer DynamoDB's
wire form as they are: botocore's low-level client neither converts attribute values nor adds
anything to them, so the lean client's JSON is what aiobotocore would return. A refusal is raised
as botocore's `ClientError` with the response botocore builds (`Error.Code`, `Error.Message`,
`ResponseMetadata.HTTPStatusCode`, and the error shape's members at the top level: the `Item` of a
failed condition); a transport failure as the botocore exception aiobotocore raises for it
(`aiobotocore.httpsession.AIOHTTPSession.send`'s mapping). botocore's retries are off for the
aiobotocore client and there are none here: `relay.dedupe.calls` retries.
"""

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from aiobotocore.session import AioSession

from relay.awsjson.lean import (
    AwsJsonError,
    LeanJsonClient,
    botocore_client_error,
    modeled_error_members,
    open_lean_json,
)
from relay.awsjson.signing import ClockOffset
from relay.dedupe.calls import dedupe_config

MAX_ANSWER_BYTES: Final = 64 * 1024
"""The most of an answer read: the table's items are under 1 KB (an endpoint decides the rest)."""


@dataclass(frozen=True, slots=True)
class Meta:
    """What the table reads of a client's `meta` (the region, for its messages)."""

    region_name: str
    endpoint_url: str


class LeanDynamoDB:
    """`put_item`, `update_item` and `get_item` as aiobotocore's DynamoDB client has them."""

    def __init__(
        self,
        json_client: LeanJsonClient,
        *,
        region: str,
        endpoint_url: str,
        error_members: Mapping[str, frozenset[str]] | None = None,
    ) -> None:
        self.json = json_client
        self.meta = Meta(region_name=region, endpoint_url=endpoint_url)
        self._error_members = error_members or {}
        """The members of each modeled error (by code), which botocore puts in the response."""

    async def put_item(self, **params: Any) -> dict[str, Any]:
        """PutItem, answered as aiobotocore answers it."""
        return await self._call("PutItem", params)

    async def update_item(self, **params: Any) -> dict[str, Any]:
        """UpdateItem, answered as aiobotocore answers it."""
        return await self._call("UpdateItem", params)

    async def get_item(self, **params: Any) -> dict[str, Any]:
        """GetItem, answered as aiobotocore answers it."""
        return await self._call("GetItem", params)

    async def _call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            answer, request_id = await self.json.call(operation, params)
        except AwsJsonError as exc:
            raise botocore_client_error(
                exc, operation, self.meta.endpoint_url, self._error_members
            ) from None
        answer["ResponseMetadata"] = {"RequestId": request_id, "HTTPStatusCode": 200}
        return answer


@contextlib.asynccontextmanager
async def open_lean_dynamodb(
    session: AioSession,
    *,
    max_pool_connections: int = 64,
    connect_timeout_s: float = 0.5,
    read_timeout_s: float = 1.0,
    clock: ClockOffset | None = None,
    endpoint_url: str | None = None,
) -> AsyncIterator[LeanDynamoDB]:
    """A `LeanDynamoDB` with the endpoint, region and credentials botocore resolves
    (`AWS_ENDPOINT_URL_DYNAMODB` honoured, unless `endpoint_url` is given), the timeouts of
    `dedupe_config`."""
    config = dedupe_config(
        max_pool_connections=1, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
    )
    # As aiobotocore's: a connect timeout per connection, a read timeout per read.
    timeout = aiohttp.ClientTimeout(
        total=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
    )
    async with open_lean_json(
        session,
        "dynamodb",
        config=config,
        timeout=timeout,
        max_pool_connections=max_pool_connections,
        clock=clock,
        max_answer_bytes=MAX_ANSWER_BYTES,
        endpoint_url=endpoint_url,
    ) as json_client:
        error_members = await modeled_error_members(session, "dynamodb")
        yield LeanDynamoDB(
            json_client,
            region=json_client.region,
            endpoint_url=json_client.endpoint_url,
            error_members=error_members,
        )
