"""The message contract (DESIGN §1-2): a raw SQS body in, an immutable `StepResult` out.

Three input shapes are accepted and normalised to the four fields of the callback:

1. canonical ``{"WorkflowId", "ExecutionId", "Token", "Status"}``;
2. the custom-step event Transfer Family hands the step, plus ``status``;
3. an SNS notification envelope whose ``Message`` is a JSON string of shape 1 or 2.

Anything else raises `InvalidMessage`, which names the field (as a path in the input, so a
producer can find it) and the rule it broke. No other exception escapes `parse`.

A key relay reads that appears twice in one object (`"Status": "FAILURE", "Status": "SUCCESS"`)
is refused: JSON readers disagree on which one wins, so the step processor and relay could
read different results from one message.
"""

import collections
import hashlib
import json
import random
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from relay.errors import RelayError

# Full-match patterns, ASCII only: Python's `\w` would admit Unicode letters.
WORKFLOW_ID_RULE: Final = "w-[a-z0-9]{17}"
EXECUTION_ID_RULE: Final = (
    "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
TOKEN_RULE: Final = "[A-Za-z0-9_]{1,64}"

StepKey = tuple[str, str, str]
"""(workflow id, execution id, token): the waiting step a result answers."""

_WORKFLOW_ID = re.compile(WORKFLOW_ID_RULE)
_EXECUTION_ID = re.compile(EXECUTION_ID_RULE)
_TOKEN = re.compile(TOKEN_RULE)

_EVENT_PATH: Final = ("serviceMetadata", "executionDetails")
_MISSING: Final = object()

_READ_KEYS: Final = (
    "Type",
    "Message",
    "WorkflowId",
    "ExecutionId",
    "Token",
    "Status",
    "token",
    "status",
    "serviceMetadata",
    "executionDetails",
    "workflowId",
    "executionId",
)
"""Every key relay reads, in any shape: one of them twice in an object relay reads is refused.
A repeated key it ignores is ignored, like the key (and never named: errors repeat no input)."""


class Status(StrEnum):
    """The two answers a custom step can get."""

    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


class InvalidMessage(RelayError, ValueError):
    """A body that is not a valid step result; names the field and the rule it broke."""

    def __init__(self, field: str, rule: str) -> None:
        super().__init__(f"{field}: {rule}")
        self.field = field
        self.rule = rule


@dataclass(frozen=True, slots=True)
class StepResult:
    """One callback to send: the four fields of `SendWorkflowStepState`."""

    workflow_id: str
    execution_id: str
    token: str
    status: Status

    def __post_init__(self) -> None:
        _check("WorkflowId", self.workflow_id, _WORKFLOW_ID, WORKFLOW_ID_RULE)
        _check("ExecutionId", self.execution_id, _EXECUTION_ID, EXECUTION_ID_RULE)
        _check("Token", self.token, _TOKEN, TOKEN_RULE)
        if not isinstance(self.status, Status):
            # Accept the plain strings too, but store the enum.
            object.__setattr__(self, "status", _status("Status", self.status))

    @property
    def step_key(self) -> StepKey:
        """The waiting step this result answers, whatever its status."""
        return (self.workflow_id, self.execution_id, self.token)

    @property
    def short_token(self) -> str:
        """The token shortened for logs: callback tokens are never logged whole."""
        return short_token(self.token)

    def to_request(self) -> dict[str, str]:
        """Keyword arguments for `send_workflow_step_state`."""
        return {
            "WorkflowId": self.workflow_id,
            "ExecutionId": self.execution_id,
            "Token": self.token,
            "Status": self.status.value,
        }

    def to_body(self) -> str:
        """The canonical message body (shape 1)."""
        return json.dumps(self.to_request(), separators=(",", ":"))

    def dedup_id(self) -> str:
        """A stable hash of the four fields (FIFO deduplication ids)."""
        return hashlib.sha256(self.to_body().encode()).hexdigest()

    @classmethod
    def from_event(cls, event: Mapping[str, Any], status: Status | str) -> "StepResult":
        """Builds a result from the custom-step event Transfer Family hands the step."""
        return _from_event(dict(event), _status("status", status), prefix="")


def short_token(token: str) -> str:
    """The first 6 characters and the length: enough to correlate, useless to replay."""
    if len(token) <= 2:
        # Any character or digit shown could be the whole token (the token "1" is its length).
        return "…"
    if len(token) <= 8:
        return f"{token[:2]}…({len(token)})"
    return f"{token[:6]}…({len(token)})"


def parse(body: str | bytes) -> StepResult:
    """Parses a raw SQS message body into a `StepResult` or raises `InvalidMessage`."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage("body", f"not UTF-8 (byte {exc.start})") from None
    document = _load_object(body, "body")
    _unique(document, "")
    if document.get("Type") == "Notification" and (
        "Message" in document or not _has_step_fields(document)
    ):
        # An envelope without its Message is reported as that, not as a missing WorkflowId.
        inner = _required(document, "Message", "")
        if not isinstance(inner, str):
            raise InvalidMessage("Message", "SNS Message must be a JSON string")
        message = _load_object(inner, "Message")
        _unique(message, "Message.")
        return _from_document(message, prefix="Message.")
    return _from_document(document, prefix="")


def step_or_none(body: str | bytes) -> StepResult | None:
    """The step result a body carries, or None when it is not one."""
    try:
        return parse(body)
    except InvalidMessage:
        return None


# --- writing the other two shapes (producers, the demo, the tests) ----------------------------


def event_body(step: StepResult) -> str:
    """Shape 2: the event Transfer Family hands a custom step, forwarded with a status."""
    return json.dumps(
        {
            "token": step.token,
            "serviceMetadata": {
                "executionDetails": {
                    "workflowId": step.workflow_id,
                    "executionId": step.execution_id,
                },
                "transferDetails": {
                    "sessionId": step.execution_id.replace("-", "")[:16],
                    "userName": "partner-upload",
                    "serverId": "s-" + step.workflow_id[2:19],
                },
            },
            "fileLocation": {
                "domain": "S3",
                "bucket": "incoming-files",
                "key": f"partner-upload/{step.execution_id[:8]}.csv",
            },
            "status": step.status.value,
        }
    )


def sns_body(inner: str, rng: random.Random | None = None, region: str = "us-east-1") -> str:
    """Shape 3: an SNS notification envelope, as SNS delivers without raw message delivery."""
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": str(uuid.UUID(int=(rng or random).getrandbits(128), version=4)),
            "TopicArn": f"arn:aws:sns:{region}:123456789012:step-results",
            "Message": inner,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
        }
    )


class _Repeating(dict[str, Any]):
    """A JSON object in which some keys appeared more than once (the last value is kept)."""

    repeated: frozenset[str] = frozenset()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) == len(pairs):
        return document  # the usual case, at C speed
    counts = collections.Counter(key for key, _ in pairs)
    repeating = _Repeating(document)
    repeating.repeated = frozenset(key for key, n in counts.items() if n > 1)
    return repeating


def _unique(document: dict[str, Any], prefix: str) -> None:
    """Refuses an object relay reads that repeats a key relay reads."""
    if isinstance(document, _Repeating):
        for key in _READ_KEYS:
            if key in document.repeated:
                raise InvalidMessage(prefix + key, "duplicate key")


def _load_object(text: str, field: str) -> dict[str, Any]:
    try:
        document = json.loads(text, object_pairs_hook=_object)
    except (ValueError, RecursionError):
        # ValueError covers JSONDecodeError and integers past the digit limit.
        raise InvalidMessage(field, "not valid JSON") from None
    if not isinstance(document, dict):
        raise InvalidMessage(field, f"must be a JSON object, not {_json_type(document)}")
    return document


def _has_step_fields(document: dict[str, Any]) -> bool:
    keys = ("WorkflowId", "ExecutionId", "Token", "Status", "serviceMetadata", "token")
    return any(key in document for key in keys)


def _from_document(document: dict[str, Any], prefix: str) -> StepResult:
    canonical = ("WorkflowId", "ExecutionId", "Token", "Status")
    if any(key in document for key in canonical) or not (
        "serviceMetadata" in document or "token" in document
    ):
        # Each field checked in turn (presence, type, rule), so the first bad one is named.
        values = [document.get(key, _MISSING) for key in canonical]
        return _build(prefix, canonical, values)
    return _from_event(document, None, prefix)


def _from_event(document: dict[str, Any], status: Status | None, prefix: str) -> StepResult:
    node: Any = document
    path = prefix
    for key in _EVENT_PATH:
        node = _required(node, key, path)
        path = f"{path}{key}."
        if not isinstance(node, dict):
            raise InvalidMessage(path.rstrip("."), f"must be an object, not {_json_type(node)}")
        _unique(node, path)
    workflow_id = node.get("workflowId", _MISSING)
    execution_id = node.get("executionId", _MISSING)
    token = document.get("token", _MISSING)
    status_value: Any = status if status is not None else document.get("status", _MISSING)
    names = (f"{path}workflowId", f"{path}executionId", f"{prefix}token", f"{prefix}status")
    return _build("", names, [workflow_id, execution_id, token, status_value])


def _build(prefix: str, names: tuple[str, ...], values: list[Any]) -> StepResult:
    workflow_name, execution_name, token_name, status_name = (prefix + n for n in names)
    return StepResult(
        workflow_id=_check(workflow_name, values[0], _WORKFLOW_ID, WORKFLOW_ID_RULE),
        execution_id=_check(execution_name, values[1], _EXECUTION_ID, EXECUTION_ID_RULE),
        token=_check(token_name, values[2], _TOKEN, TOKEN_RULE),
        status=_status(status_name, values[3]),
    )


def _required(document: dict[str, Any], key: str, prefix: str) -> Any:
    if key not in document:
        raise InvalidMessage(prefix + key, "required field is missing")
    return document[key]


def _check(field: str, value: Any, pattern: re.Pattern[str], rule: str) -> str:
    if value is _MISSING:
        raise InvalidMessage(field, "required field is missing")
    if not isinstance(value, str):
        raise InvalidMessage(field, f"must be a string, not {_json_type(value)}")
    if pattern.fullmatch(value) is None:
        raise InvalidMessage(field, f"must match {rule}")
    return value


def _status(field: str, value: Any) -> Status:
    if value is _MISSING:
        raise InvalidMessage(field, "required field is missing")
    if not isinstance(value, str):
        raise InvalidMessage(field, f"must be a string, not {_json_type(value)}")
    try:
        return Status(value)
    except ValueError:
        raise InvalidMessage(field, "must be SUCCESS or FAILURE") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
