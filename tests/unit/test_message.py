"""The message contract of DESIGN §1-2, proven through `relay.message.parse`."""

import json
import re
from typing import Any

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from relay.message import (
    EXECUTION_ID_RULE,
    TOKEN_RULE,
    WORKFLOW_ID_RULE,
    InvalidMessage,
    Status,
    StepResult,
    parse,
    short_token,
)

EXAMPLE_EVENT: dict[str, Any] = {
    "token": "MzI0Nzc4ZDktMGRmMi00MjFhLTgxMjUtYWZmZmRmODNkYjc0",
    "serviceMetadata": {
        "executionDetails": {
            "workflowId": "w-1234567890example",
            "executionId": "abcd1234-aa11-bb22-cc33-abcdef123456",
        },
        "transferDetails": {
            "sessionId": "36688ff5d2deda8c",
            "userName": "myuser",
            "serverId": "s-example1234567890",
        },
    },
    "fileLocation": {
        "domain": "S3",
        "bucket": "DOC-EXAMPLE-BUCKET",
        "key": "path/to/mykey",
        "eTag": "d8e8fca2dc0f896fd7cb4cb0031ba249",
        "versionId": None,
    },
}
"""The custom-step event of the shared examples (custom-step-event-s3.json), as the Transfer
Family user guide documents it."""

WF = "w-1234567890abcdefg"
EX = "abcd1234-aa11-bb22-cc33-abcdef123456"
TOKEN = "MzI0Nzc4ZDktMGRm_tok"
STEP = StepResult(WF, EX, TOKEN, Status.SUCCESS)

WORKFLOW_RULE = f"must match {WORKFLOW_ID_RULE}"
EXECUTION_RULE = f"must match {EXECUTION_ID_RULE}"
TOKEN_RULE_TEXT = f"must match {TOKEN_RULE}"
STATUS_RULE = "must be SUCCESS or FAILURE"
MISSING = "required field is missing"

EVENT_PREFIX = "serviceMetadata.executionDetails."


def canonical(**overrides: Any) -> dict[str, Any]:
    """Shape 1; an override of `...` removes the field."""
    document = {"WorkflowId": WF, "ExecutionId": EX, "Token": TOKEN, "Status": "SUCCESS"}
    return _apply(document, overrides)


def event(
    token: Any = TOKEN, workflow_id: Any = WF, execution_id: Any = EX, status: Any = "SUCCESS"
) -> dict[str, Any]:
    """Shape 2 (the custom-step event plus status); an argument of `...` removes the field."""
    details = _apply({}, {"workflowId": workflow_id, "executionId": execution_id})
    document = {
        "token": token,
        "serviceMetadata": {
            "executionDetails": details,
            "transferDetails": {"sessionId": "36688ff5d2deda8c", "userName": "myuser"},
        },
        "fileLocation": {"domain": "S3", "bucket": "bucket", "key": "path/to/key"},
        "status": status,
    }
    return _apply(document, {"token": token, "status": status})


def sns(inner: Any) -> dict[str, Any]:
    """Shape 3: an SNS notification envelope; a dict `inner` is serialised as JSON."""
    return {
        "Type": "Notification",
        "MessageId": "6b8a1d5e-6f7c-5a3b-9f1d-2c4e8a0b7d91",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:relay",
        "Message": json.dumps(inner) if isinstance(inner, dict) else inner,
        "Timestamp": "2026-11-27T00:00:00.000Z",
    }


