"""`make run` (DESIGN §8): the story told on the local stack (`relay.local`) — a producer and
the worker against moto's SQS and the Transfer Family emulator, with live progress and a
summary that accounts for every message.

The demo owns its process, so it points the standard AWS chain at loopback the way a deployment
points it at AWS. moto runs in a child process; the emulator, the producer and the worker share
this one's event loop.
"""

import asyncio
import collections
import contextlib
import json
import math
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from relay.config import RunConfig
from relay.dead_letter import DeadMessage
from relay.emulator import EmulatorState, Faults
from relay.errors import ConfigError
from relay.lifecycle import EmptyReadings, Shutdown, handling_signals, wait_any
from relay.local import (
    HOST,
    aws_environment,
    local_emulator,
    moto_process,
    point_aws_at,
    require_moto,
)
from relay.message import Status, StepResult, event_body, sns_body, step_or_none
from relay.observability import configure_logging
from relay.outcomes import Outcome
from relay.sqs import (
    BatchedQueue,
    OutgoingMessage,
    QueuePair,
    create_queue_pair,
    open_sqs,
    queue_total,
    receive_messages,
    send_messages,
)
from relay.worker import Worker, open_worker

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

QUEUE_NAME: Final = "relay-demo"
BATCH: Final = 10
"""Messages per SendMessageBatch, SQS's maximum."""
FINAL_OUTCOMES: Final = (
    Outcome.DELIVERED,
    Outcome.DUPLICATE,
    Outcome.CONFLICT,
    Outcome.DEAD_LETTERED,
)
"""Outcomes that end a message; released and abandoned ones come back."""
_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN_CHARS: Final = _ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"
_BURST_CYCLE_S: Final = 6.0
_BURST_S: Final = 2.0


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoConfig:
    """What `relay demo` runs: the mix, the offered rate and the emulator's faults."""

    messages: int = 1000
    rate_per_s: float = 60.0
    """Offered rate, averaged over a burst cycle (bursts at twice it, lulls at half)."""
    throttle_rps: float = 45.0
    """The emulator's allowed call rate (0 = no throttling): below the bursts, above the lulls."""
    latency_ms: float = 5.0
    """Injected latency of every call, plus up to as much again in jitter."""
    error_rate: float = 0.02
    malformed_share: float = 0.03
    unknown_share: float = 0.03
    workflows: int = 4
    seed: int | None = None
    keep_running: bool = False
    max_receives: int = 10
    max_backlog: int = 40
    """Sent but unfinished messages at most: moto's ReceiveMessage slows as its queue grows."""
    drain_timeout_s: float = 60.0
    """How long the worker may take to finish after the last message was sent."""

    def __post_init__(self) -> None:
        if self.messages < 1:
            raise ConfigError(f"--messages must be at least 1, not {self.messages}")
        if self.rate_per_s <= 0:
            raise ConfigError(f"--rate must be above 0, not {self.rate_per_s:g}")
        if self.throttle_rps < 0:
            raise ConfigError(f"--throttle-rps must be at least 0, not {self.throttle_rps:g}")
        if self.latency_ms < 0:
            raise ConfigError(f"--latency-ms must be at least 0, not {self.latency_ms:g}")


# --- the mix -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Mix:
    """The bodies to send, in order, and the steps the emulator is told to wait for."""

    bodies: list[str]
    waiting: list[tuple[str, str, str]]
    kinds: collections.Counter[str]


def build_mix(config: DemoConfig) -> Mix:
    """Step results in the three shapes, with malformed ones and unknown executions mixed in."""
    rng = random.Random(config.seed)
    workflows = [_workflow_id(rng) for _ in range(config.workflows)]
    malformed = round(config.messages * config.malformed_share)
    unknown = round(config.messages * config.unknown_share)
    kinds = ["malformed"] * malformed + ["unknown"] * unknown
    kinds += ["valid"] * (config.messages - len(kinds))
    rng.shuffle(kinds)
    bodies: list[str] = []
    waiting: list[tuple[str, str, str]] = []
    counted: collections.Counter[str] = collections.Counter()
    for kind in kinds:
        if kind == "malformed":
            bodies.append(_malformed_body(rng, workflows))
            counted["malformed"] += 1
            continue
        step = _step(rng, rng.choice(workflows))
        if kind == "valid":
            waiting.append(step.step_key)
        shape, body = _shaped_body(rng, step)
        bodies.append(body)
        counted[kind if kind == "unknown" else shape] += 1
    return Mix(bodies=bodies, waiting=waiting, kinds=counted)


def _workflow_id(rng: random.Random) -> str:
    return "w-" + "".join(rng.choices(_ALNUM, k=17))


