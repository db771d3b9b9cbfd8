"""The wire protocol of the emulated operations: JSON 1.1 requests, field rules, error bodies.

Everything here is pure (bytes and header values in, values out) so the request
path stays cheap and each rule is testable without a server.

How botocore reads what this module writes (botocore/parsers.py, `BaseJSONParser._do_error_parse`,
then botocore/endpoint.py `_add_modeled_error_fields`):

- `e.response["Error"]["Code"]` comes from the body's `__type`, cut after the last `#`
  (so `com.amazon.coral.service#UnknownOperationException` reads as `UnknownOperationException`);
  the `x-amzn-ErrorType` header is read only by the REST-JSON parser, not by the JSON 1.1 one.
- `e.response["Error"]["Message"]` comes from the body's `message`, else `Message`.
- The members of a modeled error shape are parsed from the same body and merged into the top
  level of the response: `e.response["RetryAfterSeconds"]`, `e.response["Resource"]`,
  `e.response["ResourceType"]`, `e.response["Message"]` — not under `e.response["Error"]`.
- A 5xx whose body is empty or starts with `<html>` is a "generic" error: Code is the HTTP
  status as a string (`"502"`), Message its reason phrase.

The JSON 1.1 protocol allows more than Transfer Family's own form, and the Smithy protocol tests
require clients to read all of it (the error type in the `X-Amzn-Errortype` header, or the body's
`code` or `__type`, bare, namespaced or with a Coral URI; the message as `message` or `Message`).
`ErrorForm` picks one per fault setting, so relay's senders are tested against every form rather
than against the one their author also wrote (see /work/notes/smithy_awsjson11_errors.md).
"""

import email.utils
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final

JSON_CONTENT_TYPE: Final = "application/x-amz-json-1.1"
TARGET_PREFIX: Final = "TransferService."
SEND: Final = "SendWorkflowStepState"
LIST: Final = "ListExecutions"
DESCRIBE: Final = "DescribeExecution"
OPERATIONS: Final = (SEND, LIST, DESCRIBE)
"""The operations the emulator serves; any other target is an unknown operation."""
SIGNING_NAME: Final = "transfer"

# Framework-level rejections (before the operation runs) carry the Coral namespace on real AWS
# JSON services; modeled errors of the operation carry their bare shape name.
_CORAL: Final = "com.amazon.coral.service#"
TRANSFER_NAMESPACE: Final = "com.amazonaws.transfer#"
"""The namespace of Transfer Family's modeled shapes, as a namespaced error type shows it."""
CORAL_URI: Final = ":http://internal.amazon.com/coral/com.amazon.coral.validate/"
"""The suffix some Coral services append to an error type (Smithy's `...WithUri` cases)."""
ERROR_TYPE_HEADER: Final = "X-Amzn-Errortype"


class ErrorForm(StrEnum):
    """Where and how an error answer names its type; the value is the fault setting's JSON."""

    TYPE = "__type"
    """`{"__type": "ThrottlingException", "Message": ...}`: what Transfer Family sends."""
    TYPE_NAMESPACED = "__type_namespaced"
    """`__type` as `com.amazonaws.transfer#ThrottlingException`."""
    TYPE_URI = "__type_uri"
    """`__type` namespaced, with the `:http://internal.amazon.com/coral/...` suffix."""
    CODE = "code"
    """The body's `code` member instead of `__type` (as S3 Glacier does)."""
    CODE_URI = "code_uri"
    """`code` namespaced, with the Coral URI suffix."""
    HEADER = "header"
    """Only the `X-Amzn-Errortype` header names the type; the body carries none."""
    HEADER_URI = "header_uri"
    """The header, namespaced, with the Coral URI suffix (as Amazon Polly does)."""
    LOWER_MESSAGE = "lower_message"
    """`__type` with the message as lower-case `message`."""
    TYPE_WITH_DECOYS = "__type_decoys"
    """`__type`, plus unrelated `Code` and `Error` members naming a throttle, which never win."""


class GatewayBody(StrEnum):
    """What a gateway in front of the service answers with; the value is the setting's JSON."""

    HTML = "html"
    EMPTY = "empty"


SUCCESS_BODY: Final = b"{}"
"""botocore parses `{}` into an empty result; an empty body parses too, `{}` is what AWS sends."""

