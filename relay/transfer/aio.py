"""The aiobotocore Transfer Family client (`--no-lean-sender`, and the lean one's resolver of
endpoint, region, credentials and User-Agent), behind relay's error type: botocore's
exceptions are caught here and nowhere else.
"""

import contextlib
import functools
import socket
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

import relay
from relay.aws import new_session
from relay.awsjson.errors import (
    ERROR_TYPE_HEADER,
    MAX_ERROR_BODY_BYTES,
    MAX_REQUEST_ID_CHARS,
    error_name,
    header,
    read_error,
    retry_after_seconds,
)
from relay.awsjson.lean import read_capped
from relay.awsjson.signing import ClockOffset, sign_at_service_time
from relay.outcomes import CONNECTION_ERROR, READ_TIMEOUT
from relay.transfer.errors import CallbackError

if TYPE_CHECKING:
    from types_aiobotocore_transfer import TransferClient
else:
    TransferClient = Any

T = TypeVar("T")

SIGNING_NAME: Final = "transfer"
OPERATION: Final = "SendWorkflowStepState"
READS: Final = ("ListExecutions", "DescribeExecution")
"""The execution reads of DESIGN §11, made on this client by `relay.executions`."""
UNREADABLE_ANSWER: Final = "UnreadableAnswer"
"""The code of a read whose 200 answer lacks a member the model requires."""
READ_BODY_BYTES: Final = 16 * 1024 * 1024
"""The most of a read's answer that is read: a `ListExecutions` page of 1,000 executions is a
few hundred KB (more with long EFS paths); an endpoint's answer is bounded all the same."""


def relay_user_agent() -> str:
    """`relay/<version>`, appended to botocore's User-Agent by both senders (for CloudTrail)."""
    return f"relay/{relay.__version__}"


def transfer_config(
    *, max_pool_connections: int, call_timeout_s: float, user_agent_extra: str | None = None
) -> AioConfig:
    """Retries off (relay owns retrying), a pool as large as the concurrency, short timeouts.

    `user_agent_extra` goes on the User-Agent before `relay/<version>`; the app id comes from
    `AWS_SDK_UA_APP_ID` (or `sdk_ua_app_id` in the config file), which botocore reads itself.
    """
    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=max_pool_connections,
        connect_timeout=min(call_timeout_s, 5.0),
        read_timeout=call_timeout_s,
        user_agent_extra=" ".join(filter(None, (user_agent_extra, relay_user_agent()))),
        http_session_cls=CappedAIOHTTPSession,
    )


class CappedAIOHTTPSession(AIOHTTPSession):
    """aiobotocore's aiohttp transport, reading at most `MAX_ERROR_BODY_BYTES` of a body (of an
    execution read's, `READ_BODY_BYTES`).

    `AIOHTTPSession.send` reads a whole body (`await http_response.content`) before any event
    hook sees the answer, unless the request streams its output; an endpoint answering 20 MB
    would have every call in flight hold 20 MB. So this asks the parent for a streamed answer
    (the flag only tells `send` not to read; the request on the wire is the same), reads at most
    the cap from the aiohttp response itself, and leaves it where `AioAWSResponse.content` caches
    the body (`_content`), which `convert_to_response_dict` and the parsers read afterwards. An
    operation that really streams its output is left as it was.
    """

    # The stubs name requests' Request and Response here; aiobotocore passes botocore's
    # AWSPreparedRequest and returns an AioAWSResponse.
    async def send(self, request: Any) -> Any:
        if request.stream_output:
            return await super().send(request)
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):  # botocore keeps header values as it will send them
            target = target.decode("ascii", "replace")
        operation = str(target).rpartition(".")[2]
        cap = READ_BODY_BYTES if operation in READS else MAX_ERROR_BODY_BYTES
        request.stream_output = True
        try:
            response = await super().send(request)
        finally:
            request.stream_output = False
        # The parent maps transport errors to botocore's inside its own read; the same mapping
        # for this one (botocore.httpsession and aiobotocore's send raise these types).
        try:
            response._content = await read_capped(response.raw, cap)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionClosedError(
                error=exc, request=request, endpoint_url=request.url
            ) from exc
        except (aiohttp.ServerTimeoutError, TimeoutError) as exc:
            raise ReadTimeoutError(endpoint_url=request.url, error=exc) from exc
        except aiohttp.ClientConnectionError as exc:
            raise EndpointConnectionError(endpoint_url=request.url, error=exc) from exc
        return response


