"""The emulator's wire rules without a server: field rules, SigV4 presence and scope, errors."""

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from relay.awsjson import read_error
from relay.emulator.protocol import (
    BAD_GATEWAY_BODY,
    CORAL_URI,
    TRANSFER_NAMESPACE,
    CallFields,
    ErrorForm,
    ServiceError,
    StepCall,
    check_authorization,
    check_protocol,
    check_signing_time,
    decode_call,
    gateway_page,
    http_date,
    validate_call,
)

VALID = CallFields(
    workflow_id="w-0123456789abcdefg",
    execution_id="0123abcd-ABCD-4567-89ef-0123456789AB",
    token="a" * 64,
    status="FAILURE",
)


def signed_authorization(service: str) -> tuple[str, str]:
    """The Authorization and X-Amz-Date headers botocore's own SigV4 signer writes for a service."""
    request = AWSRequest(method="POST", url="https://transfer.us-east-1.amazonaws.com/", data=b"{}")
    SigV4Auth(Credentials("testing", "testing"), service, "us-east-1").add_auth(request)
    return request.headers["Authorization"], request.headers["X-Amz-Date"]


def test_values_at_the_edges_of_every_rule_are_accepted() -> None:
    """Uppercase hex execution ids, 64-character tokens and FAILURE all pass the service's rules."""
    assert validate_call(VALID) == StepCall(
        workflow_id=VALID.workflow_id or "",
        execution_id=VALID.execution_id or "",
        token=VALID.token or "",
        status="FAILURE",
    )


def test_every_missing_field_is_named_in_one_error() -> None:
    """A body with no fields is one InvalidRequestException naming all four as null."""
    error = validate_call(CallFields())

    assert isinstance(error, ServiceError)
    assert error.code == "InvalidRequestException"
    assert error.message.startswith("4 validation errors detected: ")
    for name in ("WorkflowId", "ExecutionId", "Token", "Status"):
        assert f"Value null at '{name}'" in error.message


@pytest.mark.parametrize(
    ("token", "constraint"),
    [
        ("", "greater than or equal to 1"),
        ("a" * 65, "less than or equal to 64"),
        ("bad token", r"pattern: \w+"),
        ("\u0661\u0662", r"pattern: \w+"),
    ],
)
def test_bad_token_is_refused_without_echoing_it(token: str, constraint: str) -> None:
    """A token breaking its length or ASCII `\\w+` rule is refused without being echoed."""
    error = validate_call(CallFields(**{**_as_dict(VALID), "token": token}))

    assert isinstance(error, ServiceError)
    assert constraint in error.message
    assert "'Token'" in error.message
    assert token not in error.message or token == ""


def test_partial_match_of_a_pattern_is_refused() -> None:
    """Rules hold for the whole value: a valid workflow id with a suffix is refused."""
    error = validate_call(CallFields(**{**_as_dict(VALID), "workflow_id": "w-0123456789abcdefgX"}))

    assert isinstance(error, ServiceError)
    assert "'WorkflowId'" in error.message


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", CallFields()),
        (b'{"Token": "t", "Extra": 1}', CallFields(token="t")),
    ],
)
def test_decode_reads_the_four_fields_and_ignores_others(body: bytes, expected: CallFields) -> None:
    """An empty body or one with extra members decodes to the four fields, None where absent."""
    assert decode_call(body) == expected


@pytest.mark.parametrize("body", [b"\xff", b"null", b'"text"', b'{"Status": ["SUCCESS"]}'])
def test_decode_refuses_what_is_not_an_object_of_strings(body: bytes) -> None:
    """A body that is not UTF-8 JSON of an object of strings is a SerializationException."""
    error = decode_call(body)

    assert isinstance(error, ServiceError)
    assert error.code == "SerializationException"


def test_botocore_signed_header_for_transfer_is_accepted() -> None:
    """The header botocore's SigV4 signer writes for `transfer` passes the presence and scope."""
    authorization, amz_date = signed_authorization("transfer")

    assert check_authorization(authorization, amz_date) is None