_GATEWAY_TITLES: Final = {
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def gateway_page(http_status: int) -> bytes:
    """The HTML page a load balancer answers with for this status (nginx's, as ELB sends)."""
    title = _GATEWAY_TITLES.get(http_status, str(http_status)).encode()
    return (
        b"<html>\r\n<head><title>" + title + b"</title></head>\r\n"
        b"<body>\r\n<center><h1>" + title + b"</h1></center>\r\n</body>\r\n</html>\r\n"
    )


BAD_GATEWAY_BODY: Final = gateway_page(502)
"""What a load balancer in front of the service answers: HTML, no request id, no error code."""

_VALUE_SHOWN_CHARS: Final = 64
_NO_LIMIT: Final = 2**31


@dataclass(frozen=True, kw_only=True, slots=True)
class ServiceError:
    """An error answer in JSON 1.1 form: `__type`, `Message`, and the shape's other members."""

    code: str
    message: str
    http_status: int = 400
    members: Mapping[str, str] = field(default_factory=dict)
    namespace: str = ""

    def encode(self) -> bytes:
        """Render the JSON 1.1 error body in Transfer Family's own form."""
        return self.render(ErrorForm.TYPE)[1]

    def render(self, form: ErrorForm) -> tuple[dict[str, str], bytes]:
        """The extra headers and the body of this error written in the given form."""
        # The service's own decoration (bare, or Coral's namespace for framework errors) in the
        # plain forms; the shape's full name, and the Coral URI, in the decorated ones.
        plain = self.namespace + self.code
        qualified = (self.namespace or TRANSFER_NAMESPACE) + self.code
        body: dict[str, object] = {}
        headers: dict[str, str] = {}
        match form:
            case ErrorForm.TYPE | ErrorForm.LOWER_MESSAGE:
                body["__type"] = plain
            case ErrorForm.TYPE_WITH_DECOYS:
                body["__type"] = plain
                body["Code"] = "ThrottlingException"
                body["Error"] = {"Code": "ThrottlingException", "Message": "decoy"}
            case ErrorForm.TYPE_NAMESPACED:
                body["__type"] = qualified
            case ErrorForm.TYPE_URI:
                body["__type"] = qualified + CORAL_URI
            case ErrorForm.CODE:
                body["code"] = plain
            case ErrorForm.CODE_URI:
                body["code"] = qualified + CORAL_URI
            case ErrorForm.HEADER:
                headers[ERROR_TYPE_HEADER] = plain
            case ErrorForm.HEADER_URI:
                headers[ERROR_TYPE_HEADER] = qualified + CORAL_URI
        body["message" if form is ErrorForm.LOWER_MESSAGE else "Message"] = self.message
        body.update(self.members)
        return headers, json.dumps(body, separators=(",", ":")).encode()


@dataclass(frozen=True, kw_only=True, slots=True)
class GatewayError:
    """A bare HTTP error from in front of the service, with a non-JSON body."""

    http_status: int = 502
    body: bytes = BAD_GATEWAY_BODY

    @property
    def code(self) -> str:
        """The code botocore reports for it: the HTTP status as a string."""
        return str(self.http_status)


Answer = ServiceError | GatewayError | None
"""What the emulator answers a call with; None is success."""


@dataclass(frozen=True, kw_only=True, slots=True)
class CallFields:
    """The four request fields as they arrived (None where missing), before the service's rules."""

    workflow_id: str | None = None
    execution_id: str | None = None
    token: str | None = None
    status: str | None = None


NO_FIELDS: Final = CallFields()


@dataclass(frozen=True, kw_only=True, slots=True)
class StepCall:
    """A `SendWorkflowStepState` request whose four fields passed the service's rules."""

    workflow_id: str
    execution_id: str
    token: str
    status: str


def check_protocol(
    *,
    content_type: str,
    target: str | None,
    authorization: str | None,
    amz_date: str | None,
) -> ServiceError | None:
    """Reject a request the service would not route to an operation it serves, or None to go on
    (`operation_of(target)` then names the operation)."""
    # Real AWS JSON services pick the protocol from the content type before they can read the
    # target at all, so a wrong content type surfaces as an unknown operation (Kinesis answers
    # `<UnknownOperationException/>` to application/octet-stream). We answer it in JSON so
    # clients can parse it. All of these are HTTP 400 on Coral JSON services.
    if content_type != JSON_CONTENT_TYPE:
        return ServiceError(
            code="UnknownOperationException",
            message=f"Unsupported Content-Type {content_type!r}; expected {JSON_CONTENT_TYPE}",
            namespace=_CORAL,
        )
    if operation_of(target) is None:
        return ServiceError(
            code="UnknownOperationException",
            message=f"Unknown operation {target!r}" if target else "Missing X-Amz-Target header",
            namespace=_CORAL,
        )
    return check_authorization(authorization, amz_date)


def operation_of(target: str | None) -> str | None:
    """The operation an `X-Amz-Target` names, if the emulator serves it."""
    if target is None or not target.startswith(TARGET_PREFIX):
        return None
    operation = target.removeprefix(TARGET_PREFIX)
    return operation if operation in OPERATIONS else None


def check_authorization(authorization: str | None, amz_date: str | None) -> ServiceError | None:
    """Check that a SigV4 Authorization header is present and scoped to `transfer`.

    The signature itself cannot be verified (no secret), only its presence and scope.
    Codes and statuses are those of Coral JSON services: DynamoDB answers an unsigned request
    with HTTP 400 `MissingAuthenticationTokenException` "Request is missing Authentication Token"
    (the HTTP 403 of the same name belongs to API Gateway and the Query APIs); a malformed header
    is HTTP 400 `IncompleteSignatureException`; a credential scoped to another service is
    HTTP 400 `InvalidSignatureException` "Credential should be scoped to correct service: 'x'. "
    (as seen from EMR, SageMaker and Batch).
    """
    if not authorization:
        return ServiceError(
            code="MissingAuthenticationTokenException",
            message="Request is missing Authentication Token",
            namespace=_CORAL,
        )
    algorithm, _, params_text = authorization.partition(" ")
    params: dict[str, str] = {}
    for part in params_text.split(","):
        name, sep, value = part.strip().partition("=")
        if sep:
            params[name] = value
    problems = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not params.get(name)
    ]
    if not amz_date:
        problems.append(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
        )
    if algorithm != "AWS4-HMAC-SHA256":
        problems.insert(0, f"Unsupported AWS authentication algorithm {algorithm!r}.")
    if problems:
        return ServiceError(
            code="IncompleteSignatureException",
            message=" ".join(problems),
            namespace=_CORAL,
        )
    # Credential=AKID/yyyymmdd/region/service/aws4_request
    scope = params["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request":
        return ServiceError(
            code="IncompleteSignatureException",
            message="Credential must have exactly 5 slash-delimited elements, "
            "e.g. keyid/date/region/service/term",
            namespace=_CORAL,
        )
    if scope[3] != SIGNING_NAME:
        return ServiceError(
            code="InvalidSignatureException",
            message=f"Credential should be scoped to correct service: '{SIGNING_NAME}'. ",
            namespace=_CORAL,
        )
    return None


SIGNING_WINDOW: Final = timedelta(minutes=5)
"""How far a request's signing time may be from the service's clock, either way (SigV4)."""
_AMZ_DATE: Final = "%Y%m%dT%H%M%SZ"


def check_signing_time(amz_date: str, now: datetime) -> ServiceError | None:
    """Refuse a request signed outside the service's 5-minute window, in AWS's own words.

    `amz_date` is the X-Amz-Date (or Date) header, `now` the service's clock (aware, UTC).
    The messages are those AWS JSON services answer, e.g. "Signature expired: 20261129T120000Z
    is now earlier than 20261129T121500Z (20261129T122000Z - 5 min.)".
    """
    signed_at = _signing_time(amz_date)
    if signed_at is None:
        return ServiceError(
            code="IncompleteSignatureException",
            message=f"Date must be in ISO-8601 'basic format'. Got '{amz_date}'. "
            "See http://en.wikipedia.org/wiki/ISO_8601",
            namespace=_CORAL,
        )
    now = now.replace(microsecond=0)
    if signed_at < now - SIGNING_WINDOW:
        return ServiceError(
            code="InvalidSignatureException",
            message=f"Signature expired: {_basic(signed_at)} is now earlier than "
            f"{_basic(now - SIGNING_WINDOW)} ({_basic(now)} - 5 min.)",
            namespace=_CORAL,
        )
    if signed_at > now + SIGNING_WINDOW:
        return ServiceError(
            code="InvalidSignatureException",
            message=f"Signature not yet current: {_basic(signed_at)} is still later than "
            f"{_basic(now + SIGNING_WINDOW)} ({_basic(now)} + 5 min.)",
            namespace=_CORAL,
        )
    return None


def http_date(now: datetime) -> str:
    """The `Date` header for this time (RFC 7231 IMF-fixdate), as every AWS answer carries."""
    return email.utils.format_datetime(now.astimezone(UTC), usegmt=True)


def _signing_time(value: str) -> datetime | None:
    try:
        return datetime.strptime(value, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        pass
    try:  # a Date header in place of X-Amz-Date, as SigV4 allows
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _basic(moment: datetime) -> str:
    return moment.strftime(_AMZ_DATE)


def decode_call(body: bytes) -> CallFields | ServiceError:
    """Read the four fields from a JSON 1.1 body; a body that is not a JSON object is rejected."""
    try:
        document = json.loads(body) if body else {}
    except (UnicodeDecodeError, ValueError):
        return ServiceError(code="SerializationException", message="Request body is not valid JSON")
    if not isinstance(document, dict):
        return ServiceError(
            code="SerializationException", message="Request body must be a JSON object"
        )
    values: dict[str, str | None] = {}
    for rule in FIELD_RULES:
        value = document.get(rule.name)
        if value is not None and not isinstance(value, str):
            # Coral fails to deserialize a mistyped member before any constraint is checked.
            return ServiceError(
                code="SerializationException",
                message=f"Expected a string for '{rule.name}', got {type(value).__name__}",
            )
        values[rule.attribute] = value
    return CallFields(**values)


@dataclass(frozen=True, kw_only=True, slots=True)
class FieldRule:
    """One request field's constraints as the service model states them (all full-match)."""

    name: str
    attribute: str
    min_length: int
    max_length: int
    pattern: re.Pattern[str]
    constraint: str
    show_value: bool = True

    def violation(self, value: str | None) -> str | None:
        """Say how a value breaks this rule, in the service's words, or None if it keeps it."""
        if value is None:
            return (
                f"Value null at '{self.name}' failed to satisfy constraint: Member must not be null"
            )
        shown = (
            f"Value '{value[:_VALUE_SHOWN_CHARS]}' at" if self.show_value else "Value at"
        ) + f" '{self.name}' failed to satisfy constraint:"
        if len(value) < self.min_length:
            return f"{shown} Member must have length greater than or equal to {self.min_length}"
        if len(value) > self.max_length:
            return f"{shown} Member must have length less than or equal to {self.max_length}"
        if self.pattern.fullmatch(value) is None:
            return f"{shown} {self.constraint}"
        return None


FIELD_RULES: Final = (
    FieldRule(
        name="WorkflowId",
        attribute="workflow_id",
        min_length=19,
        max_length=19,
        pattern=re.compile(r"w-[a-z0-9]{17}"),
        constraint="Member must satisfy regular expression pattern: w-([a-z0-9]{17})",
    ),
    FieldRule(
        name="ExecutionId",
        attribute="execution_id",
        min_length=36,
        max_length=36,
        pattern=re.compile(
            r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
        ),
        constraint="Member must satisfy regular expression pattern: "
        r"[0-9a-fA-F]{8}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{4}\-[0-9a-fA-F]{12}",
    ),
    FieldRule(
        name="Token",
        attribute="token",
        min_length=1,
        max_length=64,
        # The model says `\w+`; the service is Java, whose `\w` is ASCII-only.
        pattern=re.compile(r"[A-Za-z0-9_]+"),
        constraint=r"Member must satisfy regular expression pattern: \w+",
        # Callback tokens are secrets of a kind; the answer must not echo them into logs.
        show_value=False,
    ),
    FieldRule(
        name="Status",
        attribute="status",
        # An enum has no length constraint of its own; only the value set is checked.
        min_length=0,
        max_length=_NO_LIMIT,
        pattern=re.compile(r"SUCCESS|FAILURE"),
        constraint="Member must satisfy enum value set: [SUCCESS, FAILURE]",
    ),
)


def validate_call(fields: CallFields) -> StepCall | ServiceError:
    """Apply the service's four field rules; the error names every field that broke one."""
    violations = [
        problem
        for rule in FIELD_RULES
        if (problem := rule.violation(getattr(fields, rule.attribute))) is not None
    ]
    if violations:
        count = len(violations)
        noun = "error" if count == 1 else "errors"
        return ServiceError(
            code="InvalidRequestException",
            message=f"{count} validation {noun} detected: " + "; ".join(violations),
        )
    # Every field is a string once no rule is broken (a None breaks "must not be null").
    return StepCall(
        workflow_id=fields.workflow_id or "",
        execution_id=fields.execution_id or "",
        token=fields.token or "",
        status=fields.status or "",
    )
