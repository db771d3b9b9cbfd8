"""Reading an AWS JSON 1.1 error answer (DESIGN §1 "Reading an error"): status, headers, body in.

Pure: no I/O, no aiohttp, no botocore. Both Transfer Family senders read errors here, so they
cannot disagree. The rules are those of the Smithy awsJson1_1 protocol tests
(`smithy-aws-protocol-tests/model/awsJson1_1/errors.smithy`):

- the error type travels in the `X-Amzn-Errortype` header, else the body's `code`, else its
  `__type` (top level only: a nested `__type` belongs to some detail shape);
- it may be decorated: `com.amazonaws.transfer#ThrottlingException:http://internal.amazon.com/…`
  is `ThrottlingException` (cut at the first `:`, then keep what follows the last `#`);
- the message is the body's `message`, else `Message`;
- a body that is not a JSON object (a gateway's HTML page, an empty body) leaves only the status,
  which then is the code, as botocore names its "generic" errors.

What the endpoint sends is bounded (DESIGN §1 "What an endpoint controls is bounded"): no header
value or body makes `read_error` raise, the senders read at most `MAX_ERROR_BODY_BYTES` of a body
(a truncated body is not JSON, so it leaves only the status), and the request id kept is cut to
`MAX_REQUEST_ID_CHARS`.

botocore's JSON 1.1 parser reads only `__type`: the aiobotocore sender hands it this reading
(`relay.transfer`), so both see every form.
"""

import email.utils
import http.client
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

ERROR_TYPE_HEADER: Final = "X-Amzn-Errortype"
REQUEST_ID_HEADER: Final = "X-Amzn-RequestId"

MAX_ERROR_BODY_BYTES: Final = 64 * 1024
"""The most of an answer's body either sender reads; an endpoint decides how much it sends."""
MAX_REQUEST_ID_CHARS: Final = 256
"""The most of an `X-Amzn-RequestId` header kept (a real one is a 36-character UUID)."""

# Members that name the error or carry its message: never modeled members of the error shape.
_PROTOCOL_MEMBERS: Final = frozenset({"__type", "code", "message", "Message"})

CLOCK_SKEW_CODES: Final = frozenset({"RequestExpired", "RequestTimeTooSkewed"})
"""Codes that always mean "your request's time is outside the service's window"."""

_SIGNATURE_CODES: Final = frozenset({"InvalidSignatureException", "SignatureDoesNotMatch"})
# How SigV4 services word a time-window refusal (both directions of skew).
_SIGNATURE_TIME_PREFIXES: Final = ("Signature expired", "Signature not yet current")


@dataclass(frozen=True, kw_only=True, slots=True)
class WireError:
    """One error answer as the protocol means it.

    `typed` says whether the answer named an error type; when it did not, `code` is the status
    as a string. `object_body` says whether the body was a JSON object at all; `members` are its
    other top-level members (the error shape's fields, such as `Resource`); `server_time` is the
    answer's `Date` header as an aware UTC datetime.
    """

    code: str
    message: str
    http_status: int
    typed: bool
    object_body: bool = False
    retry_after_s: float | None = None
    request_id: str | None = None
    server_time: datetime | None = None
    members: Mapping[str, Any] = field(default_factory=dict)
    type_member: str | None = None
    """The body's top-level `__type`, undecorated: the one place botocore's JSON parser reads
    the code from (SQS's lean calls answer as botocore does)."""
    query_error: str | None = None
    """The `x-amzn-query-error` header (`Code;Sender`): the code SQS had in its query protocol."""

    @property
    def clock_skewed(self) -> bool:
        """The service refused the request's signing time as outside its window."""
        if self.code in CLOCK_SKEW_CODES:
            return True
        return self.code in _SIGNATURE_CODES and self.message.startswith(_SIGNATURE_TIME_PREFIXES)


def read_error(status: int, headers: Mapping[str, str], body: bytes) -> WireError:
    """The error an answer carries, read as JSON 1.1 prescribes (see the module docstring)."""
    document = json_object(body)
    raw_code = header(headers, ERROR_TYPE_HEADER)
    code = error_name(raw_code) if raw_code is not None else ""
    if not code and document is not None:
        code = error_name(document.get("code")) or error_name(document.get("__type"))
    message = _message(document)
    if message is None:
        message = "" if code else http.client.responses.get(status, "")
    members = (
        {k: v for k, v in document.items() if k not in _PROTOCOL_MEMBERS}
        if document is not None
        else {}
    )
    return WireError(
        code=code or str(status),
        message=message,
        http_status=status,
        typed=bool(code),
        object_body=document is not None,
        retry_after_s=retry_after_seconds(members.get("RetryAfterSeconds")),
        request_id=_request_id(header(headers, REQUEST_ID_HEADER)),
        server_time=http_date(header(headers, "Date")),
        members=members,
        type_member=(
            error_name(document["__type"])
            if document is not None and isinstance(document.get("__type"), str)
            else None
        ),
        query_error=header(headers, "x-amzn-query-error"),
    )


def error_name(raw: object) -> str:
    """The bare error name in a decorated type string ("" for anything that names none)."""
    if not isinstance(raw, str):
        return ""
    return raw.split(":", 1)[0].rsplit("#", 1)[-1].strip()


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value, the name matched case-insensitively (any mapping will do)."""
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    for key, found in headers.items():
        if key.lower() == wanted:
            return found
    return None


def retry_after_seconds(raw: object) -> float | None:
    """`RetryAfterSeconds` as seconds: a string or a number, finite and >= 0, else None."""
    if isinstance(raw, bool) or not isinstance(raw, str | int | float):
        return None
    try:
        seconds = float(raw)
    except (ValueError, OverflowError):  # OverflowError: an integer beyond any float
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def http_date(value: str | None) -> datetime | None:
    """An HTTP `Date` header (RFC 7231, or the obsolete forms) as an aware UTC datetime.

    None unless it names a time a datetime can hold in UTC: `Fri, 31 Dec 9999 23:59:59 -1200`
    parses, but is past the last representable instant once moved to UTC.
    """
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
        if parsed.tzinfo is None:  # "-0000" means UTC with no promise; HTTP dates are UTC.
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _request_id(value: str | None) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value[:MAX_REQUEST_ID_CHARS]


def json_object(body: bytes) -> dict[str, Any] | None:
    """The body as a JSON object, or None (empty, not JSON, or not an object)."""
    if not body:
        return None
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return document if isinstance(document, dict) else None


def _message(document: Mapping[str, Any] | None) -> str | None:
    if document is None:
        return None
    for key in ("message", "Message"):
        value = document.get(key)
        if isinstance(value, str):
            return value
    return None
