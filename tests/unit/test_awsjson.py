"""The JSON 1.1 error reader: every Smithy awsJson1_1 client error case, with Transfer's names."""

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from relay.awsjson.errors import (
    MAX_REQUEST_ID_CHARS,
    error_name,
    header,
    http_date,
    read_error,
    retry_after_seconds,
)

CT = {"Content-Type": "application/x-amz-json-1.1"}
URI = ":http://internal.amazon.com/coral/com.amazon.coral.validate/"
NS = "com.amazonaws.transfer#"
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
HTML_503 = b"<!DOCTYPE html><html><body><h1>503 Service Temporarily Unavailable</h1></body></html>"
HTML_504 = b"<html><body><h1>504 Gateway Time-out</h1></body></html>"


class Case(NamedTuple):
    """An answer on the wire and what reading it must give."""

    status: int
    headers: dict[str, str]
    body: bytes
    code: str
    message: str
    retry_after_s: float | None = None


def body(**members: Any) -> bytes:
    """A JSON body with these members."""
    return json.dumps(members).encode()


CASES: dict[str, Case] = {
    # The Smithy file's cases, in its order; FooError → Transfer Family names, status kept.
    "AwsJson11InvalidGreetingError": Case(
        400,
        CT,
        body(__type="InvalidRequestException", Message="Hi"),
        "InvalidRequestException",
        "Hi",
    ),
    "AwsJson11ComplexError": Case(
        400,
        CT,
        body(__type="ResourceNotFoundException", TopLevel="Top level", Nested={"Foo": "bar"}),
        "ResourceNotFoundException",
        "",
    ),
    "AwsJson11EmptyComplexError": Case(
        400, CT, body(__type="ResourceNotFoundException"), "ResourceNotFoundException", ""
    ),
    "AwsJson11FooErrorUsingXAmznErrorType": Case(
        500,
        {"X-Amzn-Errortype": "ServiceUnavailableException"},
        b"",
        "ServiceUnavailableException",
        "",
    ),
    "AwsJson11FooErrorUsingXAmznErrorTypeWithUri": Case(
        500, {"X-Amzn-Errortype": "InternalServiceError" + URI}, b"", "InternalServiceError", ""
    ),
    "AwsJson11FooErrorUsingXAmznErrorTypeWithUriAndNamespace": Case(
        500,
        {"X-Amzn-Errortype": NS + "InternalServiceError" + URI},
        b"",
        "InternalServiceError",
        "",
    ),
    "AwsJson11FooErrorUsingCode": Case(
        500, CT, body(code="ServiceUnavailableException"), "ServiceUnavailableException", ""
    ),
    "AwsJson11FooErrorUsingCodeAndNamespace": Case(
        500, CT, body(code=NS + "InternalServiceError"), "InternalServiceError", ""
    ),
    "AwsJson11FooErrorUsingCodeUriAndNamespace": Case(
        500, CT, body(code=NS + "InternalServiceError" + URI), "InternalServiceError", ""
    ),
    "AwsJson11FooErrorWithDunderType": Case(
        500, CT, body(__type="InternalServiceError"), "InternalServiceError", ""
    ),
    "AwsJson11FooErrorWithDunderTypeAndNamespace": Case(
        500, CT, body(__type=NS + "InternalServiceError"), "InternalServiceError", ""
    ),
    "AwsJson11FooErrorWithDunderTypeAndDifferentNamespace": Case(
        500,
        CT,
        body(__type="aws.different.namespace#InternalServiceError"),
        "InternalServiceError",
        "",
    ),
    "AwsJson11FooErrorWithDunderTypeUriAndNamespace": Case(
        500, CT, body(__type=NS + "InternalServiceError" + URI), "InternalServiceError", ""
    ),
    "AwsJson11FooErrorWithNestedTypeProperty": Case(
        500,
        CT,
        body(
            __type=NS + "InternalServiceError",
            ErrorDetails=[{"__type": "com.amazon.internal#ErrorDetails", "reason": "Some reason"}],
        ),
        "InternalServiceError",
        "",
    ),
    # The same forms with Transfer's 400s, as issue 12 met them.
    "throttle, __type namespaced with URI": Case(
        400,
        CT,
        body(__type=NS + "ThrottlingException" + URI, RetryAfterSeconds="2"),
        "ThrottlingException",
        "",
        2.0,
    ),
    "throttle, header only, lower-case header name": Case(
        400,
        {"x-amzn-errortype": "ThrottlingException" + URI},
        body(message="Rate exceeded", RetryAfterSeconds="3"),
        "ThrottlingException",
        "Rate exceeded",
        3.0,
    ),
    "throttle, code, RetryAfterSeconds as a number": Case(
        400,
        CT,
        body(code="ThrottlingException", RetryAfterSeconds=1.5),
        "ThrottlingException",
        "",
        1.5,
    ),
    "not found, namespaced with URI": Case(
        400,
        CT,
        body(__type=NS + "ResourceNotFoundException" + URI, Message="Unknown execution"),
        "ResourceNotFoundException",
        "Unknown execution",
    ),
    "access denied, code namespaced": Case(
        400,
        CT,
        body(code=NS + "AccessDeniedException", Message="User is not authorized"),
        "AccessDeniedException",
        "User is not authorized",
    ),
    "expired token, Coral namespace": Case(
        400,
        CT,
        body(
            __type="com.amazon.coral.service#ExpiredTokenException",
            message="The security token included in the request is expired",
        ),
        "ExpiredTokenException",
        "The security token included in the request is expired",
    ),
    "lower-case message": Case(
        400,
        CT,
        body(__type="InvalidRequestException", message="gone"),
        "InvalidRequestException",
        "gone",
    ),
    "both messages: lower case wins, as in botocore": Case(
        400,
        CT,
        body(__type="InvalidRequestException", message="lower", Message="Upper"),
        "InvalidRequestException",
        "lower",
    ),
    "header beats code beats __type": Case(
        400,
        {"X-Amzn-Errortype": "AccessDeniedException"},
        body(code="ThrottlingException", __type="InvalidRequestException"),
        "AccessDeniedException",
        "",
    ),
    "code beats __type": Case(
        400,
        CT,
        body(code="ThrottlingException", __type="InvalidRequestException"),
        "ThrottlingException",
        "",
    ),
    "an empty header falls through to the body": Case(
        400,
        {"X-Amzn-Errortype": ""},
        body(__type="InvalidRequestException"),
        "InvalidRequestException",
        "",
    ),
    "unrelated Error and Code members never override the type": Case(
        400,
        CT,
        body(
            __type="InvalidRequestException",
            Message="already answered",
            Error={"Code": "ThrottlingException"},
            Code="ThrottlingException",
        ),
        "InvalidRequestException",
        "already answered",
    ),
    "a non-string type is no type": Case(400, CT, body(__type=42, message="odd"), "400", "odd"),
    # Gateways and bodies that are not a JSON object leave only the status.
    "HTML 502": Case(502, {"Content-Type": "text/html"}, HTML_502, "502", "Bad Gateway"),
    "HTML 503 (doctype)": Case(
        503, {"Content-Type": "text/html"}, HTML_503, "503", "Service Unavailable"
    ),
    "HTML 504": Case(504, {"Content-Type": "text/html"}, HTML_504, "504", "Gateway Timeout"),
    "HTML 403": Case(403, {}, b"<html>Forbidden</html>", "403", "Forbidden"),
    "empty 503": Case(503, {}, b"", "503", "Service Unavailable"),
    "empty 400": Case(400, {}, b"", "400", "Bad Request"),
    "JSON object without a type": Case(400, CT, b"{}", "400", "Bad Request"),
    "JSON object with only a message": Case(500, CT, body(message="boom"), "500", "boom"),
    "JSON list": Case(400, CT, b'[{"__type": "ThrottlingException"}]', "400", "Bad Request"),
    "JSON null": Case(400, CT, b"null", "400", "Bad Request"),
    "JSON string": Case(500, CT, b'"ThrottlingException"', "500", "Internal Server Error"),
    "not UTF-8": Case(400, CT, b"\xff\xfe{", "400", "Bad Request"),
    "a status with no reason phrase": Case(599, {}, b"", "599", ""),
}


