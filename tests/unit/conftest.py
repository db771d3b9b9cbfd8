"""Unit tests run offline: no moto, no emulator, no server of any kind.

The AWS chain still gets fake credentials and a region (a botocore client can be built, and no
developer's profile or config file can leak in), and every AWS endpoint points at a loopback
port nothing serves: a call made by mistake is refused at once instead of reaching AWS.
"""

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import pytest

import relay.local
from relay.local import ISOLATED_FILES, UNSET_FOR_LOOPBACK, aws_environment

UNIT_TESTS: Final = Path(__file__).resolve().parent

SERVER_FIXTURES: Final = frozenset(
    {"moto_url", "local_dynamodb", "aws_environment", "sqs", "queues", "emulator"}
)
"""The shared fixtures of tests/conftest.py that start a server or need one."""

MOTO_SERVER: Final = "moto.moto_server.werkzeug_app"
"""The module `relay.local.serve_moto` imports before it starts moto's server."""

NOWHERE: Final = "http://127.0.0.1:9"
"""The discard port on loopback: nothing serves AWS there, so a stray call is refused."""


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A unit test that asks for a server fixture, directly or through another one (an autouse
    fixture in a conftest above, say), fails before anything starts."""
    wanted = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
    if wanted:
        pytest.fail(f"a unit test starts no server; {item.nodeid} uses {sorted(wanted)}")


@pytest.fixture(autouse=True)
def offline_aws(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Fake credentials and a region, no profile, no config files, every endpoint refused on
    loopback; and moto's server refuses to start (`serve_moto` and `moto_process` both
    begin with `require_moto`)."""
    env = {**aws_environment(), "AWS_ENDPOINT_URL": NOWHERE}
    for name in UNSET_FOR_LOOPBACK:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**env, **ISOLATED_FILES}.items():
        monkeypatch.setenv(name, value)

    def refuse() -> None:
        pytest.fail("a unit test started moto's server")

    monkeypatch.setattr(relay.local, "require_moto", refuse)
    return env


@pytest.fixture(scope="session", autouse=True)
def no_moto_in_a_unit_session(request: pytest.FixtureRequest) -> Iterator[None]:
    """When a session (or an xdist worker) runs unit tests only, moto's server module is never
    even imported: nothing, fixture or test, started it."""
    yield
    only_units = all(UNIT_TESTS in item.path.parents for item in request.session.items)
    if only_units and MOTO_SERVER in sys.modules:
        pytest.fail("moto's server was started during unit tests")
