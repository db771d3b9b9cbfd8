"""The lean client's signer signs exactly as botocore's SigV4Auth does, key cached per day."""

import datetime
import math
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import ReadOnlyCredentials
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relay.awsjson.signing import ClockOffset, JsonSigner

KEYS = ReadOnlyCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", None)
SESSION = ReadOnlyCredentials("ASIAEXAMPLE", "secret/with+chars", "FQoGZXIvYXdzEJr//////////token")
JSON_10 = {"Content-Type": "application/x-amz-json-1.0", "User-Agent": "Botocore/1.43 relay/0.1"}


def botocore_headers(
    credentials: ReadOnlyCredentials,
    url: str,
    headers: dict[str, str],
    body: bytes,
    region: str,
    service: str,
    at: float,
) -> dict[str, str]:
    """What botocore's signer adds, at `at` (epoch seconds), read back as a plain dict."""
    request = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    signer = SigV4Auth(credentials, service, region)
    # The whole second, as a clock's reading is cut (fromtimestamp would round 1.9999995 up).
    second = math.floor(at)
    stamp = datetime.datetime.fromtimestamp(second, datetime.UTC).strftime("%Y%m%dT%H%M%SZ")

    def stamp_at(request: AWSRequest) -> None:
        request.context["timestamp"] = stamp
        SigV4Auth._modify_request_before_signing(signer, request)  # type: ignore[attr-defined]

    signer._modify_request_before_signing = stamp_at  # type: ignore[method-assign]
    signer.add_auth(request)
    return dict(request.headers.items())


def lean_headers(
    credentials: ReadOnlyCredentials,
    url: str,
    headers: dict[str, str],
    body: bytes,
    region: str,
    service: str,
    at: float,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """What `JsonSigner` sends, with the host's clock fixed at `at`."""
    monkeypatch.setattr(time, "time", lambda: at)
    signer = JsonSigner(url=url, region=region, service=service, clock=ClockOffset())
    return signer.sign(credentials, headers, body)


@pytest.mark.parametrize(
    ("url", "service", "target"),
    [
        ("https://dynamodb.eu-west-1.amazonaws.com", "dynamodb", "DynamoDB_20120810.PutItem"),
        ("https://transfer.eu-west-1.amazonaws.com/", "transfer", "TransferService.Send"),
        ("http://127.0.0.1:8123/", "sqs", "AmazonSQS.ReceiveMessage"),
        ("https://sqs.eu-west-1.amazonaws.com:443", "sqs", "AmazonSQS.DeleteMessageBatch"),
        ("http://[::1]:4566/", "dynamodb", "DynamoDB_20120810.GetItem"),
    ],
)
@pytest.mark.parametrize("credentials", [KEYS, SESSION], ids=["keys", "session"])
def test_the_lean_signature_is_botocores(
    url: str,
    service: str,
    target: str,
    credentials: ReadOnlyCredentials,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every header the lean signer sends is the one botocore's SigV4Auth would send."""
    headers = {**JSON_10, "X-Amz-Target": target}
    body = b'{"TableName":"t","Item":{"pk":{"S":"a  b\\u00e9"}}}'
    at = 1_764_720_000.25
    expected = botocore_headers(credentials, url, headers, body, "eu-west-1", service, at)
    assert lean_headers(credentials, url, headers, body, "eu-west-1", service, at, monkeypatch) == (
        expected
    )


@settings(max_examples=50, deadline=None)
@example(body=b"", target="0", at=1.9999995231628418)  # a time just short of a whole second
@given(
    body=st.binary(max_size=200),
    target=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1),
    at=st.floats(min_value=0, max_value=4_000_000_000),
)
def test_any_body_target_and_time_sign_as_botocore_does(
    body: bytes, target: str, at: float
) -> None:
    """Bodies, header values and times of every kind sign the same in both signers."""
    headers = {**JSON_10, "X-Amz-Target": f"  {target}  x"}
    expected = botocore_headers(SESSION, "https://h.example/", headers, body, "us-east-1", "s", at)
    with pytest.MonkeyPatch.context() as monkeypatch:
        got = lean_headers(
            SESSION, "https://h.example/", headers, body, "us-east-1", "s", at, monkeypatch
        )
    assert got == expected


def test_the_signing_key_is_derived_once_a_day(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls of one day reuse the key; the next day, or a rotated secret, derives a new one."""
    import relay.awsjson.signing as signing

    derivations: list[str] = []
    original = signing._hmac

    def counting(key: bytes, message: str) -> bytes:
        if key.startswith(b"AWS4"):  # the first of the four steps of a derivation
            derivations.append(message)
        return original(key, message)

    monkeypatch.setattr(signing, "_hmac", counting)
    signer = JsonSigner(url="https://h.example/", region="r", service="s", clock=ClockOffset())
    for at in (1_764_720_000.0, 1_764_720_001.0, 1_764_750_000.0, 1_764_806_400.0):
        monkeypatch.setattr(time, "time", lambda at=at: at)
        signer.sign(KEYS, JSON_10, b"{}")
    signer.sign(SESSION, JSON_10, b"{}")
    assert derivations == ["20251203", "20251204", "20251204"]
