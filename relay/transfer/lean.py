"""The lean Transfer Family client (the default sender): `send_workflow_step_state` alone, on
`relay.awsjson.lean`'s client, at a fraction of aiobotocore's CPU per call.

botocore still does what must be right: the credential chain (refreshing credentials are re-read
on every call), endpoint resolution (`AWS_ENDPOINT_URL_TRANSFER`, regional, FIPS), the
User-Agent and the SigV4 signer, all resolved through an aiobotocore client at start-up.
"""

import contextlib
import os
import ssl
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from aiobotocore.session import AioSession
from botocore.exceptions import NoCredentialsError

from relay.aws import new_session
from relay.awsjson.lean import AwsJsonError, LeanJsonClient, proxy_for
from relay.awsjson.signing import ClockOffset
from relay.transfer.aio import OPERATION, SIGNING_NAME, botocore_user_agent, open_transfer
from relay.transfer.errors import CallbackError

TARGET_PREFIX: Final = "TransferService"
JSON_VERSION: Final = "1.1"


class LeanTransferClient:
    """`send_workflow_step_state` on a `LeanJsonClient`, raising `CallbackError` only."""

    def __init__(self, json_client: LeanJsonClient) -> None:
        self.json = json_client

    @property
    def clock(self) -> ClockOffset:
        """The clock offset its requests are signed with."""
        return self.json.clock

    async def send_workflow_step_state(
        self, *, WorkflowId: str, ExecutionId: str, Token: str, Status: str
    ) -> str | None:
        """Sends the callback; returns the answer's request id when Transfer Family answered
        200, raises `CallbackError` otherwise."""
        params = {
            "WorkflowId": WorkflowId,
            "ExecutionId": ExecutionId,
            "Token": Token,
            "Status": Status,
        }
        try:
            _, request_id = await self.json.call(OPERATION, params)
        except AwsJsonError as exc:
            if exc.wire is not None:
                raise CallbackError.from_wire(exc.wire) from None
            raise CallbackError(exc.code, exc.message, answer_lost=exc.answer_lost) from None
        return request_id or None


@contextlib.asynccontextmanager
async def open_lean_transfer(
    session: AioSession | None = None,
    *,
    max_pool_connections: int = 64,
    call_timeout_s: float = 10,
    user_agent_extra: str | None = None,
    clock: ClockOffset | None = None,
) -> AsyncIterator[LeanTransferClient]:
    """A `LeanTransferClient` with the endpoint, region, credentials and User-Agent botocore
    resolves."""
    session = session or new_session()
    async with open_transfer(
        session,
        max_pool_connections=1,
        call_timeout_s=call_timeout_s,
        user_agent_extra=user_agent_extra,
    ) as resolver:
        credentials = await session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        timeout = aiohttp.ClientTimeout(total=call_timeout_s, connect=min(call_timeout_s, 5.0))
        # As botocore does: AWS_CA_BUNDLE for a private CA, HTTP(S)_PROXY and NO_PROXY honoured.
        ssl_context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        connector = aiohttp.TCPConnector(limit=max_pool_connections, ssl=ssl_context)
        endpoint_url = resolver.meta.endpoint_url
        # Resolved once here: aiohttp's trust_env would re-read the environment and ~/.netrc
        # in a thread on every request, a fifth of the CPU of a throttled run.
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            yield LeanTransferClient(
                LeanJsonClient(
                    endpoint_url=endpoint_url,
                    region=resolver.meta.region_name,
                    signing_name=SIGNING_NAME,
                    target_prefix=TARGET_PREFIX,
                    json_version=JSON_VERSION,
                    credentials=credentials,
                    http=http,
                    proxy=proxy_for(endpoint_url),
                    user_agent=botocore_user_agent(session, resolver),
                    clock=clock,
                    reload_credentials=session.get_component(
                        "credential_provider"
                    ).load_credentials,
                )
            )
