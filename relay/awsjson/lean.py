"""One AWS JSON endpoint's calls, lean: botocore's credential chain, endpoint resolution and
SigV4 signer, with serialisation, transport (one shared aiohttp session) and error reading of
its own, at a fraction of aiobotocore's CPU per call.

Both JSON protocols: `awsJson1_1` (Transfer Family) and `awsJson1_0` (DynamoDB) differ only in
the content type. A call answers the parsed body of a 200, or raises `AwsJsonError`: the
service's error read as DESIGN §1 prescribes (`wire`), or a transport failure, with whether the
request may have reached the service (`answer_lost`). aiohttp's exceptions stop here.
"""

import asyncio
import contextlib
import json
import math
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, cast

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    ProxyConnectionError,
    ReadTimeoutError,
    SSLError,
)
from botocore.model import StructureShape

from relay.awsjson.errors import (
    MAX_ERROR_BODY_BYTES,
    MAX_REQUEST_ID_CHARS,
    REQUEST_ID_HEADER,
    WireError,
    json_object,
    read_error,
)
from relay.awsjson.signing import ClockOffset, JsonSigner
from relay.errors import RelayError
from relay.outcomes import CONNECTION_ERROR, IDENTITY_CODES, READ_TIMEOUT

CREDENTIAL_RELOAD_EVERY_S: Final = 30.0
"""The credential chain is read again after an identity error at most this often (botocore's
refreshable credentials renew themselves before they expire; this catches a rotated key)."""


class AwsJsonError(RelayError):
    """A call that did not succeed. `wire` is the service's error answer, if it answered;
    otherwise `code` is `ConnectionError` or `ReadTimeout` and `answer_lost` says whether the
    request may have reached the service (only a failure to connect proves it did not)."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        wire: WireError | None = None,
        answer_lost: bool = False,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.wire = wire
        self.answer_lost = answer_lost
        self.cause = cause
        """The transport's own exception (aiohttp's, a timeout, an OSError), if that failed."""

    @classmethod
    def transport(cls, exc: BaseException) -> "AwsJsonError":
        """A failure of the transport, classified."""
        if isinstance(exc, TimeoutError):
            lost = not isinstance(exc, aiohttp.ConnectionTimeoutError)
            return cls(READ_TIMEOUT, str(exc) or type(exc).__name__, answer_lost=lost, cause=exc)
        lost = not isinstance(exc, aiohttp.ClientConnectorError)
        return cls(CONNECTION_ERROR, f"{type(exc).__name__}: {exc}", answer_lost=lost, cause=exc)


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


class LeanJsonClient:
    """Signed AWS JSON calls to one endpoint on a shared aiohttp session."""

    def __init__(
        self,
        *,
        endpoint_url: str,
        region: str,
        signing_name: str,
        target_prefix: str,
        json_version: str,
        credentials: Any,
        http: aiohttp.ClientSession,
        proxy: str | None = None,
        user_agent: str | None = None,
        clock: ClockOffset | None = None,
        reload_credentials: Callable[[], Awaitable[Any]] | None = None,
        max_answer_bytes: int = MAX_ERROR_BODY_BYTES,
    ) -> None:
        self.clock = clock or ClockOffset()
        self.max_answer_bytes = max_answer_bytes
        self._reload_credentials = reload_credentials
        self._reloaded_at = -math.inf
        self._url = endpoint_url.rstrip("/") + "/"
        self.endpoint_url = endpoint_url
        self.region = region
        self._credentials = credentials
        self._http = http
        self._proxy = proxy
        self._headers = {"Content-Type": f"application/x-amz-json-{json_version}"}
        if user_agent:
            self._headers["User-Agent"] = user_agent
        self._signer = JsonSigner(
            url=self._url, region=region, service=signing_name, clock=self.clock
        )
        self._targets = _Targets(self._headers, target_prefix)

    async def call(self, operation: str, params: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        """One call: the answer's JSON object and its request id, or `AwsJsonError`."""
        body = json.dumps(params, separators=(",", ":")).encode()
        frozen = await self._credentials.get_frozen_credentials()
        headers = self._signer.sign(frozen, self._targets[operation], body)
        try:
            async with self._http.post(
                self._url, data=body, headers=headers, proxy=self._proxy
            ) as response:
                if response.status == 200:
                    payload = await read_capped(response, self.max_answer_bytes)
                    request_id = response.headers.get(REQUEST_ID_HEADER, "")[:MAX_REQUEST_ID_CHARS]
                    return json_object(payload) or {}, request_id
                payload = await read_capped(response)
                error = read_error(response.status, response.headers, payload)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise AwsJsonError.transport(exc) from None
        if not self.clock.learn(error) and error.code in IDENTITY_CODES:
            await self._reload()
        raise AwsJsonError(error.code, error.message, wire=error)

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


class _Targets(dict[str, dict[str, str]]):
    """An operation's unsigned headers, built once per operation."""

    def __init__(self, headers: Mapping[str, str], prefix: str) -> None:
        super().__init__()
        self._base = dict(headers)
        self._prefix = prefix

    def __missing__(self, operation: str) -> dict[str, str]:
        headers = {**self._base, "X-Amz-Target": f"{self._prefix}.{operation}"}
        self[operation] = headers
        return headers