def _step(rng: random.Random, workflow_id: str) -> StepResult:
    # About one step in ten reports a failure, as a file-processing pipeline might.
    status = Status.FAILURE if rng.random() < 0.1 else Status.SUCCESS
    execution_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return StepResult(workflow_id, execution_id, "".join(rng.choices(_TOKEN_CHARS, k=48)), status)


def _shaped_body(rng: random.Random, step: StepResult) -> tuple[str, str]:
    """Half canonical, three in ten the custom-step event, two in ten an SNS envelope."""
    draw = rng.random()
    if draw < 0.5:
        return "canonical", step.to_body()
    if draw < 0.8:
        return "event", event_body(step)
    inner = step.to_body() if rng.random() < 0.5 else event_body(step)
    return "sns", sns_body(inner, rng)


def _malformed_body(rng: random.Random, workflows: list[str]) -> str:
    """One of the mistakes producers make; each is dead-lettered with reason validation."""
    good = json.loads(_step(rng, rng.choice(workflows)).to_body())
    mistakes: list[Callable[[], object]] = [
        lambda: "step finished OK",
        lambda: json.dumps(good)[:-9],
        lambda: [good],
        lambda: {k: v for k, v in good.items() if k != "Token"},
        lambda: {**good, "WorkflowId": "wf-" + good["WorkflowId"][2:]},
        lambda: {**good, "Status": "DONE"},
        lambda: {**good, "ExecutionId": good["ExecutionId"][:-4]},
        lambda: {**good, "Token": good["Token"] + "-retry"},
        lambda: {"Type": "Notification", "Message": "step finished"},
        lambda: {"token": good["Token"], "status": "SUCCESS"},
    ]
    made = rng.choice(mistakes)()
    return made if isinstance(made, str) else json.dumps(made)


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
    )


# --- running -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Progress:
    """What the producer has done, and how the run ended."""

    total: int
    sent: int = 0
    send_failed: int = 0
    producing: bool = True
    interrupted: bool = False
    started_at: float = field(default_factory=time.monotonic)
    finished_at: float | None = None

    @property
    def elapsed_s(self) -> float:
        """Seconds since the first message, until the worker stopped."""
        return (self.finished_at or time.monotonic()) - self.started_at


def finished_count(worker: Worker) -> int:
    """Messages the worker has finished for good."""
    return sum(worker.counts[outcome.value] for outcome in FINAL_OUTCOMES)


def throttled_calls(worker: Worker) -> int:
    """Callback attempts Transfer Family throttled."""
    return round(worker.metrics.total(worker.metrics.throttles))


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
    progress: Progress,
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
            progress.sent - finished_count(worker) > config.max_backlog
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
    sqs: SQSClient, queue_url: str, progress: Progress, worker: Worker, config: DemoConfig
) -> None:
    """Returns once production ended and the queue and the worker hold nothing (or time is up)."""
    deadline: float | None = None
    empty = EmptyReadings()
    for _ in range(int((production_limit_s(config) + config.drain_timeout_s) / 0.2) + 1):
        await asyncio.sleep(0.2)
        if progress.interrupted:
            return
        if progress.producing:
            continue
        deadline = deadline or time.monotonic() + config.drain_timeout_s
        if time.monotonic() > deadline:
            return
        total = None if worker.in_flight else await queue_total(sqs, queue_url)
        if empty.saw(total):
            return


async def run_pipeline(
    sqs: SQSClient, queues: QueuePair, mix: Mix, config: DemoConfig, console: Console
) -> tuple[Worker, Progress]:
    """The producer and the worker together until every message is finished, with progress."""
    progress = Progress(total=len(mix.bodies))
    stop = asyncio.Event()
    async with open_worker(worker_config(queues, config)) as worker:

        def interrupt(signal_name: str) -> None:
            # The first Ctrl-C stops producing and drains; a second abandons what is in flight.
            if progress.interrupted:
                worker.stop("interrupted")
            progress.interrupted = True
            stop.set()

        worker_task = asyncio.create_task(worker.run(handle_signals=False), name="worker")
        producer = asyncio.create_task(
            produce(sqs, queues.url, mix.bodies, config, progress, worker, stop), name="producer"
        )
        drained = asyncio.create_task(wait_drained(sqs, queues.url, progress, worker, config))
        try:
            with handling_signals(interrupt):
                async with show_progress(console, progress, worker):
                    await asyncio.wait([drained, worker_task], return_when=asyncio.FIRST_COMPLETED)
                    stop.set()
                    await asyncio.gather(producer, drained, return_exceptions=True)
                    worker.stop("demo finished")
                    await worker_task
        finally:
            for task in (producer, drained, worker_task):
                task.cancel()
    return worker, progress