def _apply(document: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if value is ...:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def body(document: Any) -> bytes:
    """The UTF-8 JSON of a document, non-ASCII characters written as they are."""
    return json.dumps(document, ensure_ascii=False).encode()


def rejection(raw: str | bytes) -> InvalidMessage:
    """The `InvalidMessage` that parsing `raw` raises."""
    with pytest.raises(InvalidMessage) as caught:
        parse(raw)
    return caught.value


def parse_or_error(raw: str | bytes) -> InvalidMessage | None:
    """The `InvalidMessage` that parsing `raw` raises, or None when it parses."""
    try:
        parse(raw)
    except InvalidMessage as error:
        return error
    return None


# --- the three shapes --------------------------------------------------------------------


VALID: list[tuple[str, Any, StepResult]] = [
    ("canonical", canonical(), STEP),
    ("canonical FAILURE", canonical(Status="FAILURE"), StepResult(WF, EX, TOKEN, "FAILURE")),
    (
        "canonical, unknown extra keys",
        canonical(extra={"nested": [1, None, "é"]}, Type="Other", Message=3, token="ignored"),
        STEP,
    ),
    (
        "canonical, uppercase hex execution id",
        canonical(ExecutionId=EX.upper()),
        StepResult(WF, EX.upper(), TOKEN, Status.SUCCESS),
    ),
    ("token of 64 characters", canonical(Token="a" * 64), StepResult(WF, EX, "a" * 64, "SUCCESS")),
    ("token of 1 character", canonical(Token="_"), StepResult(WF, EX, "_", "SUCCESS")),
    ("event", event(), STEP),
    ("event FAILURE", event(status="FAILURE"), StepResult(WF, EX, TOKEN, Status.FAILURE)),
    (
        "example event plus status",
        {**EXAMPLE_EVENT, "status": "SUCCESS"},
        StepResult(
            "w-1234567890example",
            "abcd1234-aa11-bb22-cc33-abcdef123456",
            "MzI0Nzc4ZDktMGRmMi00MjFhLTgxMjUtYWZmZmRmODNkYjc0",
            Status.SUCCESS,
        ),
    ),
    ("SNS around canonical", sns(canonical()), STEP),
    ("SNS around event", sns(event()), STEP),
    ("SNS with unknown extra keys", {**sns(canonical()), "Subject": None, "X": [1]}, STEP),
]


@pytest.mark.parametrize(
    ("document", "expected"), [c[1:] for c in VALID], ids=[c[0] for c in VALID]
)
def test_each_accepted_shape_normalises_to_the_four_fields(
    document: Any, expected: StepResult
) -> None:
    """Each shape of DESIGN §2 parses, as bytes or as text, to the same four fields."""
    assert parse(body(document)) == expected
    assert parse(json.dumps(document)) == expected
    assert isinstance(parse(body(document)).status, Status)


# --- what is rejected, and how it is named -------------------------------------------------


INVALID: list[tuple[str, bytes, str, str]] = [
    # The body as a whole.
    ("not UTF-8", b'{"Token": "\xff"}', "body", "not UTF-8 (byte 11)"),
    ("UTF-16", '{"a": 1}'.encode("utf-16"), "body", "not UTF-8 (byte 0)"),
    ("empty body", b"", "body", "not valid JSON"),
    ("not JSON", b"{WorkflowId: w}", "body", "not valid JSON"),
    ("truncated JSON", body(canonical())[:-1], "body", "not valid JSON"),
    ("two documents", body(canonical()) * 2, "body", "not valid JSON"),
    ("an array", body([canonical()]), "body", "must be a JSON object, not an array"),
    ("a string", b'"SUCCESS"', "body", "must be a JSON object, not a string"),
    ("a number", b"42", "body", "must be a JSON object, not a number"),
    ("null", b"null", "body", "must be a JSON object, not null"),
    ("a boolean", b"true", "body", "must be a JSON object, not a boolean"),
    ("an empty object", b"{}", "WorkflowId", MISSING),
    # Canonical: WorkflowId.
    ("workflow id 18 chars", body(canonical(WorkflowId=WF[:-1])), "WorkflowId", WORKFLOW_RULE),
    ("workflow id 20 chars", body(canonical(WorkflowId=WF + "a")), "WorkflowId", WORKFLOW_RULE),
    ("workflow id uppercase", body(canonical(WorkflowId=WF.upper())), "WorkflowId", WORKFLOW_RULE),
    (
        "workflow id one uppercase letter",
        body(canonical(WorkflowId=WF[:-1] + "G")),
        "WorkflowId",
        WORKFLOW_RULE,
    ),
    (
        "workflow id trailing newline",
        body(canonical(WorkflowId=WF + "\n")),
        "WorkflowId",
        WORKFLOW_RULE,
    ),
    (
        "workflow id leading space",
        body(canonical(WorkflowId=" " + WF)),
        "WorkflowId",
        WORKFLOW_RULE,
    ),
    (
        "workflow id wrong prefix",
        body(canonical(WorkflowId="x" + WF[1:])),
        "WorkflowId",
        WORKFLOW_RULE,
    ),
    (
        "workflow id non-ASCII",
        body(canonical(WorkflowId=WF[:-1] + "é")),
        "WorkflowId",
        WORKFLOW_RULE,
    ),
    ("workflow id empty", body(canonical(WorkflowId="")), "WorkflowId", WORKFLOW_RULE),
    (
        "workflow id a number",
        body(canonical(WorkflowId=12)),
        "WorkflowId",
        "must be a string, not a number",
    ),
    (
        "workflow id null",
        body(canonical(WorkflowId=None)),
        "WorkflowId",
        "must be a string, not null",
    ),
    ("workflow id missing", body(canonical(WorkflowId=...)), "WorkflowId", MISSING),
    # Canonical: ExecutionId.
    (
        "execution id trailing newline",
        body(canonical(ExecutionId=EX + "\n")),
        "ExecutionId",
        EXECUTION_RULE,
    ),
    (
        "execution id not hex",
        body(canonical(ExecutionId="g" + EX[1:])),
        "ExecutionId",
        EXECUTION_RULE,
    ),
    (
        "execution id no dashes",
        body(canonical(ExecutionId=EX.replace("-", ""))),
        "ExecutionId",
        EXECUTION_RULE,
    ),
    ("execution id 35 chars", body(canonical(ExecutionId=EX[:-1])), "ExecutionId", EXECUTION_RULE),
    (
        "execution id braces",
        body(canonical(ExecutionId="{" + EX + "}")),
        "ExecutionId",
        EXECUTION_RULE,
    ),
    (
        "execution id Arabic-Indic digit",
        body(canonical(ExecutionId="\u0661" + EX[1:])),
        "ExecutionId",
        EXECUTION_RULE,
    ),
    (
        "execution id a boolean",
        body(canonical(ExecutionId=True)),
        "ExecutionId",
        "must be a string, not a boolean",
    ),
    ("execution id missing", body(canonical(ExecutionId=...)), "ExecutionId", MISSING),
    # Canonical: Token.
    ("token 65 chars", body(canonical(Token="a" * 65)), "Token", TOKEN_RULE_TEXT),
    ("token empty", body(canonical(Token="")), "Token", TOKEN_RULE_TEXT),
    ("token trailing newline", body(canonical(Token=TOKEN + "\n")), "Token", TOKEN_RULE_TEXT),
    ("token with a dash", body(canonical(Token="tok-en")), "Token", TOKEN_RULE_TEXT),
    ("token base64 padding", body(canonical(Token="dG9rZW4=")), "Token", TOKEN_RULE_TEXT),
    ("token with a space", body(canonical(Token="tok en")), "Token", TOKEN_RULE_TEXT),
    ("token non-ASCII letter", body(canonical(Token="tok\u00e9n")), "Token", TOKEN_RULE_TEXT),
    (
        "token escaped non-ASCII letter",
        b'{"WorkflowId":"'
        + WF.encode()
        + b'","ExecutionId":"'
        + EX.encode()
        + b'","Token":"tok\\u00e9n","Status":"SUCCESS"}',
        "Token",
        TOKEN_RULE_TEXT,
    ),
    (
        "token Arabic-Indic digits",
        body(canonical(Token="tok\u0663\u0664")),
        "Token",
        TOKEN_RULE_TEXT,
    ),
    ("token fullwidth digit", body(canonical(Token="tok\uff11")), "Token", TOKEN_RULE_TEXT),
    ("token a number", body(canonical(Token=12345)), "Token", "must be a string, not a number"),
    ("token a float", body(canonical(Token=1.5)), "Token", "must be a string, not a number"),
    ("token an array", body(canonical(Token=[TOKEN])), "Token", "must be a string, not an array"),
    ("token an object", body(canonical(Token={})), "Token", "must be a string, not an object"),
    ("token missing", body(canonical(Token=...)), "Token", MISSING),
    # Canonical: Status.
    ("status lowercase", body(canonical(Status="success")), "Status", STATUS_RULE),
    ("status capitalised", body(canonical(Status="Failure")), "Status", STATUS_RULE),
    ("status trailing newline", body(canonical(Status="SUCCESS\n")), "Status", STATUS_RULE),
    ("status other word", body(canonical(Status="DONE")), "Status", STATUS_RULE),
    ("status empty", body(canonical(Status="")), "Status", STATUS_RULE),
    ("status a boolean", body(canonical(Status=True)), "Status", "must be a string, not a boolean"),
    ("status null", body(canonical(Status=None)), "Status", "must be a string, not null"),
    ("status missing", body(canonical(Status=...)), "Status", MISSING),
    # Event shape.
    ("event token missing", body(event(token=...)), "token", MISSING),
    ("event token too long", body(event(token="t" * 65)), "token", TOKEN_RULE_TEXT),
    ("event token a number", body(event(token=7)), "token", "must be a string, not a number"),
    ("event status missing", body(event(status=...)), "status", MISSING),
    ("event status lowercase", body(event(status="failure")), "status", STATUS_RULE),
    (
        "event workflow id bad",
        body(event(workflow_id=WF[:-1])),
        EVENT_PREFIX + "workflowId",
        WORKFLOW_RULE,
    ),
    (
        "event workflow id missing",
        body(event(workflow_id=...)),
        EVENT_PREFIX + "workflowId",
        MISSING,
    ),
    (
        "event execution id bad",
        body(event(execution_id=EX + " ")),
        EVENT_PREFIX + "executionId",
        EXECUTION_RULE,
    ),
    (
        "event execution id null",
        body(event(execution_id=None)),
        EVENT_PREFIX + "executionId",
        "must be a string, not null",
    ),
    (
        "event serviceMetadata missing",
        body({"token": TOKEN, "status": "SUCCESS"}),
        "serviceMetadata",
        MISSING,
    ),
    (
        "event serviceMetadata a string",
        body({"token": TOKEN, "serviceMetadata": "x", "status": "SUCCESS"}),
        "serviceMetadata",
        "must be an object, not a string",
    ),
    (
        "event executionDetails missing",
        body({"token": TOKEN, "serviceMetadata": {}, "status": "SUCCESS"}),
        "serviceMetadata.executionDetails",
        MISSING,
    ),
    (
        "event executionDetails an array",
        body({"token": TOKEN, "serviceMetadata": {"executionDetails": []}, "status": "SUCCESS"}),
        "serviceMetadata.executionDetails",
        "must be an object, not an array",
    ),
    ("example event without status", body(EXAMPLE_EVENT), "status", MISSING),
    # SNS envelope.
    (
        "SNS Message an object",
        body({**sns(""), "Message": canonical()}),
        "Message",
        "SNS Message must be a JSON string",
    ),
    (
        "SNS Message null",
        body({**sns(""), "Message": None}),
        "Message",
        "SNS Message must be a JSON string",
    ),
    ("SNS Message not JSON", body(sns("not json")), "Message", "not valid JSON"),
    ("SNS Message empty", body(sns("")), "Message", "not valid JSON"),
    ("SNS Message an array", body(sns("[1]")), "Message", "must be a JSON object, not an array"),
    (
        "SNS Message missing",
        body({k: v for k, v in sns("").items() if k != "Message"}),
        "Message",
        MISSING,
    ),
    (
        "SNS canonical token bad",
        body(sns(canonical(Token="a-b"))),
        "Message.Token",
        TOKEN_RULE_TEXT,
    ),
    ("SNS canonical status missing", body(sns(canonical(Status=...))), "Message.Status", MISSING),
    ("SNS event token bad", body(sns(event(token="é"))), "Message.token", TOKEN_RULE_TEXT),
    (
        "SNS event workflow id bad",
        body(sns(event(workflow_id=WF.upper()))),
        "Message." + EVENT_PREFIX + "workflowId",
        WORKFLOW_RULE,
    ),
    ("SNS event status bad", body(sns(event(status="ok"))), "Message.status", STATUS_RULE),
]


@pytest.mark.parametrize(
    ("raw", "field", "rule"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID]
)
def test_each_broken_rule_is_rejected_naming_the_field_and_the_rule(
    raw: bytes, field: str, rule: str
) -> None:
    """A body that breaks a rule raises InvalidMessage naming the field's path and the rule."""
    error = rejection(raw)
    assert (error.field, error.rule) == (field, rule)
    assert str(error) == f"{field}: {rule}"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"a":' * 100_000, b"1" * 5000, b'{"Token": ' + b"9" * 5000 + b"}"],
    ids=["deep array", "deep object", "huge integer", "huge integer in a field"],
)
def test_pathological_json_is_an_invalid_message(raw: bytes) -> None:
    """Deep nesting and integers past Python's digit limit are InvalidMessage, not a crash."""
    assert rejection(raw).field == "body"
    assert rejection(raw.decode()).rule == "not valid JSON"


# --- properties ----------------------------------------------------------------------------

ASCII = st.characters(codec="ascii")
workflow_ids = st.from_regex(WORKFLOW_ID_RULE, fullmatch=True, alphabet=ASCII)
execution_ids = st.from_regex(EXECUTION_ID_RULE, fullmatch=True, alphabet=ASCII)
tokens = st.from_regex(TOKEN_RULE, fullmatch=True, alphabet=ASCII)
statuses = st.sampled_from(Status)
steps = st.builds(StepResult, workflow_ids, execution_ids, tokens, statuses)
json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
SHAPES = ("canonical", "event", "sns canonical", "sns event")
FIELDS = ("workflow_id", "execution_id", "token", "status")
RULES = {
    "workflow_id": WORKFLOW_ID_RULE,
    "execution_id": EXECUTION_ID_RULE,
    "token": TOKEN_RULE,
    "status": "SUCCESS|FAILURE",
}


def field_path(shape: str, name: str) -> str:
    """Where a field lives in a shape, as `InvalidMessage.field` names it."""
    if shape.endswith("canonical"):
        path = {"workflow_id": "WorkflowId", "execution_id": "ExecutionId", "token": "Token"}
        local = path.get(name, "Status")
    else:
        path = {
            "workflow_id": EVENT_PREFIX + "workflowId",
            "execution_id": EVENT_PREFIX + "executionId",
        }
        local = path.get(name, name)
    return ("Message." if shape.startswith("sns") else "") + local


def render(shape: str, values: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """The document of `shape` carrying `values` (a value of `...` removes that field)."""
    if shape.endswith("canonical"):
        document = canonical(
            WorkflowId=values["workflow_id"],
            ExecutionId=values["execution_id"],
            Token=values["token"],
            Status=values["status"],
        )
    else:
        document = event(**values)
    reserved = {"Type", "Message", "WorkflowId", "ExecutionId", "Token", "Status"}
    reserved |= {"token", "status", "serviceMetadata"}
    document = {**{k: v for k, v in extra.items() if k not in reserved}, **document}
    return sns(document) if shape.startswith("sns") else document


extras = st.dictionaries(st.text(max_size=10), json_values, max_size=3)


@settings(max_examples=200)
@given(step=steps, shape=st.sampled_from(SHAPES), extra=extras, ascii_only=st.booleans())
def test_every_valid_record_parses(
    step: StepResult, shape: str, extra: dict[str, Any], ascii_only: bool
) -> None:
    """A record whose fields match their rules parses to them, in any shape, with any extras."""
    values = {
        "workflow_id": step.workflow_id,
        "execution_id": step.execution_id,
        "token": step.token,
        "status": step.status.value,
    }
    document = render(shape, values, extra)
    assert parse(json.dumps(document, ensure_ascii=ascii_only).encode()) == step


def breaks(name: str, value: Any) -> bool:
    """Whether `value` breaks the rule of field `name`."""
    return not isinstance(value, str) or re.fullmatch(RULES[name], value) is None


def values_of(step: StepResult) -> dict[str, Any]:
    """The four fields of a result by name, as a producer writes them."""
    return {
        "workflow_id": step.workflow_id,
        "execution_id": step.execution_id,
        "token": step.token,
        "status": step.status.value,
    }


MUTATIONS = ("edit", "swapcase", "newline", "doubled", "text", "json", "missing")


@settings(max_examples=200)
@given(
    step=steps,
    shape=st.sampled_from(SHAPES),
    name=st.sampled_from(FIELDS),
    mutation=st.sampled_from(MUTATIONS),
    data=st.data(),
    extra=extras,
)
def test_each_single_field_mutation_is_rejected_naming_that_field(
    step: StepResult,
    shape: str,
    name: str,
    mutation: str,
    data: st.DataObject,
    extra: dict[str, Any],
) -> None:
    """Breaking or removing one field of a valid record is rejected, naming that field."""
    values = values_of(step)
    valid: str = values[name]
    if mutation == "edit":
        at = data.draw(st.integers(0, len(valid)), label="at")
        value: Any = valid[:at] + data.draw(st.text(max_size=2), label="new") + valid[at + 1 :]
    elif mutation == "swapcase":
        value = valid.swapcase()
    elif mutation == "newline":
        value = valid + "\n"
    elif mutation == "doubled":
        value = valid + valid
    elif mutation == "text":
        value = data.draw(st.text(), label="text")
    elif mutation == "json":
        value = data.draw(json_values, label="json")
    else:
        value = ...
    assume(value is ... or breaks(name, value))
    error = rejection(json.dumps(render(shape, {**values, name: value}, extra)).encode())
    assert error.field == field_path(shape, name)
    if value is ...:
        assert error.rule == MISSING
    else:
        assert error.rule.startswith("must ")


@settings(max_examples=300)
@given(raw=st.binary())
@example(raw=b"[" * 100_000)
@example(raw=b"1" * 5000)
@example(raw=b"\xef\xbb\xbf{}")
@example(raw=b'"\\ud800"')
@example(raw=b"NaN")
def test_arbitrary_bytes_raise_nothing_but_invalid_message(raw: bytes) -> None:
    """No byte string makes parse raise anything other than InvalidMessage."""
    error = parse_or_error(raw)
    assert error is None or (error.field and error.rule)


@settings(max_examples=300)
@given(document=json_values, envelope=st.booleans())
def test_arbitrary_json_raises_nothing_but_invalid_message(document: Any, envelope: bool) -> None:
    """No JSON document, bare or in an SNS envelope, makes parse raise anything else."""
    raw = json.dumps(sns(json.dumps(document)) if envelope else document)
    error = parse_or_error(raw)
    assert error is None or (error.field and error.rule)


# --- StepResult ----------------------------------------------------------------------------


def test_from_event_takes_the_ids_and_token_from_the_custom_step_event() -> None:
    """StepResult.from_event reads the example event Transfer Family hands the step."""
    result = StepResult.from_event(EXAMPLE_EVENT, "FAILURE")
    assert result == StepResult(
        "w-1234567890example",
        "abcd1234-aa11-bb22-cc33-abcdef123456",
        "MzI0Nzc4ZDktMGRmMi00MjFhLTgxMjUtYWZmZmRmODNkYjc0",
        Status.FAILURE,
    )
    assert StepResult.from_event(EXAMPLE_EVENT, Status.SUCCESS).status is Status.SUCCESS


@pytest.mark.parametrize(
    ("event_document", "status", "field"),
    [
        (EXAMPLE_EVENT, "success", "status"),
        (EXAMPLE_EVENT, None, "status"),
        ({**EXAMPLE_EVENT, "token": "a=b"}, "SUCCESS", "token"),
        ({**EXAMPLE_EVENT, "serviceMetadata": {}}, "SUCCESS", "serviceMetadata.executionDetails"),
        (event(execution_id="x"), "SUCCESS", EVENT_PREFIX + "executionId"),
    ],
)
def test_from_event_rejects_a_bad_event_or_status_naming_the_field(
    event_document: dict[str, Any], status: Any, field: str
) -> None:
    """StepResult.from_event raises InvalidMessage naming what is wrong in the event."""
    with pytest.raises(InvalidMessage) as caught:
        StepResult.from_event(event_document, status)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ((WF[:-1], EX, TOKEN, "SUCCESS"), "WorkflowId"),
        ((WF, EX[1:], TOKEN, "SUCCESS"), "ExecutionId"),
        ((WF, EX, "", "SUCCESS"), "Token"),
        ((WF, EX, TOKEN, "DONE"), "Status"),
    ],
)
def test_step_result_refuses_values_outside_the_rules(
    arguments: tuple[str, str, str, str], field: str
) -> None:
    """Building a StepResult directly applies the same rules as parsing."""
    with pytest.raises(InvalidMessage) as caught:
        StepResult(*arguments)  # type: ignore[arg-type]
    assert caught.value.field == field