@contextlib.asynccontextmanager
async def open_transfer(
    session: AioSession | None = None,
    *,
    max_pool_connections: int = 64,
    call_timeout_s: float = 10,
    user_agent_extra: str | None = None,
    clock: ClockOffset | None = None,
) -> AsyncIterator["AioTransferClient"]:
    """An aiobotocore Transfer client (AWS_ENDPOINT_URL_TRANSFER honoured), as relay's client.

    Errors are read as DESIGN §1 says, and requests are signed at the service's time once
    `clock` has learnt how far this host's clock is off (pass the one the gauge shows).
    """
    session = session or new_session()
    clock = clock or ClockOffset()
    config = transfer_config(
        max_pool_connections=max_pool_connections,
        call_timeout_s=call_timeout_s,
        user_agent_extra=user_agent_extra,
    )
    async with session.create_client("transfer", config=config) as client:
        events = client.meta.events
        # botocore's JSON 1.1 parser reads only `__type` (and raises AttributeError on a JSON body
        # that is not an object); `before-parse` is the hook botocore itself uses to fix a
        # service's error shape (`_map_oauth2_errors` for SSO OIDC). Everything botocore builds
        # from `Error.Code` afterwards (the modeled exception class, RetryAfterSeconds and the
        # other shape members) then follows DESIGN §1's reading.
        for operation in (OPERATION, *READS):
            events.register(
                f"before-parse.transfer.{operation}", functools.partial(_read_error_first, clock)
            )
        # botocore stamps a signature with this host's clock (SigV4Auth.add_auth reads
        # `get_current_datetime()`) and offers no setting for an offset. The signer is a
        # `request-created` handler; registered last, this one signs the request again at the
        # service's time with the same signer class, region and credentials, and only once an
        # offset has been learnt, so a host with a good clock pays nothing. The other hooks were
        # worse: `before-sign` cannot change the time `add_auth` stamps afterwards,
        # `choose-signer` can only name a signer class from botocore's process-wide
        # AUTH_TYPE_MAPS (which cannot hold this client's offset), and the client's
        # `_request_signer` is private.
        credentials = await session.get_credentials()
        events.register_last(
            "request-created.transfer",
            # aiobotocore awaits a coroutine handler; the stubs are botocore's, which does not.
            functools.partial(  # type: ignore[arg-type]
                sign_at_service_time,
                clock,
                credentials,
                client.meta.region_name,
                signing_name=SIGNING_NAME,
            ),
        )
        yield AioTransferClient(client)


def _read_error_first(
    clock: ClockOffset,
    response_dict: dict[str, Any],
    customized_response_dict: dict[str, Any],
    **_: Any,
) -> None:
    """Put DESIGN §1's reading of an error answer where botocore's parser will use it."""
    status = response_dict["status_code"]
    if status < 300:
        return
    error = read_error(status, response_dict["headers"], response_dict.get("body") or b"")
    clock.learn(error)
    # Merged over what the parser makes of the answer, before the modeled members are read.
    customized_response_dict["Error"] = {"Code": error.code, "Message": error.message}
    if not error.object_body:
        # Nothing in it to parse, and botocore's parser fails on JSON that is not an object.
        response_dict["body"] = b""


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    """One page of a workflow's executions in progress, as `ListExecutions` lists them."""

    executions: tuple[tuple[str, str], ...]
    """(execution id, status) of each execution on the page."""
    next_token: str | None