def test_botocore_signed_header_for_another_service_is_an_invalid_signature() -> None:
    """A credential scoped to another service is InvalidSignatureException naming `transfer`."""
    authorization, amz_date = signed_authorization("s3")

    error = check_authorization(authorization, amz_date)

    assert error is not None
    assert error.code == "InvalidSignatureException"
    assert "'transfer'" in error.message


@pytest.mark.parametrize(
    "credential",
    ["testing/20240101/us-east-1/transfer", "testing/20240101/us-east-1/transfer/aws5_request"],
)
def test_credential_without_a_full_scope_is_an_incomplete_signature(credential: str) -> None:
    """A Credential without five elements ending in aws4_request is IncompleteSignatureException."""
    header = f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders=host, Signature=00"

    error = check_authorization(header, "20240101T000000Z")

    assert error is not None
    assert error.code == "IncompleteSignatureException"


def test_content_type_is_checked_before_the_target_and_the_target_before_auth() -> None:
    """With everything wrong, the content type is reported first, then the target, then auth."""
    wrong_type = check_protocol(
        content_type="application/json", target=None, authorization=None, amz_date=None
    )
    wrong_target = check_protocol(
        content_type="application/x-amz-json-1.1",
        target=None,
        authorization=None,
        amz_date=None,
    )

    assert wrong_type is not None
    assert "Content-Type" in wrong_type.message
    assert wrong_target is not None
    assert wrong_target.code == "UnknownOperationException"
    assert "X-Amz-Target" in wrong_target.message


def test_error_body_carries_the_namespaced_type_message_and_members() -> None:
    """An error encodes `__type` with its namespace, `Message`, and its extra members as strings."""
    error = ServiceError(
        code="ThrottlingException",
        message="Rate exceeded",
        members={"RetryAfterSeconds": "3"},
        namespace="ns#",
    )

    assert json.loads(error.encode()) == {
        "__type": "ns#ThrottlingException",
        "Message": "Rate exceeded",
        "RetryAfterSeconds": "3",
    }


THROTTLE = ServiceError(
    code="ThrottlingException", message="Rate exceeded", members={"RetryAfterSeconds": "2"}
)
QUALIFIED = TRANSFER_NAMESPACE + "ThrottlingException"


@pytest.mark.parametrize(
    ("form", "header", "type_member", "type_value", "message_member"),
    [
        (ErrorForm.TYPE, None, "__type", "ThrottlingException", "Message"),
        (ErrorForm.TYPE_NAMESPACED, None, "__type", QUALIFIED, "Message"),
        (ErrorForm.TYPE_URI, None, "__type", QUALIFIED + CORAL_URI, "Message"),
        (ErrorForm.CODE, None, "code", "ThrottlingException", "Message"),
        (ErrorForm.CODE_URI, None, "code", QUALIFIED + CORAL_URI, "Message"),
        (ErrorForm.HEADER, "ThrottlingException", None, None, "Message"),
        (ErrorForm.HEADER_URI, QUALIFIED + CORAL_URI, None, None, "Message"),
        (ErrorForm.LOWER_MESSAGE, None, "__type", "ThrottlingException", "message"),
        (ErrorForm.TYPE_WITH_DECOYS, None, "__type", "ThrottlingException", "Message"),
    ],
)
def test_each_error_form_puts_the_type_and_message_where_it_names(
    form: ErrorForm,
    header: str | None,
    type_member: str | None,
    type_value: str | None,
    message_member: str,
) -> None:
    """Every form writes the type in its place only, the message under its name, and the members."""
    headers, body = THROTTLE.render(form)
    document = json.loads(body)

    assert headers.get("X-Amzn-Errortype") == header
    assert {k for k in document if k in ("__type", "code")} == ({type_member} - {None})
    if type_member is not None:
        assert document[type_member] == type_value
    assert document[message_member] == "Rate exceeded"
    assert document["RetryAfterSeconds"] == "2"


