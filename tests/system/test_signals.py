"""`relay run` as a process: SIGTERM drains and exits 0, SIGKILL loses nothing after a restart."""

import json
import signal
import subprocess
from collections import Counter

import pytest

from relay.emulator import Faults
from relay.message import StepResult
from tests.conftest import Emulator, Queues
from tests.integration.worker_support import fast_config, register, run_to_empty
from tests.support import SQSClient, drain, eventually, make_steps, queue_depth, send_bodies
from tests.system.conftest import relay_subprocess, wait_exit

pytestmark = pytest.mark.slow


def relay_process(queues: Queues, emulator: Emulator, *args: str) -> subprocess.Popen[bytes]:
    """Starts `python -m relay run` on the test queue, its AWS chain pointed at loopback."""
    return relay_subprocess(
        *("run", "--queue-url", queues.url, "--http-port", "0", "--log-format", "json"),
        *("--backoff-base", "0.01", "--backoff-cap", "0.05", *args),
        transfer_url=emulator.url,
    )


async def test_sigterm_awaits_calls_on_the_wire_past_the_grace_and_loses_nothing(
    sqs: SQSClient, queues: Queues, emulator: Emulator, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGTERM during callbacks slower than the grace: the calls on the wire are not cut but
    answered, and the worker exits 0 once they are (not at its call timeout, which is far
    beyond this test's patience); every message delivered, none abandoned; a second run finds
    nothing to do, and each step is answered exactly once."""
    steps = make_steps(6, seed=21)
    register(emulator.state, steps)
    # 4 s: room for a loaded machine between seeing the messages in flight and the signal
    # landing, while the calls are still on the wire.
    emulator.state.set_faults(Faults(latency_ms=4_000))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    # A long poll cancelled at the signal is still answered by moto (real SQS may do the same):
    # what it takes comes back after the visibility timeout, so keep both short here.
    process = relay_process(
        queues,
        emulator,
        *("--shutdown-grace", "1", "--visibility-timeout", "15", "--retry-budget", "5"),
        *("--wait-time", "1", "--call-timeout", "120"),
    )
    processes.append(process)

    async def all_received() -> bool:
        return (await queue_depth(sqs, queues.url))["in_flight"] == 6

    await eventually(all_received, what="all six messages in flight")
    process.send_signal(signal.SIGTERM)
    # A worker that waited for its calls' timeout, or for the drain's bound past it, would
    # still be running long after this; one that cut the calls would abandon their messages.
    code = await wait_exit(process, timeout_s=30)

    assert code == 0
    stdout = process.communicate(timeout=10)[0].decode()
    events = [json.loads(line) for line in stdout.splitlines()]
    [draining] = [e for e in events if e["event"] == "draining"]
    assert draining["in_flight"] > 0, "the signal came after the calls had been answered"
    outcomes = [e["outcome"] for e in events if "outcome" in e]
    assert outcomes == ["delivered"] * 6
    assert events[-1]["event"] == "worker stopped"
    assert await _depth(sqs, queues.url) == 0

    emulator.state.set_faults(Faults())
    await run_to_empty(fast_config(queues.url))
    _assert_each_step_answered_once(emulator, steps)
    assert [c.error_code for c in emulator.state.calls] == [None] * 6
    assert await drain(sqs, queues.dlq_url) == []


async def test_sigkill_mid_flight_then_restart_loses_nothing(
    sqs: SQSClient, queues: Queues, emulator: Emulator, processes: list[subprocess.Popen[bytes]]
) -> None:
    """SIGKILL with callbacks in flight, then a restart: every step answered, every message
    accounted for."""
    steps = make_steps(30, seed=22)
    register(emulator.state, steps)
    emulator.state.set_faults(Faults(latency_ms=300))
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    process = relay_process(
        queues, emulator, "--max-in-flight", "5", "--visibility-timeout", "5", "--retry-budget", "2"
    )
    processes.append(process)

    await eventually(
        lambda: sum(c.http_status == 200 for c in emulator.state.calls) >= 5,
        what="some callbacks delivered",
    )
    process.kill()
    await wait_exit(process, timeout_s=10)

    emulator.state.set_faults(Faults())
    worker = await run_to_empty(fast_config(queues.url), timeout_s=60)

    # Every step answered exactly once, across both processes: nothing lost, nothing twice.
    _assert_each_step_answered_once(emulator, steps)
    restarted = worker.counts["delivered"]
    answered_by_killed = 30 - restarted
    assert answered_by_killed >= 5
    assert restarted > 0, "the kill came too late to prove anything"
    # A callback the killed process landed but did not delete comes back as "step already
    # completed" and is dead-lettered; nothing else may reach the DLQ.
    dead = await drain(sqs, queues.dlq_url)
    assert all(m.attributes["relay-reason"] == "invalid_request" for m in dead)
    assert len(dead) <= answered_by_killed
    assert await _depth(sqs, queues.url) == 0


def _assert_each_step_answered_once(emulator: Emulator, steps: list[StepResult]) -> None:
    answered = Counter(c.token for c in emulator.state.calls if c.http_status == 200)
    assert answered == Counter(s.token for s in steps)


async def _depth(sqs: SQSClient, queue_url: str) -> int:
    return sum((await queue_depth(sqs, queue_url)).values())