@settings(max_examples=200)
@given(step=steps)
def test_to_body_round_trips_through_parse(step: StepResult) -> None:
    """The canonical body of a result parses back to the same result and request."""
    assert parse(step.to_body()) == step
    assert json.loads(step.to_body()) == step.to_request()
    assert step.dedup_id() == parse(step.to_body().encode()).dedup_id()


@settings(max_examples=200)
@given(token=tokens)
@example(token="1")
@example(token="ab")
@example(token="a" * 9)
def test_short_token_never_contains_the_whole_token(token: str) -> None:
    """A shortened token, as logged, never contains the whole token."""
    step = StepResult(WF, EX, token, Status.SUCCESS)
    assert token not in step.short_token
    assert step.short_token == short_token(token)


def test_short_token_keeps_a_prefix_and_the_length_of_a_real_token() -> None:
    """A realistic token is shortened to its first characters and its length, to correlate."""
    assert short_token("MzI0Nzc4ZDktMGRmMi00MjFhLTgxMjUtYWZmZmRmODNkYjc0") == "MzI0Nz…(48)"


def test_dedup_id_depends_on_all_four_fields() -> None:
    """The FIFO deduplication id changes with the status, so SUCCESS and FAILURE differ."""
    assert STEP.dedup_id() == StepResult(WF, EX, TOKEN, "SUCCESS").dedup_id()
    assert STEP.dedup_id() != StepResult(WF, EX, TOKEN, "FAILURE").dedup_id()
    assert STEP.step_key == StepResult(WF, EX, TOKEN, "FAILURE").step_key
