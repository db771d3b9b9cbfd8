"""The incident, replayed: `relay run` under a limit of 256 descriptors and 306 idle connections
to its health port keeps receiving and delivering, keeps /healthz answering, and logs the
flood once instead of a traceback per accept."""

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys

import aiohttp
import pytest

from tests.conftest import Emulator, Queues
from tests.integration.worker_support import free_port, register
from tests.support import SQSClient, eventually, make_steps, send_bodies, total_depth
from tests.system.conftest import wait_exit

pytestmark = pytest.mark.slow

DESCRIPTOR_LIMIT = 256
IDLE_CONNECTIONS = 306
LIMITED_RELAY = (
    "import os, resource, sys\n"
    "limit = int(sys.argv[1])\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))\n"
    "os.execv(sys.executable, [sys.executable, '-m', 'relay', *sys.argv[2:]])\n"
)


def start_limited_relay(port: int, queues: Queues, emulator: Emulator) -> subprocess.Popen[bytes]:
    """`python -m relay run` on the test queue, its health port on loopback, under the limit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "COPILOT_"))}
    env["AWS_ENDPOINT_URL_TRANSFER"] = emulator.url
    command = [
        *(sys.executable, "-c", LIMITED_RELAY, str(DESCRIPTOR_LIMIT)),
        *("run", "--queue-url", queues.url, "--log-format", "json", "--wait-time", "1"),
        *("--http-host", "127.0.0.1", "--http-port", str(port), "--backoff-base", "0.01"),
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


async def open_idle(port: int) -> asyncio.StreamWriter:
    """One more idle connection to the health port. A connect the relay's full backlog left
    unanswered is made afresh at once: the kernel would resend its SYN only after a second,
    and a flood of 306 meets a full backlog many times."""
    for _ in range(100):
        try:
            async with asyncio.timeout(0.25):
                return (await asyncio.open_connection("127.0.0.1", port))[1]
        except TimeoutError:
            await asyncio.sleep(0.01)
    raise AssertionError("the health port took no connection in 100 tries")


async def healthz(url: str) -> int:
    """The status of one GET /healthz on a fresh connection (0 if it failed)."""
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url}/healthz") as response,
        ):
            return response.status
    except (aiohttp.ClientError, TimeoutError):
        return 0


async def test_idle_connections_to_the_health_port_do_not_starve_the_worker(
    sqs: SQSClient, queues: Queues, emulator: Emulator, processes: list[subprocess.Popen[bytes]]
) -> None:
    """With 306 idle connections open to its health port under a 256-descriptor limit, the
    worker delivers every message sent meanwhile, /healthz answers 200, and its output has no
    `Too many open files`, no traceback and one flood line plus one summary."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    process = start_limited_relay(port, queues, emulator)
    processes.append(process)
    await eventually(lambda: healthz(url), timeout_s=60, what="the worker healthy")

    steps = make_steps(20, seed=71)
    register(emulator.state, steps)
    idle: list[asyncio.StreamWriter] = []
    try:
        for _ in range(IDLE_CONNECTIONS):
            idle.append(await open_idle(port))
        await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

        async def all_delivered() -> bool:
            return await total_depth(sqs, queues.url) == 0

        await eventually(all_delivered, timeout_s=60, what="every message finished")
        status = await healthz(url)
    finally:
        for writer in idle:
            writer.close()
        for writer in idle:
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    process.send_signal(signal.SIGTERM)
    code = await wait_exit(process, timeout_s=30)
    stdout, stderr = (stream.decode() for stream in process.communicate(timeout=10))
    assert code == 0, stderr
    assert status == 200
    records = [json.loads(line) for line in stdout.splitlines()]
    delivered = [r for r in records if r.get("outcome") == "delivered"]
    assert len(delivered) == len(steps)
    flood = [r for r in records if "connection" in r["event"] and "cap" in r["event"]]
    assert [r["level"] for r in flood] == ["warning", "warning"], flood
    assert "Too many open files" not in stdout + stderr
    assert "Traceback" not in stdout + stderr
