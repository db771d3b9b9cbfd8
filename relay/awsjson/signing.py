"""Signing at the service's time (DESIGN §1 "Clock offset"), for the AWS JSON clients.

botocore signs with this host's clock and has no setting for an offset; the AWS SDKs for Java,
Go and JavaScript learn one from a refused signature's `Date` header. `ClockOffset` is that
learning, `ClockSigV4Auth` botocore's signer stamping the service's time, and
`sign_at_service_time` the hook that re-signs an aiobotocore request with it.

`JsonSigner` signs the lean client's requests: the same SigV4 as botocore's `SigV4Auth`
(`tests/unit/test_awsjson.py` compares the two header for header), for the one request shape an
AWS JSON call has (a POST to the endpoint's path, no query, the body in full), with the signing
key kept per day, region and service as the SDKs do, and the headers built as a plain dict
(botocore's `AWSRequest` keeps them in an `email.message`, which cost a third of a call's CPU).
"""

import datetime
import hashlib
import hmac
import math
import time
from collections.abc import Mapping
from time import monotonic
from typing import Any, Final
from urllib.parse import quote, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import get_current_datetime

from relay.awsjson.errors import WireError
from relay.observability import get_logger

log = get_logger("relay.signing")

# A newly learnt offset this close to the last one is the Date header's whole-second rounding.
_OFFSET_NOISE_S: Final = 1.0
MAX_CLOCK_OFFSET_S: Final = 24 * 3600.0
"""The largest offset applied, either way (DESIGN §1 "Clock offset"). A host clock a day off
is broken beyond what re-signing should paper over; a `Date` header beyond it is an endpoint's
mistake or malice (`Fri, 31 Dec 9999 23:59:59 GMT` once made every later signing overflow)."""
_OUT_OF_BOUNDS_LOG_EVERY_S: Final = 60.0


class ClockOffset:
    """How far the service's clock runs ahead of this host's, learnt from refused signatures.

    DESIGN §1 "Clock offset": when the service refuses a signature as outside its time window,
    its `Date` header says what time it is there; both senders sign later requests at this
    host's time plus `seconds` (what the AWS SDKs for Java, Go and JavaScript do). `seconds`
    is the value of the `relay_clock_offset_seconds` gauge. Logged at WARNING when first learnt
    and whenever it moves by more than a second.

    The offset never leaves ±`MAX_CLOCK_OFFSET_S`: one beyond it is logged at ERROR (at most
    once a minute, however many answers claim it) and not applied, so no answer can make `now()`
    or a signing fail.
    """

    def __init__(self, seconds: float = 0.0) -> None:
        if not math.isfinite(seconds) or abs(seconds) > MAX_CLOCK_OFFSET_S:
            raise ValueError(f"a clock offset is within ±{MAX_CLOCK_OFFSET_S:g} s, not {seconds}")
        self._seconds = float(seconds)
        self._learnt = False
        self._refused_logged_at = -math.inf
        self._refused_since_log = 0

    @property
    def seconds(self) -> float:
        """How many seconds the service's clock runs ahead of this host's (0 until learnt)."""
        return self._seconds

    def now(self) -> datetime.datetime:
        """The service's time as botocore's signer wants it (naive UTC)."""
        return get_current_datetime() + datetime.timedelta(seconds=self._seconds)

    def learn(self, error: WireError, local_time: datetime.datetime | None = None) -> bool:
        """Take the service's time from a clock-skew refusal; True if it was one with a Date
        and the offset it gives is within bounds (and so is applied)."""
        if not error.clock_skewed or error.server_time is None:
            return False
        local = local_time or datetime.datetime.now(datetime.UTC)
        offset = (error.server_time - local).total_seconds()
        if abs(offset) > MAX_CLOCK_OFFSET_S:
            self._refuse(error, offset)
            return False
        previous, self._seconds = self._seconds, offset
        if not self._learnt or abs(offset - previous) > _OFFSET_NOISE_S:
            log.warning(
                "clock offset learnt",
                offset_s=round(offset, 3),
                previous_s=round(previous, 3),
                error_code=error.code,
                service_time=error.server_time.isoformat(),
            )
        self._learnt = True
        return True

    def _refuse(self, error: WireError, offset: float) -> None:
        """Log an out-of-bounds offset at ERROR, once a minute at most (counting the others)."""
        self._refused_since_log += 1
        now = monotonic()
        if now - self._refused_logged_at < _OUT_OF_BOUNDS_LOG_EVERY_S:
            return
        log.error(
            "clock offset out of bounds, not applied",
            offset_s=round(offset, 3),
            bound_s=MAX_CLOCK_OFFSET_S,
            applied_s=round(self._seconds, 3),
            error_code=error.code,
            service_time=error.server_time.isoformat() if error.server_time else None,
            refused=self._refused_since_log,
        )
        self._refused_logged_at = now
        self._refused_since_log = 0


