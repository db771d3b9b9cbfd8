"""The Transfer Family client: one `send(step)` with the retry policy; nothing about queues.

botocore's own retries are off (they would hide throttling and blow the time budget); tenacity
drives every retry here, by the classification table in `relay.outcomes`.
"""

import asyncio
import contextlib
import functools
import importlib.metadata
import json
import math
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.httpsession import AIOHTTPSession
from aiobotocore.session import AioSession
from aiohttp import ConnectionTimeoutError
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

import relay
from relay.aws import new_session
from relay.awsjson import (
    ERROR_TYPE_HEADER,
    MAX_ERROR_BODY_BYTES,
    WireError,
    error_name,
    header,
    read_error,
    retry_after_seconds,
)
from relay.errors import RelayError
from relay.lifecycle import Shutdown, wait_any
from relay.message import StepResult
from relay.observability import get_logger
from relay.outcomes import CONNECTION_ERROR, READ_TIMEOUT, Action, CallFailure, Rule, classify
from relay.signing import SIGNING_NAME, ClockOffset, ClockSigV4Auth, sign_at_service_time

if TYPE_CHECKING:
    from types_aiobotocore_transfer import TransferClient
else:
    TransferClient = Any

log = get_logger("relay.transfer")


def relay_user_agent() -> str:
    """`relay/<version>`, appended to botocore's User-Agent by both senders (for CloudTrail)."""
    try:
        version = importlib.metadata.version(relay.DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        version = relay.__version__
    return f"relay/{version}"


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


async def read_capped(response: aiohttp.ClientResponse, cap: int = MAX_ERROR_BODY_BYTES) -> bytes:
    """At most `cap` bytes of a response's body (DESIGN §1: what an endpoint controls is bounded).

    With more left unread, the response is closed, so its connection is dropped rather than
    returned to the pool with the rest of a body still arriving on it; read to its end, aiohttp
    hands the connection back as usual.
    """
    body = bytearray()
    try:
        while len(body) <= cap:  # one byte past the cap tells "more" from "exactly the cap"
            chunk = await response.content.read(cap + 1 - len(body))
            if not chunk:
                return bytes(body)
            body += chunk
    except BaseException:
        response.close()  # a half-read body (an error, a timeout, a cancel) is no reusable state
        raise
    response.close()
    return bytes(body[:cap])


class CappedAIOHTTPSession(AIOHTTPSession):
    """aiobotocore's aiohttp transport, reading at most `MAX_ERROR_BODY_BYTES` of a body.

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
        request.stream_output = True
        try:
            response = await super().send(request)
        finally:
            request.stream_output = False
        # The parent maps transport errors to botocore's inside its own read; the same mapping
        # for this one (botocore.httpsession and aiobotocore's send raise these types).
        try:
            response._content = await read_capped(response.raw)
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
) -> AsyncIterator[TransferClient]:
    """An aiobotocore Transfer client (AWS_ENDPOINT_URL_TRANSFER honoured).

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
        events.register(
            f"before-parse.transfer.{_OPERATION}", functools.partial(_read_error_first, clock)
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
                sign_at_service_time, clock, credentials, client.meta.region_name
            ),
        )
        yield client


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


_OPERATION = "SendWorkflowStepState"
_TARGET = f"TransferService.{_OPERATION}"
_JSON_11 = "application/x-amz-json-1.1"
CREDENTIAL_RELOAD_EVERY_S = 30.0
"""The lean sender reads the credential chain again after an identity error at most this often
(the aiobotocore client's refreshable credentials renew themselves before they expire)."""


