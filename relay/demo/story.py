"""The demo's story, start to end: the local stack up, a producer and the worker running
together until every message is finished, the DLQ read, the summary, then the bulk replay an
operator runs after it (`replay_act`), the accounting after that, the exit code."""

import asyncio
import contextlib
import io
import math
import sys
import time
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console
from rich.text import Text

from relay.config import DemoConfig, RunConfig
from relay.demo.accounting import Accounting, DemoProgress, delivered_steps, read_dead_letters
from relay.demo.mix import Mix, build_mix
from relay.demo.panel import print_demo_summary, show_demo_progress
from relay.demo.replay_act import bulk_replay
from relay.emulator import Faults
from relay.lifecycle import Shutdown, cancel_and_wait, handling_signals, wait_any, wait_until_empty
from relay.local import (
    HOST,
    aws_environment,
    local_emulator,
    moto_process,
    point_aws_at,
    require_moto,
)
from relay.observability import configure_logging
from relay.sqs import (
    OutgoingMessage,
    QueuePair,
    create_queue_pair,
    open_sqs,
    queue_total,
    send_messages,
)
from relay.worker import Worker, open_worker

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

QUEUE_NAME: Final = "relay-demo"
EMF_INTERVAL_S: Final = 5.0
"""`relay demo --emf`: the worker's EMF interval (60 s on AWS; short here, to see it)."""
BATCH: Final = 10
"""Messages per SendMessageBatch, SQS's maximum."""
EMPTY_CHECK_S: Final = 0.2
"""How often the story reads whether the queue and the worker hold nothing."""
_BURST_CYCLE_S: Final = 6.0
_BURST_S: Final = 2.0


# --- the worker ---------------------------------------------------------------------------------


def worker_config(queues: QueuePair, config: DemoConfig) -> RunConfig:
    """Production logic with demo timings: released messages come back within seconds."""
    return RunConfig(
        queue_url=queues.url,
        dlq_url=queues.dlq_url,
        http_host=HOST,
        http_port=0,
        max_receives=config.max_receives,
        pollers=2,
        wait_time_s=1,
        visibility_timeout_s=30,
        retry_budget_s=5.0,
        max_attempts=4,
        backoff_base_s=0.05,
        backoff_cap_s=1.0,
        release_base_s=0.5,
        release_cap_s=4.0,
        shutdown_grace_s=5.0,
        # Dead-lettering is the demo's point, and the worker logs each one as a warning.
        log_level="ERROR",
        log_format="text",
        emf_interval_s=EMF_INTERVAL_S if config.emf else 0.0,
    )


class EmfLines(io.StringIO):
    """Where `relay demo --emf` has the worker write its EMF documents: printed through the
    console, so they scroll above the live panel instead of across it."""

    def __init__(self, console: Console) -> None:
        super().__init__()
        self._console = console

    def write(self, text: str) -> int:
        for line in text.splitlines():
            self._console.print(Text(f"EMF {line}", style="dim"), soft_wrap=True)
        return len(text)


# --- running -----------------------------------------------------------------------------------


def production_limit_s(config: DemoConfig) -> float:
    """The longest production may take: four times the plan, for a slow machine."""
    return config.messages / config.rate_per_s * 4 + 30


def offered_rate(elapsed_s: float, average: float) -> float:
    """Bursts at twice the average for 2 s of every 6, half of it between.

    The bursts run above the emulator's allowed rate, so throttling comes and goes, as it does
    when many transfers finish at once.
    """
    return average * (2.0 if elapsed_s % _BURST_CYCLE_S < _BURST_S else 0.5)


async def produce(
    sqs: SQSClient,
    queue_url: str,
    bodies: list[str],
    config: DemoConfig,
    progress: DemoProgress,
    worker: Worker,
    stop: asyncio.Event,
) -> None:
    """Sends the bodies in batches at the offered rate, never far ahead of the worker."""
    deadline = time.monotonic() + production_limit_s(config)
    due = time.monotonic()
    for start in range(0, len(bodies), BATCH):
        if stop.is_set() or time.monotonic() > deadline:
            break
        await _wait_until(due, stop)
        # Backpressure: moto's receive cost grows with the queue, and so would every latency.
        # The worker signals no event per finished message; a 20 ms poll costs nothing.
        while (  # noqa: ASYNC110
            progress.sent - worker.finished > config.max_backlog
            and not stop.is_set()
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.02)
        batch = bodies[start : start + BATCH]
        failures = await send_messages(sqs, queue_url, [OutgoingMessage(body=b) for b in batch])
        progress.sent += len(batch) - len(failures)
        progress.send_failed += len(failures)
        rate = offered_rate(time.monotonic() - progress.started_at, config.rate_per_s)
        # A producer that fell behind catches up by at most a second's worth, not all at once.
        due = max(due, time.monotonic() - 1.0) + len(batch) / rate
    progress.producing = False


async def _wait_until(moment: float, stop: asyncio.Event) -> None:
    delay = moment - time.monotonic()
    if delay > 0:
        await wait_any(stop, timeout_s=delay)


async def wait_drained(
    sqs: SQSClient,
    queue_url: str,
    producer: asyncio.Task[None],
    worker: Worker,
    config: DemoConfig,
    stop: asyncio.Event,
) -> None:
    """Returns once production ended and the queue and the worker hold nothing, once `stop` is
    set, or `drain_timeout_s` after production ended."""
    # Production ends on its own deadline, or at `stop`.
    await asyncio.wait([producer])

    async def total() -> int | None:
        return None if worker.in_flight else await queue_total(sqs, queue_url)

    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(config.drain_timeout_s):
            await wait_until_empty(total, interval_s=EMPTY_CHECK_S, stop=stop)