@pytest.mark.parametrize("name", list(CASES))
def test_every_error_form_reads_as_the_protocol_means_it(name: str) -> None:
    """Each answer gives the code, message and RetryAfterSeconds JSON 1.1 prescribes."""
    case = CASES[name]

    error = read_error(case.status, case.headers, case.body)

    assert (error.code, error.message, error.retry_after_s) == (
        case.code,
        case.message,
        case.retry_after_s,
    )
    assert error.http_status == case.status
    assert error.typed == (case.code != str(case.status))


def test_members_are_the_shape_fields_without_the_protocol_ones() -> None:
    """The body's other members stay (Resource, ResourceType); type and message members do not."""
    error = read_error(
        400,
        {"x-amzn-RequestId": "req-1"},
        body(
            __type="ResourceNotFoundException",
            code="ResourceNotFoundException",
            Message="m",
            message="m",
            Resource="e-1",
            ResourceType="Execution",
        ),
    )

    assert dict(error.members) == {"Resource": "e-1", "ResourceType": "Execution"}
    assert error.request_id == "req-1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2", 2.0),
        ("0", 0.0),
        (" 1.5 ", 1.5),
        (3, 3.0),
        (0.25, 0.25),
        ("-1", None),
        (-2, None),
        ("NaN", None),
        ("inf", None),
        (float("inf"), None),
        ("soon", None),
        ("", None),
        (True, None),
        (None, None),
        ([1], None),
        (10**400, None),  # a JSON integer beyond any float
    ],
)
def test_retry_after_seconds_is_a_finite_non_negative_number(
    raw: object, expected: float | None
) -> None:
    """RetryAfterSeconds is a string or a number; negative, NaN, inf and junk are ignored."""
    assert retry_after_seconds(raw) == expected