class ClockSigV4Auth(SigV4Auth):
    """botocore's SigV4 signer, stamping requests with the service's time instead of this host's."""

    def __init__(
        self, credentials: Any, service_name: str, region_name: str, *, clock: ClockOffset
    ) -> None:
        super().__init__(credentials, service_name, region_name)
        self._clock = clock

    def _modify_request_before_signing(self, request: AWSRequest) -> None:
        # `add_auth` stamps `context["timestamp"]` with botocore's clock just before calling this
        # hook (which botocore's own S3 signers override too); X-Amz-Date, the credential scope,
        # the string to sign and the signing key are all built from that value afterwards.
        request.context["timestamp"] = self._clock.now().strftime(SIGV4_TIMESTAMP)
        super()._modify_request_before_signing(request)  # type: ignore[misc]  # not in the stubs


async def sign_at_service_time(
    clock: ClockOffset,
    credentials: Any,
    region: str,
    request: AWSRequest,
    *,
    signing_name: str,
    **_: Any,
) -> None:
    """Sign a request again at this host's time plus the learnt offset (none learnt: no-op)."""
    if not clock.seconds or credentials is None or "Authorization" not in request.headers:
        return
    signing = request.context.get("signing", {})
    frozen = await credentials.get_frozen_credentials()
    signer = ClockSigV4Auth(
        frozen,
        signing.get("signing_name", signing_name),
        signing.get("region", region),
        clock=clock,
    )
    signer.add_auth(request)


_ALGORITHM: Final = "AWS4-HMAC-SHA256"
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


class JsonSigner:
    """SigV4 for the POSTs of one AWS JSON endpoint, at the service's time (`clock`)."""

    def __init__(self, *, url: str, region: str, service: str, clock: ClockOffset) -> None:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal, as botocore writes it
        if parts.port is not None and parts.port != _DEFAULT_PORTS.get(parts.scheme):
            host = f"{host}:{parts.port}"
        self.host = host
        self._path = quote(parts.path or "/", safe="/~")
        self._region = region
        self._service = service
        self._clock = clock
        self._key_for: tuple[str, str] | None = None
        self._key = b""

    def sign(self, credentials: Any, headers: Mapping[str, str], body: bytes) -> dict[str, str]:
        """`headers` with X-Amz-Date, X-Amz-Security-Token (for session credentials) and
        Authorization added: every header is signed but User-Agent (as botocore does), and Host,
        which the transport writes from the URL and this signs as `host`."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() + self._clock.seconds))
        day = stamp[:8]
        signed = dict(headers)
        signed["X-Amz-Date"] = stamp
        if credentials.token:
            signed["X-Amz-Security-Token"] = credentials.token
        canonical = {"host": self.host}
        for name, value in signed.items():
            lowered = name.lower()
            if lowered != "user-agent":
                canonical[lowered] = " ".join(value.split())
        names = sorted(canonical)
        signed_names = ";".join(names)
        request = "\n".join(
            (
                "POST",
                self._path,
                "",
                *(f"{name}:{canonical[name]}" for name in names),
                "",
                signed_names,
                hashlib.sha256(body).hexdigest(),
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = "\n".join(
            (_ALGORITHM, stamp, scope, hashlib.sha256(request.encode()).hexdigest())
        )
        signature = hmac.new(
            self._signing_key(day, credentials.secret_key), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        signed["Authorization"] = (
            f"{_ALGORITHM} Credential={credentials.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return signed

    def _signing_key(self, day: str, secret_key: str) -> bytes:
        """The day's signing key, derived once per day (and per secret key)."""
        if self._key_for != (day, secret_key):
            key = _hmac(f"AWS4{secret_key}".encode(), day)
            for part in (self._region, self._service, "aws4_request"):
                key = _hmac(key, part)
            self._key, self._key_for = key, (day, secret_key)
        return self._key


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