@pytest.mark.parametrize("form", list(ErrorForm))
def test_every_error_form_reads_back_as_the_same_error(form: ErrorForm) -> None:
    """relay's reader gets the code, message and RetryAfterSeconds back from every form."""
    not_found = ServiceError(code="ResourceNotFoundException", message="gone")
    for error, retry_after_s in ((THROTTLE, 2.0), (not_found, None)):
        headers, body = error.render(form)

        read = read_error(400, headers, body)

        assert (read.code, read.message, read.retry_after_s) == (
            error.code,
            error.message,
            retry_after_s,
        )


def test_framework_errors_keep_their_coral_namespace_in_the_plain_forms() -> None:
    """A Coral rejection keeps `com.amazon.coral.service#` where the form writes the plain type."""
    error = ServiceError(code="UnknownOperationException", message="m", namespace="c.s#")

    assert json.loads(error.render(ErrorForm.CODE)[1])["code"] == "c.s#UnknownOperationException"
    assert json.loads(error.render(ErrorForm.TYPE_NAMESPACED)[1])["__type"] == (
        "c.s#UnknownOperationException"
    )


@pytest.mark.parametrize("status", [502, 503, 504])
def test_gateway_pages_are_html_naming_their_status(status: int) -> None:
    """A gateway's page is HTML (what botocore sniffs as generic) with the status in its title."""
    page = gateway_page(status)

    assert page.startswith(b"<html>")
    assert f"<title>{status} ".encode() in page
    assert read_error(status, {}, page).code == str(status)


def test_the_502_page_is_the_one_the_emulator_always_sent() -> None:
    """The 502 page keeps its bytes (nginx's page, as an ELB sends it)."""
    assert BAD_GATEWAY_BODY == (
        b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
        b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
    )


SERVICE_NOW = datetime(2026, 11, 29, 12, 20, 0, 400_000, tzinfo=UTC)


@pytest.mark.parametrize(
    "signed_at",
    ["20261129T121500Z", "20261129T122500Z", "20261129T122000Z", "Sun, 29 Nov 2026 12:24:59 GMT"],
)
def test_a_request_signed_within_five_minutes_is_in_time(signed_at: str) -> None:
    """X-Amz-Date (or Date) up to 5 minutes either side of the service's clock passes."""
    assert check_signing_time(signed_at, SERVICE_NOW) is None


def test_a_request_signed_too_early_has_expired_in_aws_words() -> None:
    """A signing time over 5 minutes behind is InvalidSignatureException "Signature expired"."""
    error = check_signing_time("20261129T120000Z", SERVICE_NOW)

    assert error is not None
    assert (error.code, error.http_status) == ("InvalidSignatureException", 400)
    assert error.message == (
        "Signature expired: 20261129T120000Z is now earlier than 20261129T121500Z "
        "(20261129T122000Z - 5 min.)"
    )


def test_a_request_signed_too_late_is_not_yet_current_in_aws_words() -> None:
    """A signing time more than 5 minutes ahead is "Signature not yet current"."""
    error = check_signing_time("20261129T124000Z", SERVICE_NOW)

    assert error is not None
    assert error.code == "InvalidSignatureException"
    assert error.message == (
        "Signature not yet current: 20261129T124000Z is still later than 20261129T122500Z "
        "(20261129T122000Z + 5 min.)"
    )


def test_a_signing_time_that_is_no_date_is_an_incomplete_signature() -> None:
    """An X-Amz-Date that is not ISO 8601 basic format is IncompleteSignatureException."""
    error = check_signing_time("yesterday", SERVICE_NOW)

    assert error is not None
    assert error.code == "IncompleteSignatureException"
    assert "'yesterday'" in error.message


def test_the_date_header_is_rfc_7231_in_gmt() -> None:
    """Answers carry the service's time as an IMF-fixdate, whatever the input's zone."""
    assert http_date(SERVICE_NOW) == "Sun, 29 Nov 2026 12:20:00 GMT"
    eastern = SERVICE_NOW.astimezone(timezone(timedelta(hours=-5)))
    assert http_date(eastern) == "Sun, 29 Nov 2026 12:20:00 GMT"


def _as_dict(fields: CallFields) -> dict[str, str | None]:
    return {
        "workflow_id": fields.workflow_id,
        "execution_id": fields.execution_id,
        "token": fields.token,
        "status": fields.status,
    }