def test_an_ignored_retry_after_leaves_the_error_intact() -> None:
    """A throttle with a negative RetryAfterSeconds is still a throttle, with no wait attached."""
    error = read_error(400, CT, body(__type="ThrottlingException", RetryAfterSeconds="-5"))

    assert (error.code, error.retry_after_s) == ("ThrottlingException", None)


@given(
    namespace=st.sampled_from(["", "com.amazonaws.transfer#", "aws.different.namespace#", "a#b#"]),
    name=st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,40}", fullmatch=True),
    suffix=st.sampled_from(["", ":", URI, ":http://x#y/"]),
)
def test_a_decorated_name_always_reads_as_the_bare_name(
    namespace: str, name: str, suffix: str
) -> None:
    """Whatever namespace and URI (even one with a `#`) decorate a type, the bare name is read."""
    assert error_name(namespace + name + suffix) == name


def test_headers_are_matched_whatever_their_case() -> None:
    """Header names are case-insensitive, in a plain dict too."""
    assert header({"X-AMZN-ERRORTYPE": "A"}, "X-Amzn-Errortype") == "A"
    assert header({"x-amzn-errortype": "B"}, "X-Amzn-Errortype") == "B"
    assert header({}, "X-Amzn-Errortype") is None


def test_the_date_header_is_the_servers_time() -> None:
    """The answer's Date header (RFC 7231 or obsolete forms) becomes an aware UTC time."""
    expected = datetime(2026, 11, 29, 12, 20, tzinfo=UTC)

    assert http_date("Sun, 29 Nov 2026 12:20:00 GMT") == expected
    assert http_date("Sunday, 29-Nov-26 12:20:00 GMT") == expected
    assert http_date("Sun Nov 29 12:20:00 2026") == expected
    assert http_date("yesterday") is None
    assert http_date(None) is None
    error = read_error(400, {"date": "Sun, 29 Nov 2026 12:20:00 GMT"}, b"")
    assert error.server_time == expected


@pytest.mark.parametrize(
    "value",
    [
        "Fri, 31 Dec 9999 23:59:59 -1200",  # past the last instant once moved to UTC
        "Fri, 31 Dec 9999 23:59:59 +2400",  # no such zone
        "Fri, 31 Dec 99999 23:59:59 GMT",
        "Fri, 31 Dec 1999 25:61:61 GMT",
    ],
)
def test_a_date_no_datetime_can_hold_is_ignored(value: str) -> None:
    """A Date header naming no representable UTC time is no server time, and reading the answer
    that carries it does not fail."""
    error = read_error(400, {"Date": value, "X-Amzn-Errortype": "RequestExpired"}, b"")

    assert http_date(value) is None
    assert (error.code, error.server_time) == ("RequestExpired", None)


