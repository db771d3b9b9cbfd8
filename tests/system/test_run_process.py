"""`relay run` as ECS runs it: start-up checks with exit 2, JSON log lines, drain jobs."""

import asyncio
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import Emulator, Queues
from tests.integration.worker_support import register
from tests.support import SQSClient, make_steps, send_bodies, total_depth

pytestmark = pytest.mark.slow


def run_relay(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m relay run ...` to completion, with the test's AWS chain."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RELAY_", "COPILOT_"))}
    return subprocess.run(
        [sys.executable, "-m", "relay", "run", "--http-port", "0", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_missing_queue_is_exit_2_with_one_line(moto_url: str) -> None:
    """A queue that does not exist stops start-up: exit 2, the reason on one line."""
    result = run_relay("--queue-url", f"{moto_url}/123456789012/no-such-queue")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "no-such-queue" in lines[0]
    assert "Traceback" not in result.stderr


async def test_a_queue_without_redrive_policy_needs_a_dlq_url(sqs: SQSClient) -> None:
    """Without --dlq-url and without a RedrivePolicy the worker refuses to start (exit 2)."""
    queue = (await sqs.create_queue(QueueName="relay-no-redrive"))["QueueUrl"]
    result = await asyncio.to_thread(run_relay, "--queue-url", queue)
    assert result.returncode == 2
    assert "RedrivePolicy" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_drain_job_logs_one_json_line_per_message_without_whole_tokens(
    sqs: SQSClient, queues: Queues, emulator: Emulator
) -> None:
    """`--exit-when-empty` delivers and exits 0; every stdout line is JSON; each finished message
    has one line with its outcome and ids, and no token appears whole."""
    steps = make_steps(3, seed=61)
    register(emulator.state, steps[:2])
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])

    # In a thread: the emulator serves from this test's event loop.
    result = await asyncio.to_thread(
        run_relay,
        "--queue-url",
        queues.url,
        "--exit-when-empty",
        "--max-receives",
        "200",  # above the redrive policy's 100: the start-up check warns
        env={"AWS_ENDPOINT_URL_TRANSFER": emulator.url, "RELAY_BACKOFF_BASE": "0.01"},
    )

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    finished = [r for r in records if r["event"] == "message finished"]
    assert sorted(r["outcome"] for r in finished) == ["dead_lettered", "delivered", "delivered"]
    for record in finished:
        assert {"message_id", "workflow_id", "execution_id", "token", "attempts"} <= set(record)
        assert "timestamp" in record
        assert "level" in record
    for step in steps:
        assert step.token not in result.stdout
    assert any("maxReceiveCount" in r["event"] for r in records)
    assert records[-1]["event"] == "worker stopped"
    assert "AWS_SECRET_ACCESS_KEY" not in result.stdout
    assert "testing" not in result.stdout
    assert await total_depth(sqs, queues.url) == 0
