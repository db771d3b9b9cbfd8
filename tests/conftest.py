"""Shared fixtures: one moto SQS server per session, a fresh queue pair and emulator per test.

Everything talks over real HTTP on 127.0.0.1 with random ports, through unmodified aiobotocore
clients. The AWS settings reach relay the way they do in production: the standard chain's
environment variables.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import pytest
from aiobotocore.session import get_session

from relay.demo import serve_moto_sqs
from relay.emulator import EmulatorState, run_emulator
from relay.sqs import create_queue_pair as make_queue_pair
from tests.support import SQSClient

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """moto's SQS server on a random loopback port, for the whole session.

    The demo's server, not ThreadedMotoServer: moto's backend is not thread-safe, and its
    threaded server lets two deletes resurrect a message or two receives hand out the same
    one. The demo's serialises the calls that would race (see `relay.demo.SerialCalls`).
    """
    with serve_moto_sqs() as url:
        yield url


@pytest.fixture(scope="session", autouse=True)
def aws_environment(moto_url: str) -> Iterator[dict[str, str]]:
    """The standard AWS chain pointed at loopback, with fake credentials and no profile."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL_SQS": moto_url,
    }
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, value)
        # Config files on the developer's machine must not leak into tests.
        patch.setenv("AWS_CONFIG_FILE", os.devnull)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        yield env


@pytest.fixture
async def sqs() -> AsyncIterator[SQSClient]:
    """An aiobotocore SQS client on the moto server."""
    async with get_session().create_client("sqs") as client:
        yield client


@dataclass(frozen=True)
class Queues:
    """A source queue and its DLQ (redrive maxReceiveCount 100, above relay's --max-receives)."""

    url: str
    dlq_url: str
    name: str


async def create_queue_pair(
    sqs: SQSClient, *, fifo: bool = False, visibility_timeout_s: int = 30
) -> Queues:
    """Creates a fresh queue and DLQ with a redrive policy between them."""
    name = f"relay-{uuid.uuid4().hex[:12]}"
    pair = await make_queue_pair(
        sqs, name, max_receive_count=100, visibility_timeout_s=visibility_timeout_s, fifo=fifo
    )
    return Queues(url=pair.url, dlq_url=pair.dlq_url, name=name)


@pytest.fixture
async def queues(sqs: SQSClient) -> Queues:
    """A fresh standard queue pair for this test."""
    return await create_queue_pair(sqs)


@dataclass(frozen=True)
class Emulator:
    """A running emulator: its URL and its state."""

    url: str
    state: EmulatorState


@pytest.fixture
async def emulator(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Emulator]:
    """The Transfer Family emulator on a random loopback port; relay's clients point at it."""
    async with run_emulator(host="127.0.0.1", port=0, seed=1234) as running:
        monkeypatch.setenv("AWS_ENDPOINT_URL_TRANSFER", running.url)
        yield Emulator(url=running.url, state=running.state)