class LeanTransferClient:
    """`send_workflow_step_state` alone, at a fraction of aiobotocore's CPU per call.

    botocore still does what must be right: the credential chain (refreshing credentials are
    re-read on every call), endpoint resolution (`AWS_ENDPOINT_URL_TRANSFER`, regional, FIPS)
    and the SigV4 signer. Only serialisation, transport (one shared aiohttp session) and error
    parsing are replaced; errors come back as the same `ClientError` shape botocore raises, so
    `TransferSender` cannot tell the two clients apart.
    """

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        credentials: Any,
        http: aiohttp.ClientSession,
        proxy: str | None = None,
        user_agent: str | None = None,
        clock: ClockOffset | None = None,
        reload_credentials: Callable[[], Awaitable[Any]] | None = None,
    ) -> None:
        self.clock = clock or ClockOffset()
        self._reload_credentials = reload_credentials
        self._reloaded_at = -math.inf
        self._url = endpoint_url.rstrip("/") + "/"
        self._region = region
        self._credentials = credentials
        self._http = http
        self._proxy = proxy
        self._headers = {"Content-Type": _JSON_11, "X-Amz-Target": _TARGET}
        if user_agent:
            self._headers["User-Agent"] = user_agent

    async def send_workflow_step_state(self, **params: str) -> dict[str, Any]:
        """Same arguments, result and errors as the aiobotocore client's method."""
        body = json.dumps(params, separators=(",", ":")).encode()
        frozen = await self._credentials.get_frozen_credentials()
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers=dict(self._headers),
        )
        ClockSigV4Auth(frozen, SIGNING_NAME, self._region, clock=self.clock).add_auth(request)
        async with self._http.post(
            self._url, data=body, headers=dict(request.headers), proxy=self._proxy
        ) as response:
            payload = await read_capped(response)
            if response.status == 200:
                metadata = {
                    "HTTPStatusCode": 200,
                    "RequestId": response.headers.get("x-amzn-RequestId", ""),
                }
                return {"ResponseMetadata": metadata}
            error = read_error(response.status, response.headers, payload)
            if not self.clock.learn(error) and classify(error.code).identity:
                await self._reload()
            raise _client_error(error, response)

    async def _reload(self) -> None:
        """The service refused our credentials: read them from the chain again (an expired
        session, a rotated key), at most every `CREDENTIAL_RELOAD_EVERY_S`."""
        now = time.monotonic()
        if self._reload_credentials is None or now - self._reloaded_at < CREDENTIAL_RELOAD_EVERY_S:
            return
        self._reloaded_at = now
        fresh = await self._reload_credentials()
        if fresh is not None:
            self._credentials = fresh


def _client_error(error: WireError, response: aiohttp.ClientResponse) -> ClientError:
    """The ClientError botocore raises, built from DESIGN §1's reading of the answer."""
    metadata = {
        "HTTPStatusCode": error.http_status,
        "RequestId": error.request_id or "",
        "HTTPHeaders": {name.lower(): value for name, value in response.headers.items()},
    }
    # botocore merges the error shape's members into the top level; they must never replace
    # `Error` or `ResponseMetadata` (a body member named `Error` once turned an
    # InvalidRequestException into a throttle).
    parsed: Any = {
        **error.members,
        "Error": {"Code": error.code, "Message": error.message},
        "ResponseMetadata": metadata,
    }
    return ClientError(parsed, _OPERATION)


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
                endpoint_url=endpoint_url,
                region=resolver.meta.region_name,
                credentials=credentials,
                http=http,
                proxy=proxy_for(endpoint_url),
                user_agent=botocore_user_agent(session, resolver),
                clock=clock,
                reload_credentials=session.get_component("credential_provider").load_credentials,
            )


def botocore_user_agent(session: AioSession, client: TransferClient) -> str:
    """The User-Agent botocore builds for this client: SDK, platform, app id, extras.

    The same builder and inputs botocore's client uses (the session's name, version and extra,
    the client's config with its `user_agent_appid` and `user_agent_extra`); only the per-request
    feature ids (`m/...`) of botocore's own calls are absent, since botocore makes none here.
    """
    # The session's creator got the session's name, version and extra when `client` was made.
    creator = session.get_component("user_agent_creator")
    return str(creator.with_client_config(client.meta.config).to_string())


