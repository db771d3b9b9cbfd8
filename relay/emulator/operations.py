"""The wire side of the execution reads (DESIGN §11): `ListExecutions` and `DescribeExecution`
requests read and checked against botocore's transfer model, and their errors.

Pure, like `protocol`: a JSON body in, a request or a `ServiceError` out. The members and their
constraints are the model's (`botocore/data/transfer/2018-11-05/service-2.json`):
`ListExecutions` takes `WorkflowId` (required), `MaxResults` (1 to 1000) and `NextToken` (1 to
6144 characters); `DescribeExecution` takes `WorkflowId` and `ExecutionId`, both required.
"""

import json
from dataclasses import dataclass
from typing import Final

from relay.emulator.protocol import FIELD_RULES, ServiceError

MAX_RESULTS: Final = 1000
MAX_NEXT_TOKEN_CHARS: Final = 6144

_RULES: Final = {rule.name: rule for rule in FIELD_RULES}


@dataclass(frozen=True, kw_only=True, slots=True)
class ListCall:
    """A `ListExecutions` request that passed the model's rules."""

    workflow_id: str
    max_results: int | None = None
    next_token: str | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class DescribeCall:
    """A `DescribeExecution` request that passed the model's rules."""

    workflow_id: str
    execution_id: str


ReadCall = ListCall | DescribeCall


def decode_read(operation: str, body: bytes) -> tuple[dict[str, object], ReadCall | ServiceError]:
    """The request's members as they arrived (for the call log) and the checked request, or the
    error the service answers: SerializationException for a body or member of the wrong type,
    InvalidRequestException naming every member that breaks its constraint."""
    try:
        document = json.loads(body) if body else {}
    except (UnicodeDecodeError, ValueError):
        return {}, ServiceError(
            code="SerializationException", message="Request body is not valid JSON"
        )
    if not isinstance(document, dict):
        return {}, ServiceError(
            code="SerializationException", message="Request body must be a JSON object"
        )
    names = ("WorkflowId", "ExecutionId") if operation == "DescribeExecution" else ("WorkflowId",)
    strings = (*names, "NextToken") if operation == "ListExecutions" else names
    for name in strings:
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            return document, _mistyped(name, value, "a string")
    max_results = document.get("MaxResults") if operation == "ListExecutions" else None
    if max_results is not None and (
        isinstance(max_results, bool) or not isinstance(max_results, int)
    ):
        return document, _mistyped("MaxResults", max_results, "an integer")
    problems = [p for name in names if (p := _RULES[name].violation(document.get(name)))]
    if isinstance(max_results, int):
        if max_results < 1:
            problems.append(_bound("MaxResults", max_results, "value greater than or equal to 1"))
        elif max_results > MAX_RESULTS:
            problems.append(
                _bound("MaxResults", max_results, f"value less than or equal to {MAX_RESULTS}")
            )
    token = document.get("NextToken")
    if isinstance(token, str) and not 1 <= len(token) <= MAX_NEXT_TOKEN_CHARS:
        problems.append(
            "Value at 'NextToken' failed to satisfy constraint: Member must have length "
            f"between 1 and {MAX_NEXT_TOKEN_CHARS}"
        )
    if problems:
        noun = "error" if len(problems) == 1 else "errors"
        return document, ServiceError(
            code="InvalidRequestException",
            message=f"{len(problems)} validation {noun} detected: " + "; ".join(problems),
        )
    workflow_id = str(document["WorkflowId"])
    if operation == "DescribeExecution":
        return document, DescribeCall(
            workflow_id=workflow_id, execution_id=str(document["ExecutionId"])
        )
    return document, ListCall(
        workflow_id=workflow_id,
        max_results=max_results if isinstance(max_results, int) else None,
        next_token=token if isinstance(token, str) else None,
    )


def _mistyped(name: str, value: object, expected: str) -> ServiceError:
    # Coral fails to deserialize a mistyped member before any constraint is checked.
    return ServiceError(
        code="SerializationException",
        message=f"Expected {expected} for '{name}', got {type(value).__name__}",
    )


def _bound(name: str, value: int, constraint: str) -> str:
    return (
        f"Value '{value}' at '{name}' failed to satisfy constraint: Member must have {constraint}"
    )
