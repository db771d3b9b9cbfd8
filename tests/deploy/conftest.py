"""Fixtures for the deploy checks: the template and the Dockerfile, read once per module."""

from typing import Any

import pytest

from tests.deploy.support import Instruction, dockerfile_stages, load_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """deploy/cloudformation/relay.yaml as plain data."""
    return load_template()


@pytest.fixture(scope="module")
def final_stage() -> list[Instruction]:
    """The instructions of deploy/Dockerfile's last stage, the image that runs."""
    return dockerfile_stages()[-1]