def proxy_for(url: str, env: Mapping[str, str] | None = None) -> str | None:
    """The proxy the environment names for this URL (HTTP(S)_PROXY, NO_PROXY), if any."""
    env = os.environ if env is None else env
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0].rsplit(":", 1)[0].strip("[]")
    no_proxy = env.get("NO_PROXY", env.get("no_proxy", ""))
    for entry in (e.strip().lstrip(".") for e in no_proxy.split(",") if e.strip()):
        if entry == "*" or host == entry or host.endswith("." + entry):
            return None
    key = f"{scheme}_proxy"
    return env.get(key.upper()) or env.get(key) or None


CallbackClient = TransferClient | LeanTransferClient
"""Either client: `TransferSender` needs only `send_workflow_step_state`."""


class CallbackError(RelayError):
    """One failed `SendWorkflowStepState` attempt, classified by DESIGN §1's table.

    `answer_lost`: the request may have reached the service, but its answer never came (a read
    timeout, a connection cut after sending); the service may have answered the step.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
        answer_lost: bool = False,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.answer_lost = answer_lost
        self.failure = CallFailure(code, message, http_status, retry_after_s)
        self.rule: Rule = self.failure.rule

    @property
    def retryable(self) -> bool:
        """Transient: worth another attempt."""
        return self.rule.action is Action.RETRY


class CallbackFailed(RelayError):
    """Every attempt this receive was allowed has failed; `error` is the last one.

    `answer_lost`: some attempt's answer was lost (see `CallbackError`), so the step's outcome
    is unknown. A shutdown that leaves no time for the next attempt ends the series early.
    """

    def __init__(self, error: CallbackError, attempts: int, *, answer_lost: bool = False) -> None:
        super().__init__(f"{error} after {attempts} attempt(s)")
        self.error = error
        self.attempts = attempts
        self.answer_lost = answer_lost or error.answer_lost


class CallNotStarted(RelayError):
    """Shutdown: the first attempt could not finish within what is left of the grace, so none
    was made (DESIGN §3)."""

    def __init__(self) -> None:
        super().__init__("shutdown before the call: no time left for an attempt")


@dataclass(frozen=True, slots=True)
class Delivery:
    """A callback Transfer Family accepted."""

    attempts: int


class Pacer(Protocol):
    """What the sender asks before each call and tells after it (rate limits, metrics)."""

    async def before_call(self, step: StepResult) -> None:
        """Waits until a call may go out."""

    def after_call(self, step: StepResult, error: CallbackError | None, duration_s: float) -> None:
        """Learns how a call went."""


class NoPacing:
    """No limit, no metrics."""

    async def before_call(self, step: StepResult) -> None:
        return None

    def after_call(self, step: StepResult, error: CallbackError | None, duration_s: float) -> None:
        return None


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter, capped, bounded by attempts and a time budget."""

    max_attempts: int
    budget_s: float
    base_s: float
    cap_s: float

    def retrying(self, sleep: Callable[[float], Awaitable[None]] | None = None) -> AsyncRetrying:
        """The tenacity controller for one receive's attempts (`sleep` waits between them)."""
        return AsyncRetrying(
            sleep=sleep or asyncio.sleep,
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.budget_s),
            wait=_honour_retry_after(
                wait_random_exponential(multiplier=self.base_s, max=self.cap_s)
            ),
            retry=retry_if_exception(lambda exc: isinstance(exc, CallbackError) and exc.retryable),
            reraise=True,
        )


class _honour_retry_after:
    """A wait that is never shorter than the last error's RetryAfterSeconds."""

    def __init__(self, fallback: wait_random_exponential) -> None:
        self.fallback = fallback

    def __call__(self, retry_state: RetryCallState) -> float:
        delay = float(self.fallback(retry_state))
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, CallbackError) and error.retry_after_s:
            delay = max(delay, error.retry_after_s)
        return delay


class _Stopped(Exception):
    """Raised out of tenacity's wait: the next attempt could not finish within the grace."""