def test_the_last_representable_second_is_a_date() -> None:
    """`Fri, 31 Dec 9999 23:59:59 GMT` is a real time: reading keeps it (bounding the offset it
    would teach is the clock's business)."""
    assert http_date("Fri, 31 Dec 9999 23:59:59 GMT") == datetime(
        9999, 12, 31, 23, 59, 59, tzinfo=UTC
    )


def test_the_request_id_kept_is_bounded() -> None:
    """An `X-Amzn-RequestId` of 10,000 characters is kept to its first 256."""
    error = read_error(500, {"X-Amzn-RequestId": "r" * 10_000}, b"")

    assert error.request_id == "r" * MAX_REQUEST_ID_CHARS


_HTTP_DATES = st.builds(
    "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
    st.sampled_from(["Mon", "Fri", "Xyz"]),
    st.sampled_from([1, 31]) | st.integers(0, 99),
    st.sampled_from(["Jan", "Dec", "Foo"]),
    st.sampled_from([1, 99, 1970, 2026, 9999, 10_000]) | st.integers(0, 100_000),
    st.sampled_from([0, 23]) | st.integers(0, 99),
    st.sampled_from([0, 59]) | st.integers(0, 99),
    st.sampled_from([0, 59]) | st.integers(0, 99),
    st.sampled_from(["GMT", "UTC", "-1200", "+1400", "+2400", "-9999", "-0000", "EST", "Z"]),
)


@given(
    date=st.one_of(st.none(), st.text(max_size=60), _HTTP_DATES),
    error_type=st.one_of(st.none(), st.text(max_size=100)),
    request_id=st.one_of(st.none(), st.text(max_size=300)),
    status=st.integers(100, 999),
    body=st.one_of(
        st.binary(max_size=200),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=10,
        ).map(lambda document: json.dumps(document).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                "__type": st.text(max_size=30),
                "code": st.text(max_size=30),
                "message": st.text(max_size=30),
                "RetryAfterSeconds": st.integers() | st.floats() | st.text(max_size=10),
            },
        ).map(lambda document: json.dumps(document).encode()),
    ),
)
@example(  # the answers that once made reading fail
    date="Fri, 31 Dec 9999 23:59:59 -1200",
    error_type="InvalidSignatureException",
    request_id=None,
    status=400,
    body=b'{"__type": "ThrottlingException", "RetryAfterSeconds": 1' + b"0" * 400 + b"}",
)
def test_no_header_value_or_body_makes_reading_an_error_fail(
    date: str | None, error_type: str | None, request_id: str | None, status: int, body: bytes
) -> None:
    """Whatever the Date, error type and request id headers and the body say, `read_error`
    returns an error with a code, a bounded request id and a representable (or no) time."""
    headers = {
        name: value
        for name, value in (
            ("Date", date),
            ("X-Amzn-Errortype", error_type),
            ("X-Amzn-RequestId", request_id),
        )
        if value is not None
    }

    error = read_error(status, headers, body)

    assert error.code
    assert error.request_id is None or len(error.request_id) <= MAX_REQUEST_ID_CHARS
    assert error.server_time is None or error.server_time.tzinfo is UTC


@pytest.mark.parametrize(
    ("code", "message", "skewed"),
    [
        (
            "InvalidSignatureException",
            "Signature expired: 20261129T120000Z is now earlier than 20261129T121500Z "
            "(20261129T122000Z - 5 min.)",
            True,
        ),
        (
            "InvalidSignatureException",
            "Signature not yet current: 20261129T124000Z is still later than 20261129T122500Z "
            "(20261129T122000Z + 5 min.)",
            True,
        ),
        ("RequestExpired", "Request has expired.", True),
        ("RequestTimeTooSkewed", "", True),
        ("InvalidSignatureException", "The request signature we calculated does not match", False),
        ("ExpiredTokenException", "Signature expired", False),
        ("ThrottlingException", "", False),
    ],
)
def test_clock_skew_is_recognised_by_code_and_wording(
    code: str, message: str, skewed: bool
) -> None:
    """Only a signing time outside the service's window counts as clock skew."""
    error = read_error(400, {"X-Amzn-Errortype": code}, body(message=message))

    assert error.clock_skewed is skewed
