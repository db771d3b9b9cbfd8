"""The lean Transfer Family client (the default sender): `send_workflow_step_state` alone, on
`relay.awsjson.lean`'s client, at a fraction of aiobotocore's CPU per call.

botocore still does what must be right: the credential chain (refreshing credentials are re-read
on every call), endpoint resolution (`AWS_ENDPOINT_URL_TRANSFER`, regional, FIPS), the
User-Agent and the SigV4 signer, all resolved through an aiobotocore client at start-up.
"""

import contextlib
from collections.abc import AsyncIterator

import aiohttp
from aiobotocore.session import AioSession

from relay.aws import new_session
from relay.awsjson.lean import AwsJsonError, LeanJsonClient, open_lean_json
from relay.awsjson.signing import ClockOffset
from relay.transfer.aio import OPERATION, transfer_config
from relay.transfer.errors import CallbackError


class LeanTransferClient:
    """`send_workflow_step_state` on a `LeanJsonClient`, raising `CallbackError` only."""

    def __init__(self, json_client: LeanJsonClient) -> None:
        self.json = json_client

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
    config = transfer_config(
        max_pool_connections=1, call_timeout_s=call_timeout_s, user_agent_extra=user_agent_extra
    )
    timeout = aiohttp.ClientTimeout(total=call_timeout_s, connect=min(call_timeout_s, 5.0))
    async with open_lean_json(
        session or new_session(),
        "transfer",
        config=config,
        timeout=timeout,
        max_pool_connections=max_pool_connections,
        clock=clock,
    ) as json_client:
        yield LeanTransferClient(json_client)
