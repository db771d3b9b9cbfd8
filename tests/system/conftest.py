"""What the subprocess tests share: starting `python -m relay`, waiting for it, cleaning up."""

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.support import eventually


def relay_subprocess(*args: str, transfer_url: str | None = None) -> subprocess.Popen[bytes]:
    """Starts `python -m relay ARGS` with the test's AWS chain (and emulator) on loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "COPILOT_"))}
    if transfer_url is not None:
        env["AWS_ENDPOINT_URL_TRANSFER"] = transfer_url
    command = [sys.executable, "-m", "relay", *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def wait_exit(process: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The exit code, polled without blocking the event loop (the emulator runs on it)."""
    await eventually(lambda: process.poll() is not None, timeout_s=timeout_s, what="process exit")
    code = process.returncode
    assert code is not None
    return code


@pytest.fixture(scope="session", autouse=True)
def loopback_aws(aws_environment: dict[str, str]) -> dict[str, str]:
    """The AWS chain points at moto's server before any test or fixture here makes a client
    (and the subprocesses inherit it)."""
    return aws_environment


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test started; any still running at the end is killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)
