"""`relay replay` as a process: SIGINT drains and loses nothing, SIGKILL loses nothing either."""

import json
import signal
import subprocess
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from relay.dead_letter import iso_utc
from relay.emulator import Faults
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import register
from tests.support import SQSClient, delivered_keys, drain, eventually, make_steps, queue_depth
from tests.system.conftest import relay_subprocess, wait_exit

pytestmark = pytest.mark.slow


def replay_process(*args: str, emulator: Emulator | None = None) -> subprocess.Popen[bytes]:
    """Starts `python -m relay replay ARGS`, its AWS chain pointed at loopback; without an
    emulator it asks Transfer Family nothing (`--no-executions`)."""
    checks = () if emulator is not None else ("--no-executions",)
    return relay_subprocess(
        "replay",
        *("--receive-wait", "0", "--json", *checks, *args),
        transfer_url=emulator.url if emulator is not None else None,
    )


def summary_of(process: subprocess.Popen[bytes]) -> Any:
    """The one JSON object `--json` printed on stdout."""
    out, err = process.communicate(timeout=10)
    assert b"Traceback" not in err, err.decode()
    return json.loads(out)


async def fill_dlq(sqs: SQSClient, queues: Queues, bodies: list[str]) -> None:
    """Dead-letter copies of `bodies` as the worker writes them (not_found, from `queues.url`)."""
    attributes = {
        "relay-reason": "not_found",
        "relay-error-code": "ResourceNotFoundException",
        "relay-source-queue": queues.url,
        "relay-dead-lettered-at": iso_utc(datetime.now(UTC)),
    }
    for start in range(0, len(bodies), 10):
        response = await sqs.send_message_batch(
            QueueUrl=queues.dlq_url,
            Entries=[
                {
                    "Id": str(i),
                    "MessageBody": body,
                    "MessageAttributes": {
                        k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                    },
                }
                for i, body in enumerate(bodies[start : start + 10])
            ],
        )
        assert not response.get("Failed")


async def test_sigint_mid_replay_stops_promptly_and_loses_nothing(
    sqs: SQSClient, queues: Queues, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGINT during a rate-limited replay: exit 1 without replaying the rest, what it had
    read given back (visible in the DLQ right away, no lease left to lapse), and every message
    exactly once in the DLQ or on the source queue."""
    bodies = [s.to_body() for s in make_steps(40, seed=31)]
    await fill_dlq(sqs, queues, bodies)
    process = replay_process("--dlq-url", queues.dlq_url, "--rate", "10")
    processes.append(process)

    async def some_replayed() -> bool:
        return (await queue_depth(sqs, queues.url))["visible"] >= 5

    await eventually(some_replayed, timeout_s=20, what="some messages replayed")
    process.send_signal(signal.SIGINT)
    code = await wait_exit(process, timeout_s=15)
    assert code == 1, "not everything selected was replayed"
    summary = summary_of(process)
    assert summary["interrupted"] is True
    assert summary["failed"] == 0
    replayed = summary["replayed"]
    assert 5 <= replayed < 40, "the replay went on after the signal"
    # What it had not read yet was never selected; what it had read and not replayed was.
    assert replayed <= summary["selected"] <= 40
    assert summary["abandoned"] == summary["selected"] - replayed
    dlq_depth = await queue_depth(sqs, queues.dlq_url)
    assert dlq_depth == {"visible": 40 - replayed, "in_flight": 0, "delayed": 0}

    requeued = Counter(m.body for m in await drain(sqs, queues.url))
    kept = Counter(m.body for m in await drain(sqs, queues.dlq_url))
    assert requeued.total() == replayed
    assert requeued + kept == Counter(bodies), "a drained replay neither loses nor duplicates"


async def test_sigint_lets_callbacks_in_flight_finish(
    sqs: SQSClient, queues: Queues, emulator: Emulator, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGINT with slow Transfer Family calls in flight: they finish within the grace and their
    messages are deleted, and the replay exits once they have (not at the grace's end, far
    beyond this test's patience); every step is answered at most once and the rest stay in
    the DLQ."""
    steps = make_steps(20, seed=32)
    register(emulator.state, steps)
    # Spread answers: with four calls at a time, some are always in flight when SIGINT lands.
    emulator.state.set_faults(Faults(latency_ms=300, jitter_ms=1_200))
    await fill_dlq(sqs, queues, [s.to_body() for s in steps])
    process = replay_process(
        "--dlq-url", queues.dlq_url, "--to", "transfer", "--concurrency", "4",
        "--shutdown-grace", "120", emulator=emulator,
    )  # fmt: skip
    processes.append(process)

    def callbacks() -> int:
        # The replay's execution read (one listing) is not a callback.
        return sum(c.operation == "SendWorkflowStepState" for c in emulator.state.calls)

    await eventually(lambda: callbacks() >= 6, timeout_s=20, what="the first calls answered")
    answered_before = callbacks()
    process.send_signal(signal.SIGINT)
    # In-flight calls take 1.5 s at most; a replay that sat out its grace would still be
    # running long after this.
    code = await wait_exit(process, timeout_s=30)
    assert code == 1
    summary = summary_of(process)
    delivered = delivered_keys(emulator.state.calls)
    assert len(delivered) == len(set(delivered)), "a step was answered twice"
    assert summary["replayed"] == len(delivered)
    assert answered_before <= summary["replayed"] < 20
    assert summary["failed"] == 0
    assert callbacks() == len(delivered), "a call failed"

    dlq_depth = await queue_depth(sqs, queues.dlq_url)
    assert dlq_depth == {"visible": 20 - len(delivered), "in_flight": 0, "delayed": 0}
    kept = Counter(m.body for m in await drain(sqs, queues.dlq_url))
    answered = {key[2] for key in delivered}
    assert kept == Counter(s.to_body() for s in steps if s.token not in answered)
    assert await drain(sqs, queues.url) == []


async def test_sigkill_mid_replay_loses_nothing(
    sqs: SQSClient, queues: Queues, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGKILL during a replay: once the leases lapse every message is in the DLQ or on the
    source queue; one may be in both (re-enqueued, not yet deleted), none is lost."""
    bodies = [s.to_body() for s in make_steps(40, seed=33)]
    await fill_dlq(sqs, queues, bodies)
    process = replay_process(
        "--dlq-url", queues.dlq_url, "--rate", "10", "--visibility-timeout", "2"
    )
    processes.append(process)

    async def some_replayed() -> bool:
        return (await queue_depth(sqs, queues.url))["visible"] >= 5

    await eventually(some_replayed, timeout_s=20, what="some messages replayed")
    process.kill()
    await wait_exit(process, timeout_s=10)

    async def leases_lapsed() -> bool:
        return (await queue_depth(sqs, queues.dlq_url))["in_flight"] == 0

    await eventually(leases_lapsed, timeout_s=10, what="the killed replay's leases to lapse")
    requeued = Counter(m.body for m in await drain(sqs, queues.url))
    kept = Counter(m.body for m in await drain(sqs, queues.dlq_url))
    assert 5 <= requeued.total() < 40, "the kill came too late to prove anything"
    assert set(requeued.values()) == {1}, "a message was re-enqueued twice"
    assert set(kept.values()) <= {1}, "the DLQ gained a copy"
    assert set(requeued) | set(kept) == set(bodies), "a message was lost"
    # Only a message re-enqueued in the instant before the kill may also still be in the DLQ.
    assert len(set(requeued) & set(kept)) <= 2