# --- progress ----------------------------------------------------------------------------------


class _Rate:
    """Messages per second over the last few seconds."""

    def __init__(self, window_s: float = 3.0) -> None:
        self._window_s = window_s
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=256)
        self._samples.append((time.monotonic(), 0))

    def update(self, count: int) -> float:
        now = time.monotonic()
        self._samples.append((now, count))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._window_s:
            self._samples.popleft()
        first_at, first = self._samples[0]
        return (count - first) / (now - first_at) if now > first_at else 0.0


@contextlib.asynccontextmanager
async def show_progress(
    console: Console, progress: Progress, worker: Worker
) -> AsyncIterator[None]:
    """A live panel on a terminal, a plain line every two seconds otherwise."""
    rate = _Rate()
    live = Live(console=console, auto_refresh=False) if console.is_terminal else None
    interval_s = 0.25 if live else 2.0

    def render() -> RenderableType:
        finished = finished_count(worker)
        per_s = rate.update(finished)
        if live:
            return _panel(progress, worker, finished, per_s)
        return _plain_line(progress, worker, finished, per_s)

    def show(renderable: RenderableType) -> None:
        if live:
            live.update(renderable, refresh=True)
        else:
            console.print(renderable, soft_wrap=True)

    async def refresh() -> None:
        # Bounded by count as well as by the run: an hour of refreshes at most.
        for _ in range(int(3600 / interval_s)):
            await asyncio.sleep(interval_s)
            show(render())

    with live or contextlib.nullcontext():
        if live:
            # The worker's rare ERROR lines go through the live display, not across it.
            configure_logging("text", "ERROR", stream=sys.stderr)
        task = asyncio.create_task(refresh(), name="progress")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            progress.finished_at = time.monotonic()
            show(render())
    configure_logging("text", "ERROR", stream=sys.stderr)


def _outcome_text(worker: Worker) -> str:
    counts = worker.counts
    return "  ".join(f"{o.value} {counts[o.value]}" for o in Outcome if counts[o.value])


def _plain_line(progress: Progress, worker: Worker, finished: int, per_s: float) -> Text:
    return Text(
        f"{progress.elapsed_s:5.1f}s  sent {progress.sent}/{progress.total}  "
        f"finished {finished}  {per_s:.0f} msg/s  "
        f"in flight {worker.in_flight}  "
        f"throttled {throttled_calls(worker)}  {_outcome_text(worker)}"
    )


def _panel(progress: Progress, worker: Worker, finished: int, per_s: float) -> RenderableType:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    producing = "" if progress.producing else "  (all sent)"
    grid.add_row("sent", f"{progress.sent} / {progress.total}{producing}")
    grid.add_row("finished", ProgressBar(total=progress.total, completed=finished, width=40))
    grid.add_row("", f"{finished}  ·  {per_s:.0f} msg/s")
    grid.add_row("in flight", str(worker.in_flight))
    send_rate = worker.delivery.rate.rate
    grid.add_row(
        "throttled",
        f"{throttled_calls(worker)} calls"
        + (f"  ·  send rate now {send_rate:.0f}/s" if send_rate else ""),
    )
    grid.add_row("outcomes", _outcome_text(worker) or "-")
    return Group(Text(f"relay demo  {progress.elapsed_s:.1f}s", style="bold"), grid)


# --- the summary -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetters:
    """What the DLQ holds, by `relay-reason`."""

    total: int
    by_reason: collections.Counter[str]
    example: dict[str, str]
    of_delivered: int
    """Copies of steps that were also delivered: a message received twice (at-least-once)."""


