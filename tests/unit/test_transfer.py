"""Pure parts of the Transfer Family client: proxy choice and the retry policy's delays."""

import pytest

from relay.transfer import RetryPolicy, proxy_for


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://lower:3128"}, "http://lower:3128"),
        ({"HTTP_PROXY": "http://proxy:3128"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "amazonaws.com"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": ".amazonaws.com,other"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "*"}, None),
        ({"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": "example.com"}, "http://proxy:3128"),
    ],
)
def test_proxy_follows_the_environment_like_botocore(
    env: dict[str, str], expected: str | None
) -> None:
    """HTTPS_PROXY applies to the https endpoint unless NO_PROXY names its host or a parent."""
    assert proxy_for("https://transfer.eu-west-1.amazonaws.com", env) == expected


def test_release_delay_doubles_per_receive_within_the_cap() -> None:
    """A released message waits longer on each receive, never past the cap, never under
    RetryAfterSeconds."""
    policy = RetryPolicy(release_base_s=5.0, release_cap_s=60.0)
    for receive_count, ceiling in [(1, 5.0), (2, 10.0), (3, 20.0), (4, 40.0), (9, 60.0)]:
        delay = policy.release_delay_s(receive_count)
        assert ceiling / 2 <= delay <= ceiling
    assert policy.release_delay_s(1, retry_after_s=30.0) == 30.0
