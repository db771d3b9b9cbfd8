"""Running the worker in-process against moto and the emulator, with test-speed settings."""

import asyncio
import socket
from collections.abc import Callable, Iterable
from typing import Any

from relay.config import RunConfig
from relay.emulator import EmulatorState
from relay.message import StepResult
from relay.worker import Worker, open_worker
from tests.support import eventually


def free_port() -> int:
    """A free loopback port (for servers that cannot report the one they bound)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fast_config(queue_url: str, **overrides: Any) -> RunConfig:
    """Production logic with test-speed timings: short polls, short backoffs, no HTTP server."""
    settings: dict[str, Any] = {
        "queue_url": queue_url,
        "exit_when_empty": True,
        "http_port": 0,
        "http_host": "127.0.0.1",
        "wait_time_s": 1,
        "empty_check_s": 0.1,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "release_base_s": 0.0,
        "release_cap_s": 0.0,
        "retry_budget_s": 2.0,
        "max_attempts": 3,
        "visibility_timeout_s": 30,
        "shutdown_grace_s": 5.0,
        "breaker_cooldown_s": 0.0,
        "log_level": "WARNING",
        "pollers": 2,
        "max_in_flight": 32,
    }
    settings.update(overrides)
    return RunConfig(**settings)


async def run_to_empty(config: RunConfig, *, timeout_s: float = 60.0) -> Worker:
    """Runs the worker until the queue is empty (`--exit-when-empty`), bounded in time."""
    async with open_worker(config) as worker:
        await asyncio.wait_for(worker.run(handle_signals=False), timeout_s)
    return worker


def register(state: EmulatorState, steps: Iterable[StepResult]) -> None:
    """Makes the emulator wait for these steps."""
    state.register_many(step.step_key for step in steps)


def outcome_totals(worker: Worker) -> dict[str, int]:
    """Finished messages by outcome, from the worker's Prometheus counter."""
    totals: dict[str, int] = {}
    for (outcome, _reason), count in worker.metrics.outcome_counts().items():
        totals[outcome] = totals.get(outcome, 0) + count
    return totals


def sample(worker: Worker, name: str, **labels: str) -> float:
    """One sample of the worker's metrics, as Prometheus would scrape it (0 when absent)."""
    value = worker.metrics.registry.get_sample_value(name, labels or None)
    return 0.0 if value is None else value


async def run_until(
    config: RunConfig, condition: Callable[[Worker], bool], *, what: str, timeout_s: float = 30.0
) -> Worker:
    """Runs the worker until `condition(worker)` holds, then stops it as SIGTERM would and waits
    for its drain (bounded in time)."""
    async with open_worker(config) as worker:
        run = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: condition(worker) or run.done(), timeout_s=timeout_s, what=what)
        worker.stop("SIGTERM")
        await asyncio.wait_for(run, timeout_s)
    return worker
