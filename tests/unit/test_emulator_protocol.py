"""The emulator's wire rules without a server: field rules, SigV4 presence and scope, errors."""

import json

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from relay.emulator.protocol import (
    CallFields,
    ServiceError,
    StepCall,
    check_authorization,
    check_protocol,
    decode_call,
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


def _as_dict(fields: CallFields) -> dict[str, str | None]:
    return {
        "workflow_id": fields.workflow_id,
        "execution_id": fields.execution_id,
        "token": fields.token,
        "status": fields.status,
    }
