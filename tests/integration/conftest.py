"""Every integration test talks to moto's server and the emulator on loopback."""

import pytest


@pytest.fixture(scope="session", autouse=True)
def loopback_aws(aws_environment: dict[str, str]) -> dict[str, str]:
    """The AWS chain points at moto's server before any test or fixture here makes a client."""
    return aws_environment
