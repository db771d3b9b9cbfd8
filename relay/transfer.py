"""The Transfer Family client: one `send(step)` with the retry policy; nothing about queues.

botocore's own retries are off (they would hide throttling and blow the time budget); tenacity
drives every retry here, by the classification table in `relay.outcomes`.
"""

import contextlib
import json
import os
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ReadTimeoutError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from relay.aws import new_session
from relay.errors import RelayError
from relay.message import StepResult
from relay.outcomes import CONNECTION_ERROR, READ_TIMEOUT, Action, CallFailure, Rule

if TYPE_CHECKING:
    from types_aiobotocore_transfer import TransferClient
else:
    TransferClient = Any


def transfer_config(*, max_pool_connections: int, call_timeout_s: float) -> AioConfig:
    """Retries off (relay owns retrying), a pool as large as the concurrency, short timeouts."""
    return AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=max_pool_connections,
        connect_timeout=min(call_timeout_s, 5.0),
        read_timeout=call_timeout_s,
    )


@contextlib.asynccontextmanager
async def open_transfer(
    session: AioSession | None = None, *, max_pool_connections: int = 64, call_timeout_s: float = 10
) -> AsyncIterator[TransferClient]:
    """An aiobotocore Transfer client (AWS_ENDPOINT_URL_TRANSFER honoured)."""
    session = session or new_session()
    config = transfer_config(
        max_pool_connections=max_pool_connections, call_timeout_s=call_timeout_s
    )
    async with session.create_client("transfer", config=config) as client:
        yield client


_TARGET = "TransferService.SendWorkflowStepState"
_JSON_11 = "application/x-amz-json-1.1"


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
    ) -> None:
        self._url = endpoint_url.rstrip("/") + "/"
        self._region = region
        self._credentials = credentials
        self._http = http
        self._proxy = proxy

    async def send_workflow_step_state(self, **params: str) -> dict[str, Any]:
        """Same arguments, result and errors as the aiobotocore client's method."""
        body = json.dumps(params, separators=(",", ":")).encode()
        frozen = await self._credentials.get_frozen_credentials()
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": _JSON_11, "X-Amz-Target": _TARGET},
        )
        SigV4Auth(frozen, "transfer", self._region).add_auth(request)
        async with self._http.post(
            self._url, data=body, headers=dict(request.headers), proxy=self._proxy
        ) as response:
            payload = await response.read()
            metadata = {
                "HTTPStatusCode": response.status,
                "RequestId": response.headers.get("x-amzn-RequestId", ""),
            }
            if response.status == 200:
                return {"ResponseMetadata": metadata}
            raise _client_error(response.status, response.reason or "", payload, metadata)


def _client_error(
    status: int, reason: str, payload: bytes, metadata: dict[str, Any]
) -> ClientError:
    """The ClientError botocore's JSON 1.1 parser would raise for this answer."""
    try:
        document = json.loads(payload) if payload else {}
    except ValueError:
        document = {}
    if not isinstance(document, dict) or "__type" not in document:
        # Not a service error body (a load balancer's 502): botocore names it by status.
        bare: Any = {
            "Error": {"Code": str(status), "Message": reason},
            "ResponseMetadata": metadata,
        }
        return ClientError(bare, "SendWorkflowStepState")
    code = str(document["__type"]).rsplit("#", 1)[-1]
    message = str(document.get("message", document.get("Message", "")))
    modeled = {k: v for k, v in document.items() if k not in ("__type", "message")}
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": metadata,
        **modeled,
    }
    return ClientError(response, "SendWorkflowStepState")


@contextlib.asynccontextmanager
async def open_lean_transfer(
    session: AioSession | None = None, *, max_pool_connections: int = 64, call_timeout_s: float = 10
) -> AsyncIterator[LeanTransferClient]:
    """A `LeanTransferClient` with the endpoint, region and credentials botocore resolves."""
    session = session or new_session()
    async with open_transfer(
        session, max_pool_connections=1, call_timeout_s=call_timeout_s
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
            )


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
    """One failed `SendWorkflowStepState` attempt, classified by DESIGN §1's table."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        http_status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.http_status = http_status
        self.retry_after_s = retry_after_s
        self.failure = CallFailure(code, message, http_status, retry_after_s)
        self.rule: Rule = self.failure.rule

    @property
    def retryable(self) -> bool:
        """Transient: worth another attempt."""
        return self.rule.action is Action.RETRY


class CallbackFailed(RelayError):
    """Every attempt this receive was allowed has failed; `error` is the last one."""

    def __init__(self, error: CallbackError, attempts: int) -> None:
        super().__init__(f"{error} after {attempts} attempt(s)")
        self.error = error
        self.attempts = attempts


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

    def retrying(self) -> AsyncRetrying:
        """The tenacity controller for one receive's attempts."""
        return AsyncRetrying(
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


class TransferSender:
    """Sends callbacks on one shared client, retrying per the policy."""

    def __init__(
        self, client: "CallbackClient", policy: RetryPolicy, pacer: Pacer | None = None
    ) -> None:
        self.client = client
        self.policy = policy
        self.pacer: Pacer = pacer or NoPacing()
        # Built once; each send copies it (tenacity's own pattern), so its strategies are
        # not rebuilt per message.
        self._retrying = policy.retrying()

    async def send(self, step: StepResult) -> Delivery:
        """Delivers one callback or raises `CallbackFailed` with the last error and attempts."""
        attempts = 0
        try:
            async for attempt in self._retrying.copy():
                with attempt:
                    attempts += 1
                    await self.call(step)
        except CallbackError as error:
            raise CallbackFailed(error, attempts) from None
        return Delivery(attempts=attempts)

    async def call(self, step: StepResult) -> None:
        """One attempt; raises a classified `CallbackError` when it fails."""
        await self.pacer.before_call(step)
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
            error = CallbackError(READ_TIMEOUT, str(exc) or type(exc).__name__)
        except (BotoCoreError, aiohttp.ClientError, OSError) as exc:
            error = CallbackError(CONNECTION_ERROR, f"{type(exc).__name__}: {exc}")
        duration = time.monotonic() - started
        self.pacer.after_call(step, error, duration)
        if error is not None:
            raise error


def _from_client_error(exc: ClientError) -> CallbackError:
    response: Any = exc.response
    details = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    retry_after: float | None = None
    raw = response.get("RetryAfterSeconds", details.get("RetryAfterSeconds"))
    if raw is not None:
        with contextlib.suppress(TypeError, ValueError):
            retry_after = max(0.0, float(raw))
    return CallbackError(
        str(details.get("Code", "Unknown")),
        str(details.get("Message", "")),
        http_status=int(status) if status is not None else None,
        retry_after_s=retry_after,
    )