async def abandon_when_asked(shutdown: Shutdown, worker: Worker) -> None:
    """A second Ctrl-C abandons what the worker still has in flight."""
    await shutdown.abandon.wait()
    worker.stop("interrupted")


def log_errors() -> None:
    """The demo's logging: errors only, as text on whatever holds `sys.stderr` now (the live
    panel, while it shows: the worker's rare ERROR lines go through it, not across it)."""
    configure_logging("text", "ERROR", stream=sys.stderr)


async def run_pipeline(
    sqs: SQSClient, queues: QueuePair, mix: Mix, config: DemoConfig, console: Console
) -> tuple[Worker, DemoProgress]:
    """The producer and the worker together until every message is finished, with progress.

    The first Ctrl-C (or SIGTERM) stops producing and drains the worker; a second abandons
    what is in flight.
    """
    progress = DemoProgress(total=len(mix.bodies))
    shutdown = Shutdown()
    emf = EmfLines(console) if config.emf else None
    async with open_worker(worker_config(queues, config), emf_stream=emf) as worker:
        worker_task = asyncio.create_task(worker.run(handle_signals=False), name="worker")
        producer = asyncio.create_task(
            produce(sqs, queues.url, mix.bodies, config, progress, worker, shutdown.requested),
            name="producer",
        )
        drained = asyncio.create_task(
            wait_drained(sqs, queues.url, producer, worker, config, shutdown.requested),
            name="drained",
        )
        abandon = asyncio.create_task(abandon_when_asked(shutdown, worker), name="abandon")
        try:
            with handling_signals(shutdown):
                async with show_demo_progress(console, progress, worker.status):
                    log_errors()
                    await asyncio.wait([drained, worker_task], return_when=asyncio.FIRST_COMPLETED)
                    # Drained, or stopped by a signal; or the worker failed, and nothing should
                    # be sent any more (its error is raised below).
                    await cancel_and_wait([producer, drained])
                    worker.stop("demo finished")
                    await worker_task
                log_errors()
        finally:
            progress.interrupted = shutdown.is_requested
            await cancel_and_wait([producer, drained, worker_task, abandon])
    return worker, progress


# --- after the run -------------------------------------------------------------------------------


async def keep_endpoints_up(console: Console, variables: dict[str, str], queues: QueuePair) -> None:
    """Prints how to reach the endpoints and waits for Ctrl-C (or SIGTERM)."""
    exports = " ".join(f"{name}={value}" for name, value in variables.items())
    console.print("\nthe endpoints stay up; in another shell:")
    console.print(f"  export {exports}", soft_wrap=True)
    console.print(f"  queue: {queues.url}\n  DLQ:   {queues.dlq_url}", soft_wrap=True)
    console.print("Ctrl-C to stop.")
    shutdown = Shutdown()
    with handling_signals(shutdown):
        await shutdown.requested.wait()


# --- the command -------------------------------------------------------------------------------


def run_demo(config: DemoConfig, console: Console | None = None) -> int:
    """`relay demo`: 0 when every message sent is accounted for, 1 otherwise, 130 on Ctrl-C."""
    require_moto()
    # No markup: error texts such as "must match w-[a-z0-9]{17}" are printed as they are.
    return asyncio.run(_demo(config, console or Console(highlight=False, markup=False)))


async def _demo(config: DemoConfig, console: Console) -> int:
    log_errors()
    mix = build_mix(config)
    faults = Faults(
        latency_ms=config.latency_ms,
        jitter_ms=config.latency_ms,
        throttle_rps=config.throttle_rps,
        # Half a second's worth: the worker's bursts (a receive of ten at once) meet it.
        throttle_burst=max(1, math.ceil(config.throttle_rps / 2)),
        error_rate=config.error_rate,
    )
    with moto_process("sqs") as sqs_url:
        async with local_emulator(faults=faults, seed=config.seed) as emulator:
            variables = aws_environment(sqs_url=sqs_url, transfer_url=emulator.url)
            point_aws_at(variables)
            emulator.state.register_many(mix.waiting)
            async with open_sqs() as sqs:
                # A redrive policy SQS applies only if relay could not.
                queues = await create_queue_pair(
                    sqs, QUEUE_NAME, max_receive_count=config.max_receives + 5
                )
                kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(mix.kinds.items()))
                throttle = (
                    f"allows {config.throttle_rps:g} calls/s, " if config.throttle_rps else ""
                )
                console.print(
                    f"relay demo: {config.messages} step results ({kinds}) at ~"
                    f"{config.rate_per_s:g}/s in bursts; the emulator {throttle}fails "
                    f"{config.error_rate:.0%} of calls with 5xx and takes "
                    f"{config.latency_ms:g}-{2 * config.latency_ms:g} ms",
                    soft_wrap=True,
                )
                worker, progress = await run_pipeline(sqs, queues, mix, config, console)
                delivered = delivered_steps(emulator.state)
                dead = await read_dead_letters(sqs, queues.dlq_url, progress.sent, delivered)
                accounting = Accounting(
                    sent=progress.sent,
                    delivered=len(delivered),
                    dead_lettered=dead.total - dead.of_delivered,
                    still_queued=await queue_total(sqs, queues.url),
                )
                print_demo_summary(
                    console, worker.status(), progress, emulator.state, dead, accounting
                )
                if progress.interrupted:
                    return 130
                after = await bulk_replay(
                    console, sqs, queues, mix, emulator.state, sent=progress.sent, seed=config.seed
                )
                console.print(
                    "after the replay, " + after.line(),
                    style="bold green" if after.balanced else "bold red",
                    soft_wrap=True,
                )
                if config.keep_running:
                    await keep_endpoints_up(console, variables, queues)
    balanced = accounting.balanced and after.balanced
    return 0 if balanced and not progress.send_failed else 1
