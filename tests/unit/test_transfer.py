"""Pure parts of the Transfer Family client: proxy choice."""

import pytest

from relay.awsjson.lean import proxy_for


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