class TransferSender:
    """Sends callbacks on one shared client, retrying per the policy.

    With a `shutdown`, an attempt starts only if its `call_timeout_s` fits in what is left of
    the grace, and the task is marked settling from the call until the message is finished,
    so a drain never cuts a call on the wire (DESIGN §3).
    """

    def __init__(
        self,
        client: "CallbackClient",
        policy: RetryPolicy,
        pacer: Pacer | None = None,
        *,
        shutdown: Shutdown | None = None,
        call_timeout_s: float = 0.0,
    ) -> None:
        self.client = client
        self.policy = policy
        self.pacer: Pacer = pacer or NoPacing()
        self.shutdown = shutdown
        self.call_timeout_s = call_timeout_s
        # Built once; each send copies it (tenacity's own pattern), so its strategies are
        # not rebuilt per message.
        self._retrying = policy.retrying(self._wait if shutdown is not None else None)

    async def send(self, step: StepResult) -> Delivery:
        """Delivers one callback or raises `CallbackFailed` with the last error and attempts
        (`CallNotStarted` when shutdown left no time for a first attempt)."""
        attempts = 0
        lost = False
        last: CallbackError | None = None
        try:
            async for attempt in self._retrying.copy():
                with attempt:
                    attempts += 1
                    try:
                        await self.call(step)
                    except CallbackError as error:
                        last, lost = error, lost or error.answer_lost
                        raise
        except CallbackError as error:
            raise CallbackFailed(error, attempts, answer_lost=lost) from None
        except _Stopped:
            attempts -= 1  # the attempt tenacity was about to make was not
            if last is None:
                raise CallNotStarted() from None
            raise CallbackFailed(last, attempts, answer_lost=lost) from None
        return Delivery(attempts=attempts)

    async def call(self, step: StepResult) -> None:
        """One attempt; raises a classified `CallbackError` when it fails (`_Stopped` when a
        shutdown leaves no time for it)."""
        await self.pacer.before_call(step)
        if self.shutdown is not None:
            if not self.shutdown.allows(self.call_timeout_s):
                raise _Stopped()
            self.shutdown.settle()  # from here until the message is finished
        started = time.monotonic()
        error: CallbackError | None = None
        try:
            await self.client.send_workflow_step_state(
                WorkflowId=step.workflow_id,
                ExecutionId=step.execution_id,
                Token=step.token,
                Status=step.status.value,
            )
        except ClientError as exc:
            error = _from_client_error(exc)
        except (TimeoutError, ReadTimeoutError) as exc:
            error = CallbackError(
                READ_TIMEOUT, str(exc) or type(exc).__name__, answer_lost=_answer_lost(exc)
            )
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            error = CallbackError(
                CONNECTION_ERROR, f"{type(exc).__name__}: {exc}", answer_lost=_answer_lost(exc)
            )
        duration = time.monotonic() - started
        self.pacer.after_call(step, error, duration)
        if error is not None:
            raise error

    async def _wait(self, delay_s: float) -> None:
        """tenacity's wait between attempts, cut short by a shutdown that leaves no time for
        the next attempt (the task may be cancelled meanwhile: nothing is on the wire)."""
        shutdown = self.shutdown
        assert shutdown is not None
        shutdown.unsettle()
        ends = time.monotonic() + delay_s
        if not shutdown.is_requested:
            await wait_any(shutdown.requested, timeout_s=delay_s)
        if shutdown.is_requested:
            left_s = max(0.0, ends - time.monotonic())
            if not shutdown.allows(left_s + self.call_timeout_s):
                raise _Stopped()
            await asyncio.sleep(left_s)


def _answer_lost(exc: BaseException) -> bool:
    """Whether a transport failure may have come after the request reached the service: only a
    failure to connect proves it did not (so a timeout to connect is not a lost answer)."""
    if isinstance(exc, ConnectTimeoutError | aiohttp.ClientConnectorError | ConnectionTimeoutError):
        return False
    if isinstance(exc, EndpointConnectionError):
        cause = exc.kwargs.get("error")
        return not isinstance(cause, aiohttp.ClientConnectorError | socket.gaierror)
    return True


def _from_client_error(exc: ClientError) -> CallbackError:
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
    )
