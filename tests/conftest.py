"""Shared fixtures: one moto SQS server per session, a fresh queue pair and emulator per test.

Everything talks over real HTTP on 127.0.0.1 with random ports, through unmodified aiobotocore
clients. The AWS settings reach relay the way they do in production: the standard chain's
environment variables.

Under pytest-xdist a session is one worker process: each worker starts its own servers, on
ports of its own, and nothing here is shared between workers.
"""

import functools
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import botocore.loaders
import botocore.session
import pytest
from aiobotocore.session import get_session

from relay.emulator import EmulatorState
from relay.local import (
    ISOLATED_FILES,
    UNSET_FOR_LOOPBACK,
    MotoServer,
    local_emulator,
    serve_moto,
)
from relay.local import (
    aws_environment as loopback_environment,
)
from relay.sqs import QueuePair
from relay.sqs import create_queue_pair as make_queue_pair
from tests.support import SQSClient

NOWHERE = "http://127.0.0.1:9"
"""The discard port on loopback: nothing serves AWS there, so a stray call is refused."""

Queues = QueuePair
"""A source queue and its DLQ (the one queue-pair type of relay.sqs)."""


@pytest.fixture(scope="session", autouse=True)
def botocore_data_parsed_once() -> Iterator[None]:
    """Every botocore session in the test process shares one data loader, so botocore parses
    its endpoint and service files once instead of for each of the thousands of sessions the
    tests make (a tenth of a second of CPU each). relay's code is unchanged: in production one
    process makes one session, which parses them once too."""
    with pytest.MonkeyPatch.context() as patch:
        shared = functools.cache(botocore.loaders.create_loader)
        patch.setattr(botocore.session, "create_loader", shared)
        yield


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's SQS server on a random loopback port, for the whole session.

    relay.local's server, not ThreadedMotoServer: moto's backend is not thread-safe, and its
    threaded server lets two deletes resurrect a message or two receives hand out the same
    one. relay.local's serialises the calls that would race (see `relay.local.SerialCalls`).
    """
    with serve_moto("sqs") as server:
        yield server.url


@pytest.fixture(scope="session")
def local_dynamodb() -> Iterator[MotoServer]:
    """moto's DynamoDB server on a random loopback port, for the whole session (its calls are
    counted by operation, so a test can tell what a message costs in table calls)."""
    with serve_moto("dynamodb") as server:
        yield server


@pytest.fixture(scope="session")
def aws_environment(moto_url: str) -> Iterator[dict[str, str]]:
    """The standard AWS chain pointed at loopback, with fake credentials and no profile.

    Not autouse here: the integration and system tests' conftests ask for it for every test of
    theirs, and the unit tests get an offline chain of their own (tests/unit/conftest.py)
    without starting moto.
    """
    # Transfer Family refused on loopback unless a test starts an emulator (`emulator`): a call
    # made by mistake fails at once instead of reaching AWS.
    env = loopback_environment(sqs_url=moto_url, transfer_url=NOWHERE)
    with pytest.MonkeyPatch.context() as patch:
        for name in UNSET_FOR_LOOPBACK:
            patch.delenv(name, raising=False)
        # Config files on the developer's machine must not leak into tests.
        for name, value in {**env, **ISOLATED_FILES}.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture
async def sqs() -> AsyncIterator[SQSClient]:
    """An aiobotocore SQS client on the moto server."""
    async with get_session().create_client("sqs") as client:
        yield client


async def create_queue_pair(
    sqs: SQSClient, *, fifo: bool = False, visibility_timeout_s: int = 30
) -> QueuePair:
    """A fresh queue and DLQ with a redrive policy between them (maxReceiveCount 100, above
    relay's --max-receives)."""
    name = f"relay-{uuid.uuid4().hex[:12]}"
    return await make_queue_pair(
        sqs, name, max_receive_count=100, visibility_timeout_s=visibility_timeout_s, fifo=fifo
    )


@pytest.fixture
async def queues(sqs: SQSClient) -> Queues:
    """A fresh standard queue pair for this test."""
    return await create_queue_pair(sqs)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port nothing listens on, for the whole test: bound and never listening, so a
    connection to it is refused and no other test process can take it meanwhile (a port
    merely found free could be)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@dataclass(frozen=True)
class Emulator:
    """A running emulator: its URL and its state."""

    url: str
    state: EmulatorState


@pytest.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
    """The Transfer Family emulator on a random loopback port; relay's clients point at it."""
    async with local_emulator(seed=1234) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", running.url)
        yield Emulator(url=running.url, state=running.state)