async def read_dead_letters(
    sqs: SQSClient, dlq_url: str, limit: int, delivered: set[tuple[str, str, str]]
) -> DeadLetters:
    """Reads every DLQ message's `relay-reason`, then makes them all visible again."""
    by_reason: collections.Counter[str] = collections.Counter()
    example: dict[str, str] = {}
    of_delivered = 0
    handles: list[str] = []
    for _ in range(limit // BATCH + 2):
        messages = await receive_messages(
            sqs, dlq_url, max_messages=BATCH, wait_s=0, visibility_timeout_s=60
        )
        if not messages:
            break
        for message in messages:
            dead = DeadMessage.from_received(message)
            by_reason[dead.reason] += 1
            example.setdefault(dead.reason, dead.error_message[:48])
            step = step_or_none(message.body)
            of_delivered += step is not None and step.step_key in delivered
            handles.append(message.receipt_handle)
    dlq = BatchedQueue(sqs, dlq_url)
    await asyncio.gather(*(dlq.change_visibility(h, 0) for h in handles), return_exceptions=True)
    await dlq.drain()
    total = await queue_total(sqs, dlq_url)
    return DeadLetters(total=total, by_reason=by_reason, example=example, of_delivered=of_delivered)


@dataclass(frozen=True, slots=True)
class Accounting:
    """Every message sent was delivered, dead-lettered, or is still on the queue."""

    sent: int
    delivered: int
    dead_lettered: int
    still_queued: int

    @property
    def balanced(self) -> bool:
        """Nothing lost, nothing counted twice."""
        return self.sent == self.delivered + self.dead_lettered + self.still_queued

    def line(self) -> str:
        """The accounting line the summary ends with."""
        verdict = "ok" if self.balanced else "MISMATCH"
        return (
            f"accounting: sent {self.sent} = delivered {self.delivered} + dead-lettered "
            f"{self.dead_lettered} + still queued {self.still_queued}  {verdict}"
        )


def delivered_steps(emulator: EmulatorState) -> set[tuple[str, str, str]]:
    """The steps the emulator answered 200 (each answers once: a second call is refused)."""
    steps: set[tuple[str, str, str]] = set()
    for call in emulator.calls:
        if call.http_status == 200 and call.workflow_id and call.execution_id and call.token:
            steps.add((call.workflow_id, call.execution_id, call.token))
    return steps


def percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of sorted values (0 when there are none)."""
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def print_summary(
    console: Console,
    worker: Worker,
    progress: Progress,
    emulator: EmulatorState,
    dead: DeadLetters,
    accounting: Accounting,
    queues: QueuePair,
) -> None:
    """The outcome table, callback latency, the DLQ by reason, the next step, the accounting."""
    table = Table(title="outcomes by reason", title_justify="left")
    table.add_column("outcome")
    table.add_column("reason")
    table.add_column("messages", justify="right")
    order = {outcome.value: i for i, outcome in enumerate(Outcome)}
    counts = worker.metrics.outcome_counts()
    for (outcome, reason), count in sorted(counts.items(), key=lambda i: (order[i[0][0]], i[0][1])):
        if count:
            table.add_row(outcome, reason or "-", str(count))
    console.print(table)
    if counts.get((Outcome.RELEASED.value, "")):
        console.print("(released: handed back to SQS for a later receive, then finished)")

    finished = finished_count(worker)
    elapsed = max(progress.elapsed_s, 1e-9)
    console.print(f"{finished} messages finished in {elapsed:.1f}s ({finished / elapsed:.0f}/s)")
    latencies = sorted((c.answered_at - c.received_at) * 1000 for c in emulator.calls)
    console.print(
        f"callback latency ({len(latencies)} calls, as the emulator saw them): "
        f"p50 {percentile(latencies, 0.5):.1f} ms  p90 {percentile(latencies, 0.9):.1f} ms  "
        f"p99 {percentile(latencies, 0.99):.1f} ms",
        soft_wrap=True,
    )
    answers = ", ".join(f"{code} {n}" for code, n in sorted(emulator.counts.items()))
    console.print(f"emulator answered: {answers}", soft_wrap=True)
    if emulator.faults.throttle_rps:
        send_rate = worker.delivery.rate.rate
        console.print(
            f"throttled {throttled_calls(worker)} calls (the emulator allows "
            f"{emulator.faults.throttle_rps:g}/s); the worker's send rate "
            + (f"adapted, now {send_rate:.0f}/s" if send_rate else "never needed to adapt"),
            soft_wrap=True,
        )

    dlq = Table(title=f"dead-letter queue: {dead.total} messages", title_justify="left")
    dlq.add_column("relay-reason")
    dlq.add_column("messages", justify="right")
    dlq.add_column("example error")
    for reason, count in dead.by_reason.most_common():
        dlq.add_row(reason, str(count), Text(dead.example.get(reason, "")))
    console.print(dlq)
    if dead.of_delivered:
        console.print(
            f"{dead.of_delivered} DLQ cop(ies) of delivered steps: a message received twice "
            "(SQS is at-least-once); not counted as dead-lettered below"
        )
    console.print("next, replay the not_found ones once their executions exist:")
    console.print(f"  relay replay --dlq-url {queues.dlq_url} --reason not_found", soft_wrap=True)
    if progress.send_failed:
        console.print(f"{progress.send_failed} message(s) SQS did not accept", style="bold red")
    console.print(
        accounting.line(), style="bold green" if accounting.balanced else "bold red", soft_wrap=True
    )


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
    configure_logging("text", "ERROR", stream=sys.stderr)
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
                print_summary(console, worker, progress, emulator.state, dead, accounting, queues)
                if progress.interrupted:
                    return 130
                if config.keep_running:
                    await keep_endpoints_up(console, variables, queues)
    return 0 if accounting.balanced and not progress.send_failed else 1
