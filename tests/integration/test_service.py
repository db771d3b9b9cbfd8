"""The worker as a service: /healthz, /metrics, `relay healthcheck`, and surviving an SQS
outage."""

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import aiohttp
import pytest
from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

from relay.worker import open_worker
from tests.conftest import Emulator, Queues, create_queue_pair
from tests.integration.worker_support import (
    fast_config,
    free_port,
    outcome_totals,
    register,
    sample,
)
from tests.support import eventually, make_steps, send_bodies, total_depth


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def _healthcheck(url: str) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAY_")}
    return subprocess.run(
        [sys.executable, "-m", "relay", "healthcheck", "--url", url],
        env=env,
        capture_output=True,
        timeout=30,
        check=False,
    ).returncode


async def test_health_and_metrics_report_what_happened(
    sqs: object, queues: Queues, emulator: Emulator
) -> None:
    """/healthz is 200 while polling and 503 while draining; /metrics counts every outcome the
    test observed; `relay healthcheck` exits 0 on a healthy worker."""
    steps = make_steps(5, seed=31)
    register(emulator.state, steps[:4])
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps] + ["{}"])  # type: ignore[arg-type]
    port = free_port()
    config = fast_config(queues.url, exit_when_empty=False, http_port=port)
    base = f"http://127.0.0.1:{port}"

    async with open_worker(config) as worker:
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: sum(worker.counts.values()) == 6, what="six messages finished")
        status, body = await _get(f"{base}/healthz")
        assert status == 200, body
        assert await asyncio.to_thread(_healthcheck, f"{base}/healthz") == 0
        status, metrics = await _get(f"{base}/metrics")
        worker.stop()
        await asyncio.wait_for(running, 30)

    assert status == 200
    assert 'relay_messages_total{outcome="delivered",reason=""} 4.0' in metrics
    assert 'relay_messages_total{outcome="dead_lettered",reason="validation"} 1.0' in metrics
    assert 'relay_messages_total{outcome="dead_lettered",reason="not_found"} 1.0' in metrics
    for name in (
        "relay_callback_latency_seconds_bucket",
        "relay_end_to_end_latency_seconds_count",
        "relay_oldest_in_flight_age_seconds",
        "relay_callback_attempts_total",
        "relay_throttles_total",
        "relay_in_flight",
        "relay_receive_errors_total",
        "relay_open_circuits",
        "relay_send_rate",
        "relay_polls_total",
    ):
        assert name in metrics, name
    assert outcome_totals(worker) == {"delivered": 4, "dead_lettered": 2}
    assert worker.health() == (False, "draining")


def test_healthcheck_fails_when_nothing_listens(closed_port: int) -> None:
    """`relay healthcheck` exits 1 when no worker answers."""
    assert _healthcheck(f"http://127.0.0.1:{closed_port}/healthz") == 1


@pytest.fixture
def own_moto(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[ThreadedMotoServer]]:
    """A moto server of this test's own (so it can be stopped), as the process's SQS endpoint."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://{host}:{port}")
    servers = [server]
    yield servers
    for each in servers:
        _stop(each)


def _stop(server: ThreadedMotoServer) -> None:
    server.stop()
    # ThreadedMotoServer.stop leaves the socket open; close it so the port can be reused.
    if server._server is not None:
        server._server.server_close()
        server._server = None


async def test_sqs_outage_turns_health_503_then_recovers(
    own_moto: list[ThreadedMotoServer], emulator: Emulator
) -> None:
    """SQS stopped mid-run: the worker survives, /healthz goes 503, then 200 again once SQS is
    back, and every message is delivered."""
    steps = make_steps(10, seed=32)
    register(emulator.state, steps)
    port = free_port()
    health_url = f"http://127.0.0.1:{port}/healthz"
    async with get_session().create_client("sqs") as sqs:
        queues = await create_queue_pair(sqs)
        await send_bodies(sqs, queues.url, [s.to_body() for s in steps[:5]])
        config = fast_config(queues.url, exit_when_empty=False, http_port=port, unhealthy_after=2)
        async with open_worker(config) as worker:
            running = asyncio.create_task(worker.run(handle_signals=False))
            await eventually(lambda: worker.counts["delivered"] == 5, what="first five delivered")

            host, sqs_port = own_moto[0].get_host_and_port()
            await asyncio.to_thread(_stop, own_moto[0])

            async def unhealthy() -> bool:
                return (await _get(health_url))[0] == 503

            await eventually(unhealthy, timeout_s=30, what="/healthz 503")
            assert not running.done(), "the worker died with SQS"

            restarted = ThreadedMotoServer(ip_address=host, port=sqs_port, verbose=False)
            await asyncio.to_thread(restarted.start)
            own_moto.append(restarted)
            await send_bodies(sqs, queues.url, [s.to_body() for s in steps[5:]])

            async def healthy() -> bool:
                return (await _get(health_url))[0] == 200

            await eventually(healthy, timeout_s=40, what="/healthz 200 again")
            await eventually(
                lambda: worker.counts["delivered"] == 10, timeout_s=40, what="all delivered"
            )
            worker.stop()
            await asyncio.wait_for(running, 30)
        assert sample(worker, "relay_receive_errors_total") >= 2
        assert await total_depth(sqs, queues.url) == 0
    assert sum(c.http_status == 200 for c in emulator.state.calls) == 10