@contextlib.asynccontextmanager
async def open_lean_json(
    session: AioSession,
    service: str,
    *,
    config: AioConfig,
    timeout: aiohttp.ClientTimeout,
    max_pool_connections: int,
    clock: ClockOffset | None = None,
    max_answer_bytes: int = MAX_ERROR_BODY_BYTES,
    endpoint_url: str | None = None,
) -> AsyncIterator[LeanJsonClient]:
    """A `LeanJsonClient` for `service` with the endpoint, region, credentials and User-Agent
    botocore resolves for a client of `config` (`AWS_ENDPOINT_URL_<SERVICE>` honoured, unless
    `endpoint_url` is given); the service's signing name, target prefix and JSON version are
    its botocore model's."""
    async with session.create_client(  # type: ignore[call-overload]
        service, config=config, endpoint_url=endpoint_url
    ) as resolver:
        credentials = await session.get_credentials()
        if credentials is None:
            raise NoCredentialsError()
        # As botocore does: AWS_CA_BUNDLE for a private CA, HTTP(S)_PROXY and NO_PROXY honoured.
        ssl_context = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        connector = aiohttp.TCPConnector(limit=max_pool_connections, ssl=ssl_context)
        endpoint_url = str(resolver.meta.endpoint_url)
        model = resolver.meta.service_model
        # Resolved once here: aiohttp's trust_env would re-read the environment and ~/.netrc
        # in a thread on every request, a fifth of the CPU of a throttled run.
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            yield LeanJsonClient(
                endpoint_url=endpoint_url,
                region=resolver.meta.region_name,
                signing_name=model.signing_name,
                target_prefix=model.metadata["targetPrefix"],
                json_version=model.metadata["jsonVersion"],
                credentials=credentials,
                http=http,
                proxy=proxy_for(endpoint_url),
                user_agent=botocore_user_agent(session, resolver),
                clock=clock,
                reload_credentials=session.get_component("credential_provider").load_credentials,
                max_answer_bytes=max_answer_bytes,
            )


def botocore_user_agent(session: AioSession, client: Any) -> str:
    """The User-Agent botocore builds for this client: SDK, platform, app id, extras.

    The same builder and inputs botocore's client uses (the session's name, version and extra,
    the client's config with its `user_agent_appid` and `user_agent_extra`); only the per-request
    feature ids (`m/...`) of botocore's own calls are absent, since botocore makes none here.
    """
    # The session's creator got the session's name, version and extra when `client` was made.
    creator = session.get_component("user_agent_creator")
    return str(creator.with_client_config(client.meta.config).to_string())


async def modeled_error_members(session: AioSession, service: str) -> dict[str, frozenset[str]]:
    """The members of each error the service models, by code (from botocore's model, which the
    resolving client has loaded already), for `botocore_client_error`."""
    model = await session.get_service_model(service)
    return {
        shape.metadata.get("error", {}).get("code", shape.name): frozenset(
            cast(StructureShape, shape).members
        )
        for shape in model.error_shapes
    }


def botocore_client_error(
    exc: AwsJsonError,
    operation: str,
    url: str,
    modeled: Mapping[str, frozenset[str]] | None = None,
) -> Exception:
    """The exception aiobotocore raises for this failed call: a transport failure's botocore
    exception, or a `ClientError` with the response botocore's JSON parser builds.

    botocore reads the code from the body's `__type` only (undecorated; else the status), then
    the query-compatible code of `x-amzn-query-error` (SQS); the message is the body's `message`
    or `Message`; and for a modeled error, the body's members its shape names (`modeled`, by
    code: a failed condition's `Item`)."""
    wire = exc.wire
    if wire is None:
        return botocore_transport_error(exc.cause, url)
    code = wire.type_member if wire.type_member is not None else str(wire.http_status)
    error: dict[str, Any] = {"Message": wire.message if wire.object_body else "", "Code": code}
    if wire.query_error is not None:
        parts = wire.query_error.split(";")
        if len(parts) == 2 and parts[0]:
            error.update(QueryErrorCode=code, Type=parts[1], Code=parts[0])
    members = (modeled or {}).get(error["Code"], frozenset())
    body = {**wire.members}
    if wire.object_body:
        body |= {name: wire.message for name in ("message", "Message") if name in members}
    response: dict[str, Any] = {
        **{name: value for name, value in body.items() if name in members},
        "Error": error,
        "ResponseMetadata": {
            "RequestId": wire.request_id or "",
            "HTTPStatusCode": wire.http_status,
        },
    }
    return ClientError(response, operation)  # type: ignore[arg-type]


def botocore_transport_error(cause: BaseException | None, url: str) -> Exception:
    """The botocore exception aiobotocore raises for this transport failure (in its order), for
    the lean calls that answer as aiobotocore does (the fleet table, SQS)."""
    if isinstance(cause, aiohttp.ClientSSLError):
        return SSLError(endpoint_url=url, error=cause)
    if isinstance(cause, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return ProxyConnectionError(proxy_url="<proxy>", error=cause)
    if isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientPayloadError
        | aiohttp.http_exceptions.BadStatusLine,
    ):
        return ConnectionClosedError(error=cause, endpoint_url=url)
    if isinstance(cause, aiohttp.ServerTimeoutError):
        if str(cause).lower().startswith("connect"):
            return ConnectTimeoutError(endpoint_url=url, error=cause)
        return ReadTimeoutError(endpoint_url=url, error=cause)
    if isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ClientConnectionError):
        return EndpointConnectionError(endpoint_url=url, error=cause)
    if isinstance(cause, socket.gaierror):
        return EndpointConnectionError(endpoint_url=url, error=cause)
    if isinstance(cause, asyncio.TimeoutError):
        return ReadTimeoutError(endpoint_url=url, error=cause)
    return HTTPClientError(error=cause)


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