class AioTransferClient:
    """An aiobotocore Transfer client as relay wants one: `send_workflow_step_state` (the
    sender), `list_executions` and `describe_execution` (DESIGN §11), each raising
    `CallbackError` only. `client` is the aiobotocore client itself (its `meta` resolves the
    endpoint, region and configuration)."""

    def __init__(self, client: TransferClient) -> None:
        self.client = client

    @property
    def meta(self) -> Any:
        """The aiobotocore client's `meta`."""
        return self.client.meta

    async def send_workflow_step_state(
        self, *, WorkflowId: str, ExecutionId: str, Token: str, Status: str
    ) -> str | None:
        """Sends the callback; returns the answer's request id when Transfer Family answered
        200, raises `CallbackError` otherwise."""
        response = await _call(
            self.client.send_workflow_step_state(
                WorkflowId=WorkflowId,
                ExecutionId=ExecutionId,
                Token=Token,
                Status=Status,  # type: ignore[arg-type]
            )
        )
        return _request_id(response.get("ResponseMetadata", {}))

    async def list_executions(
        self, *, workflow_id: str, next_token: str | None = None, max_results: int = 1000
    ) -> ExecutionPage:
        """One page of the workflow's executions in progress; `CallbackError` on any failure
        (`ResourceNotFoundException`: the workflow is not known)."""
        paging = {"NextToken": next_token} if next_token is not None else {}
        answer = await _call(
            self.client.list_executions(WorkflowId=workflow_id, MaxResults=max_results, **paging)
        )
        listed = answer.get("Executions")
        if not isinstance(listed, list):
            # A required member: an answer without it (cut short, or not the service's) must not
            # read as "nothing in progress", which would call every copy finished.
            raise CallbackError(UNREADABLE_ANSWER, "ListExecutions answered without Executions")
        executions = tuple(
            (str(e.get("ExecutionId", "")), str(e.get("Status", ""))) for e in listed
        )
        return ExecutionPage(executions, answer.get("NextToken") or None)

    async def describe_execution(self, *, workflow_id: str, execution_id: str) -> str:
        """The execution's status (`IN_PROGRESS` while it waits); `CallbackError` on any failure
        (`ResourceNotFoundException`: it is not in progress, or never was)."""
        answer = await _call(
            self.client.describe_execution(WorkflowId=workflow_id, ExecutionId=execution_id)
        )
        execution = answer.get("Execution")
        if not isinstance(execution, dict) or not execution.get("Status"):
            raise CallbackError(UNREADABLE_ANSWER, "DescribeExecution answered without a Status")
        return str(execution["Status"])


async def _call(request: Awaitable[T]) -> T:
    """The call's answer; botocore's and aiohttp's failures as relay's `CallbackError`."""
    try:
        return await request
    except ClientError as exc:
        raise from_client_error(exc) from None
    except (TimeoutError, ReadTimeoutError) as exc:
        detail = str(exc) or type(exc).__name__
        raise CallbackError(READ_TIMEOUT, detail, answer_lost=_answer_lost(exc)) from None
    except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
        detail = f"{type(exc).__name__}: {exc}"
        raise CallbackError(CONNECTION_ERROR, detail, answer_lost=_answer_lost(exc)) from None


def _request_id(metadata: Any) -> str | None:
    """The request id botocore read from the answer, capped like the lean client's."""
    request_id = metadata.get("RequestId") if isinstance(metadata, dict) else None
    return str(request_id)[:MAX_REQUEST_ID_CHARS] if request_id else None


def _answer_lost(exc: BaseException) -> bool:
    """Whether a transport failure may have come after the request reached the service: only a
    failure to connect proves it did not (so a timeout to connect is not a lost answer)."""
    if isinstance(exc, ConnectTimeoutError | aiohttp.ClientConnectorError):
        return False
    if isinstance(exc, EndpointConnectionError):
        cause = exc.kwargs.get("error")
        return not isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror)
    return True


def from_client_error(exc: ClientError) -> CallbackError:
    """The `CallbackError` of botocore's `ClientError`, read as DESIGN §1 says."""
    response: Any = exc.response
    details = response.get("Error", {})
    metadata = response.get("ResponseMetadata", {})
    status = metadata.get("HTTPStatusCode")
    # The header comes first (DESIGN §1). botocore's JSON 1.1 parser never reads it, so on a
    # client not opened by `open_transfer` (without `_read_error_first`) it corrects a code that
    # botocore left as the bare status.
    code = (
        error_name(header(metadata.get("HTTPHeaders", {}), ERROR_TYPE_HEADER))
        or error_name(details.get("Code"))
        or (str(status) if status is not None else "Unknown")
    )
    return CallbackError(
        code,
        str(details.get("Message", "")),
        http_status=int(status) if status is not None else None,
        retry_after_s=retry_after_seconds(
            response.get("RetryAfterSeconds", details.get("RetryAfterSeconds"))
        ),
        request_id=_request_id(metadata),
    )
