"""One run: a fresh queue pair, the messages, the emulator primed, one contender until the queue
drains (or the run's timeout), and everything it measured.
"""

import asyncio
import json
import random
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from bench.endpoints import (
    REPO,
    Endpoints,
    OtlpEndpoint,
    TableEndpoint,
    all_loopback,
    listening_addresses,
)
from bench.metrics import CallStats, CpuTrace, reduce_calls
from bench.processes import Child, Children
from bench.workloads import Contender, Workload
from relay.dedupe import create_dedupe_table
from relay.emulator.client import EmulatorAdmin
from relay.lifecycle import EmptyReadings
from relay.sqs import QueuePair, queue_total
from relay.sqs import create_queue_pair as make_queue_pair

if TYPE_CHECKING:
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_sqs import SQSClient
else:
    DynamoDBClient = SQSClient = Any

SAMPLE_EVERY_S: Final = 0.25
QUEUE_CHECK_EVERY_S: Final = 0.5
RELAY_EXIT_WAIT_S: Final = 30.0
"""relay leaves by itself after two empty readings a second apart; past this, it is stopped."""
QUEUE_VISIBILITY_S: Final = 30
MAX_RECEIVE_COUNT: Final = 20
"""The redrive policy's maxReceiveCount, above relay's --max-receives (10)."""
FILL_CONCURRENCY: Final = 16
REGISTER_CHUNK: Final = 2_000
"""Steps per admin call: the emulator accepts bodies up to 1 MiB (aiohttp's default)."""
WORKFLOWS: Final = 20


@dataclass(frozen=True, slots=True)
class Plan:
    """A run's messages: bodies in send order, their tokens (None: malformed), valid steps."""

    bodies: list[str]
    tokens: list[str | None]
    steps: list[dict[str, str]]

    @property
    def malformed(self) -> int:
        """How many bodies are malformed on purpose."""
        return sum(1 for token in self.tokens if token is None)


def plan_messages(count: int, malformed_rate: float, tag: str, seed: int) -> Plan:
    """Canonical step results (9 in 10 SUCCESS), one unique token each; every 1/rate-th body
    is malformed (not JSON, not an object, or a field missing), in a fixed rotation."""
    rng = random.Random(seed)
    workflows = ["w-" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=17))]
    workflows += [
        "w-" + "".join(rng.choices("abcdefghijklmnopqrstuvwxyz0123456789", k=17))
        for _ in range(WORKFLOWS - 1)
    ]
    every = round(1 / malformed_rate) if malformed_rate > 0 else 0
    bodies: list[str] = []
    tokens: list[str | None] = []
    steps: list[dict[str, str]] = []
    broken = 0
    for i in range(count):
        step = {
            "WorkflowId": workflows[i % WORKFLOWS],
            "ExecutionId": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "Token": f"{tag}_{i}",
            "Status": "FAILURE" if i % 10 == 9 else "SUCCESS",
        }
        if every and i % every == every // 2:
            kind = broken % 3
            broken += 1
            if kind == 0:
                bodies.append("step done: " + step["Token"])
            elif kind == 1:
                bodies.append(json.dumps([step["WorkflowId"], step["Token"]]))
            else:
                bodies.append(json.dumps({k: v for k, v in step.items() if k != "Token"}))
            tokens.append(None)
            continue
        bodies.append(json.dumps(step))
        tokens.append(step["Token"])
        steps.append(step)
    return Plan(bodies=bodies, tokens=tokens, steps=steps)


def with_copies(plan: Plan, after: int) -> Plan:
    """The plan with every body sent a second time, about `after` messages later in the queue;
    0: the plan as it is.

    Once copies start, originals and copies alternate: the copy of body j follows body
    j + after/2, so `after` messages (half originals, half copies) lie between the two.
    """
    if after <= 0:
        return plan
    lag = max(1, after // 2)
    count = len(plan.bodies)
    bodies: list[str] = []
    tokens: list[str | None] = []
    for i in range(count + lag):
        if i < count:
            bodies.append(plan.bodies[i])
            tokens.append(plan.tokens[i])
        if i >= lag:
            bodies.append(plan.bodies[i - lag])
            tokens.append(plan.tokens[i - lag])
    return Plan(bodies=bodies, tokens=tokens, steps=plan.steps)


async def create_queue_pair(sqs: SQSClient, name: str) -> QueuePair:
    """A queue with a redrive policy to its own DLQ."""
    return await make_queue_pair(
        sqs, name, max_receive_count=MAX_RECEIVE_COUNT, visibility_timeout_s=QUEUE_VISIBILITY_S
    )


async def delete_queue_pair(sqs: SQSClient, queues: QueuePair) -> None:
    """Drop both queues (fauxqs keeps everything in memory)."""
    for url in (queues.url, queues.dlq_url):
        try:
            await sqs.delete_queue(QueueUrl=url)
        except Exception as exc:  # cleanup must not hide the run's own outcome
            print(f"bench: could not delete {url}: {exc}", file=sys.stderr)


async def queue_depth(sqs: SQSClient, url: str) -> int:
    """Visible + in flight + delayed."""
    return await queue_total(sqs, url)


async def fill(sqs: SQSClient, url: str, plan: Plan) -> dict[str, float]:
    """SendMessageBatch, 10 a call, `FILL_CONCURRENCY` calls at once; token → time first sent."""
    sent_at: dict[str, float] = {}
    batches = [range(i, min(i + 10, len(plan.bodies))) for i in range(0, len(plan.bodies), 10)]
    pending = iter(batches)

    async def sender() -> None:
        for batch in pending:
            entries: Sequence[Any] = [{"Id": str(i), "MessageBody": plan.bodies[i]} for i in batch]
            started = time.time()
            response = await sqs.send_message_batch(QueueUrl=url, Entries=entries)
            if response.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed entries: {response['Failed'][:3]}")
            for i in batch:
                if (token := plan.tokens[i]) is not None:
                    # A copy's batch may finish first: the step's first sending counts.
                    sent_at[token] = min(sent_at.get(token, started), started)

    await asyncio.gather(*(sender() for _ in range(FILL_CONCURRENCY)))
    return sent_at


@dataclass(frozen=True, slots=True)
class Bench:
    """What every run shares: endpoints, clients, the children's environment, the log folder."""

    endpoints: Endpoints
    sqs: SQSClient
    admin: EmulatorAdmin
    env: Mapping[str, str]
    logs: Path
    children: Children
    table_endpoint: TableEndpoint | None = None
    """moto's DynamoDB, when a chosen contender runs with `--dedupe-table`."""
    dynamodb: DynamoDBClient | None = None
    otlp_endpoint: OtlpEndpoint | None = None
    """The OTLP receiver, when a chosen contender traces."""


def contender_argv(
    contender: Contender,
    workload: Workload,
    queues: QueuePair | None,
    steps_file: Path | None,
    table: str | None = None,
) -> list[str]:
    """The command line of one process of this contender."""
    python = sys.executable
    deadline = str(int(workload.timeout_s + 30))
    if contender.kind == "relay":
        assert queues is not None
        return [
            *contender.wrapper, python, "-m", "relay", "run",
            "--queue-url", queues.url, "--dlq-url", queues.dlq_url,
            "--exit-when-empty", "--http-port", "0", "--log-level", "WARNING",
            *(("--dedupe-table", table) if table else ()),
            *contender.args,
        ]  # fmt: skip
    if contender.kind == "floor":
        assert steps_file is not None
        module, target = "bench.contenders.floor", ["--steps", str(steps_file)]
    else:
        assert queues is not None
        module, target = f"bench.contenders.{contender.kind}", ["--queue-url", queues.url]
    return [python, "-m", module, *target, "--deadline-s", deadline, *contender.args]


async def run_contender(
    bench: Bench, workload: Workload, contender: Contender, round_index: int
) -> dict[str, Any]:
    """One run of one contender on one workload; its results as JSON-ready values."""
    count = contender.message_count(workload.messages)
    tag = f"r{uuid.uuid4().hex[:8]}"
    plan = plan_messages(count, workload.malformed_rate, tag, seed=round_index)
    if contender.kind != "floor":
        plan = with_copies(plan, workload.copies_after)
    admin, sqs = bench.admin, bench.sqs
    await admin.reset()
    await admin.set_faults(**workload.faults())
    for i in range(0, len(plan.steps), REGISTER_CHUNK):
        chunk = plan.steps[i : i + REGISTER_CHUNK]
        await admin.register((s["WorkflowId"], s["ExecutionId"], s["Token"]) for s in chunk)
    queues: QueuePair | None = None
    steps_file: Path | None = None
    fill_s = 0.0
    sent_at: dict[str, float] = {}
    run_name = f"bench-{workload.name.lower()}-{contender.name}-{tag}"
    table: str | None = None
    table_calls: dict[str, int] = {}
    before: dict[str, int] = {}
    env = {**bench.env, **dict(contender.env)}
    spans_before: int | None = None
    spans: int | None = None
    if contender.traced:
        if bench.otlp_endpoint is None:
            raise RuntimeError("a traced contender ran without the OTLP receiver")
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = bench.otlp_endpoint.url
        spans_before = await asyncio.to_thread(bench.otlp_endpoint.spans)
    try:
        if contender.dedupe_table:
            table = run_name
            await _create_table(bench, table)
            before = await asyncio.to_thread(_table_calls, bench)
        if contender.kind == "floor":
            steps_file = bench.logs / f"{run_name}-steps.jsonl"
            steps_file.write_text("".join(json.dumps(s) + "\n" for s in plan.steps))
            messages_sent = len(plan.steps)
        else:
            queues = await create_queue_pair(sqs, run_name)
            started = time.monotonic()
            sent_at = await fill(sqs, queues.url, plan)
            fill_s = time.monotonic() - started
            messages_sent = len(plan.bodies)
        argv = contender_argv(contender, workload, queues, steps_file, table)
        measured = await _run_processes(bench, workload, contender, argv, queues, run_name, env)
        if spans_before is not None and bench.otlp_endpoint is not None:
            # relay flushes its spans before it exits; the receiver has counted them by now.
            spans = await asyncio.to_thread(bench.otlp_endpoint.spans) - spans_before
        if table is not None:
            after = await asyncio.to_thread(_table_calls, bench)
            table_calls = {
                k: n - before.get(k, 0) for k, n in after.items() if n > before.get(k, 0)
            }
        if contender.kind == "floor":
            sent_at = {s["Token"]: measured.launched_at for s in plan.steps}
        calls, _ = await admin.calls(0)
        dlq = await queue_depth(sqs, queues.dlq_url) if queues else 0
        remaining = await queue_depth(sqs, queues.url) if queues else 0
    finally:
        if queues is not None:
            await delete_queue_pair(sqs, queues)
        if steps_file is not None:
            steps_file.unlink(missing_ok=True)
        if table is not None:
            await _delete_table(bench, table)
    stats = reduce_calls(calls, sent_at)
    return _result(
        workload=workload,
        contender=contender,
        round_index=round_index,
        messages_sent=messages_sent,
        steps=len(plan.steps),
        malformed_sent=plan.malformed if contender.kind != "floor" else 0,
        table_calls=table_calls,
        fill_s=fill_s,
        stats=stats,
        measured=measured,
        dlq=dlq,
        remaining=remaining,
        argv=argv,
        spans=spans,
    )


async def _create_table(bench: Bench, name: str) -> None:
    """A fresh table for one run, as the template makes it."""
    if bench.dynamodb is None:
        raise RuntimeError("a contender with dedupe_table ran without the DynamoDB endpoint")
    await create_dedupe_table(bench.dynamodb, name)


async def _delete_table(bench: Bench, name: str) -> None:
    """Drop a run's table (moto keeps everything in memory)."""
    if bench.dynamodb is None:
        return
    try:
        await bench.dynamodb.delete_table(TableName=name)
    except Exception as exc:  # cleanup must not hide the run's own outcome
        print(f"bench: could not delete table {name}: {exc}", file=sys.stderr)


def _table_calls(bench: Bench) -> dict[str, int]:
    """moto's DynamoDB calls so far, by operation."""
    if bench.table_endpoint is None:
        return {}
    return bench.table_endpoint.calls()


@dataclass(slots=True)
class Measured:
    """What the harness saw of the contender's processes."""

    launched_at: float
    ended_at: float
    drained_at: float | None
    timed_out: bool
    exit_codes: list[int]
    cpu_total_s: float
    peak_rss_bytes: list[int]
    traces: list[CpuTrace]
    sqs_trace: CpuTrace
    emulator_trace: CpuTrace
    table_trace: CpuTrace
    """moto's DynamoDB (empty without it)."""
    summaries: list[dict[str, int]]
    relay_counts: list[dict[str, int]]
    """relay's own counts per process, from its EMF documents (empty without EMF)."""
    listening: list[str]
    log_tails: list[str]


async def _run_processes(
    bench: Bench,
    workload: Workload,
    contender: Contender,
    argv: list[str],
    queues: QueuePair | None,
    run_name: str,
    env: Mapping[str, str],
) -> Measured:
    """Start the contender's processes, sample them, end them once the work is done."""
    sqs_trace, emulator_trace, table_trace = CpuTrace(), CpuTrace(), CpuTrace()
    table_child = (
        bench.table_endpoint.child if contender.dedupe_table and bench.table_endpoint else None
    )

    def sample_endpoints(at: float) -> None:
        sqs_trace.add(at, bench.endpoints.sqs.cpu_s())
        emulator_trace.add(at, bench.endpoints.emulator.cpu_s())
        if table_child is not None:
            table_trace.add(at, table_child.cpu_s())

    sample_endpoints(time.time())
    launched_at = time.time()
    processes: list[Child] = [
        bench.children.start(
            f"{contender.name}-{i}",
            argv,
            env=env,
            cwd=REPO,
            log_path=bench.logs / f"{run_name}-{i}.log",
        )
        for i in range(contender.processes)
    ]
    traces = [CpuTrace() for _ in processes]
    deadline = time.monotonic() + workload.timeout_s
    drained_at: float | None = None
    empty = EmptyReadings()
    next_queue_check = 0.0
    listening: set[str] = set()
    checked_listeners = False
    timed_out = False
    try:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            now = time.time()
            for child, trace in zip(processes, traces, strict=True):
                if child.ended is None and (ended := child.poll()) is not None:
                    trace.add(ended.ended_at, ended.cpu_s)
                elif child.ended is None:
                    trace.add(now, child.sample())
            sample_endpoints(now)
            if not checked_listeners and now - launched_at > 3.0:
                checked_listeners = True
                for child in processes:
                    listening.update(listening_addresses(child.pid))
                if not all_loopback(sorted(listening)):
                    raise RuntimeError(f"{contender.name} listens beyond loopback: {listening}")
            if all(child.ended is not None for child in processes):
                break
            if time.monotonic() > deadline:
                timed_out = True
                break
            if queues is None or time.monotonic() < next_queue_check:
                continue
            next_queue_check = time.monotonic() + QUEUE_CHECK_EVERY_S
            if empty.saw(await queue_depth(bench.sqs, queues.url)) and drained_at is None:
                drained_at = time.time()
            if drained_at is None:
                continue
            if contender.kind != "relay":
                break  # they run until told: the queue is empty, tell them
            if time.time() - drained_at > RELAY_EXIT_WAIT_S:
                break
    finally:
        for child in processes:
            child.terminate()
        for child, trace in zip(processes, traces, strict=True):
            if child.ended is None:
                ended = await asyncio.to_thread(child.stop, 10.0)
                trace.add(ended.ended_at, ended.cpu_s)
    sample_endpoints(time.time())
    ends = [child.ended for child in processes if child.ended is not None]
    return Measured(
        launched_at=launched_at,
        ended_at=max(e.ended_at for e in ends),
        drained_at=drained_at,
        timed_out=timed_out,
        exit_codes=[e.exit_code for e in ends],
        cpu_total_s=sum(e.cpu_s for e in ends),
        peak_rss_bytes=[child.peak_rss_bytes for child in processes],
        traces=traces,
        sqs_trace=sqs_trace,
        emulator_trace=emulator_trace,
        table_trace=table_trace,
        summaries=[_summary(child) for child in processes],
        relay_counts=[_relay_counts(child) for child in processes],
        listening=sorted(listening),
        log_tails=[child.log_tail(5) for child in processes],
    )


def _summary(child: Child) -> dict[str, int]:
    """The contender's own counts (its last `{"summary": ...}` line), if it printed one."""
    try:
        lines = child.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        if line.startswith('{"summary"'):
            try:
                return {k: int(v) for k, v in json.loads(line)["summary"].items()}
            except (ValueError, KeyError, TypeError):
                return {}
    return {}


def _relay_counts(child: Child) -> dict[str, int]:
    """relay's outcomes (`delivered`, `duplicate`, `dead_lettered:invalid_request`, ...) and
    `callback_attempts`, summed over its EMF documents (`--emf-interval`); empty without."""
    counts: dict[str, int] = {}
    try:
        lines = child.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return counts
    for line in lines:
        if not line.startswith('{"_aws"'):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if "Messages" in document:
            outcome, reason = str(document.get("Outcome")), str(document.get("Reason"))
            name = outcome if reason == "none" else f"{outcome}:{reason}"
            counts[name] = counts.get(name, 0) + int(document["Messages"])
        if "CallbackAttempts" in document:
            attempts = int(document["CallbackAttempts"])
            counts["callback_attempts"] = counts.get("callback_attempts", 0) + attempts
    return counts


def _summed(counts: list[dict[str, int]]) -> dict[str, int]:
    """The processes' counts added up, by name."""
    total: dict[str, int] = {}
    for one in counts:
        for name, value in one.items():
            total[name] = total.get(name, 0) + value
    return dict(sorted(total.items()))


def _count(counts: dict[str, int], name: str) -> int | None:
    """One of relay's counts: 0 if relay reported others, None if it reported none (no EMF)."""
    return counts.get(name, 0) if counts else None


def _rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _result(
    *,
    workload: Workload,
    contender: Contender,
    round_index: int,
    messages_sent: int,
    steps: int,
    malformed_sent: int,
    table_calls: dict[str, int],
    fill_s: float,
    stats: CallStats,
    measured: Measured,
    dlq: int,
    remaining: int,
    argv: list[str],
    spans: int | None = None,
) -> dict[str, Any]:
    delivered = stats.delivered_tokens
    window = stats.window_s
    cpu_active: float | None = None
    sqs_util = emulator_util = table_util = table_active = None
    if stats.first_received_at is not None and stats.last_success_at is not None:
        start, end = stats.first_received_at, stats.last_success_at
        parts = [trace.between(start, end) for trace in measured.traces]
        cpu_active = sum(p for p in parts if p is not None)
        table_active = measured.table_trace.between(start, end)
        if window:
            sqs_cpu = measured.sqs_trace.between(start, end)
            emulator_cpu = measured.emulator_trace.between(start, end)
            sqs_util = None if sqs_cpu is None else sqs_cpu / window
            emulator_util = None if emulator_cpu is None else emulator_cpu / window
            table_util = None if table_active is None else table_active / window
    table_total = measured.table_trace.between(measured.launched_at, measured.ended_at)
    discarded = sum(s.get("discarded", 0) for s in measured.summaries)
    relay_counts = _summed(measured.relay_counts)
    # relay deletes a copy of a delivered step without a call: counted by relay itself (EMF).
    relay_duplicates = relay_counts.get("duplicate", 0)
    per_1k = 1000 / delivered if delivered else None
    accounted = delivered + dlq + discarded + relay_duplicates
    # Each relay process proves its permissions at start-up with one PutItem and one
    # UpdateItem whose condition is never true (DedupeTable.check): not per message.
    writes = table_calls.get("PutItem", 0) + table_calls.get("UpdateItem", 0)
    table_writes = max(0, writes - 2 * contender.processes) if table_calls else None
    return {
        "workload": workload.name,
        "contender": contender.name,
        "kind": contender.kind,
        "processes": contender.processes,
        "round": round_index,
        "messages": messages_sent,
        "malformed": malformed_sent,
        "delivered": delivered,
        "rate_per_s": _rounded(stats.rate_per_s, 1),
        "window_s": _rounded(window, 2),
        "e2e_p50_s": _rounded(stats.e2e_p50_s),
        "e2e_p99_s": _rounded(stats.e2e_p99_s),
        "service_p50_ms": _rounded(stats.service_p50_ms, 1),
        "cpu_per_1k_active_s": _rounded(
            cpu_active * per_1k if cpu_active is not None and per_1k else None
        ),
        "cpu_per_1k_total_s": _rounded(measured.cpu_total_s * per_1k if per_1k else None),
        "cpu_active_s": _rounded(cpu_active),
        "cpu_util": _rounded(cpu_active / window if cpu_active is not None and window else None, 2),
        "cpu_total_s": _rounded(measured.cpu_total_s),
        "peak_rss_mb": round(max(measured.peak_rss_bytes) / 2**20, 1),
        "peak_rss_mb_each": [round(b / 2**20, 1) for b in measured.peak_rss_bytes],
        "calls": stats.calls,
        "successes": stats.successes,
        "throttled": stats.throttled,
        "throttled_share": _rounded(stats.throttled / stats.calls if stats.calls else None, 4),
        "server_errors": stats.server_errors,
        "other_errors": stats.other_errors,
        "duplicates": stats.duplicates,
        "calls_per_delivered": _rounded(stats.calls / delivered if delivered else None),
        "steps": steps,
        "copies": max(0, messages_sent - steps - malformed_sent),
        "calls_per_step": _rounded(stats.calls / steps if steps else None),
        "successes_per_step": _rounded(stats.successes / steps if steps else None),
        "invalid_request": stats.other_errors.get("InvalidRequestException", 0),
        "relay_counts": relay_counts,
        "relay_delivered": _count(relay_counts, "delivered"),
        "relay_duplicates": _count(relay_counts, "duplicate"),
        "relay_released": _count(relay_counts, "released"),
        "relay_dlq_invalid_request": _count(relay_counts, "dead_lettered:invalid_request"),
        "table_calls": table_calls,
        "table_writes": table_writes,
        "table_writes_per_delivered": _rounded(
            table_writes / delivered if table_writes is not None and delivered else None
        ),
        "table_server_cpu_s": _rounded(table_total),
        "table_server_cpu_per_1k_active_s": _rounded(
            table_active * per_1k if table_active is not None and per_1k else None
        ),
        "table_server_cpu_util": _rounded(table_util, 2),
        "table_server_cpu_per_call_ms": _rounded(
            table_total * 1000 / sum(table_calls.values())
            if table_total is not None and table_calls
            else None
        ),
        "spans": spans,
        "spans_per_delivered": _rounded(
            spans / delivered if spans is not None and delivered else None, 2
        ),
        "dlq": dlq,
        "discarded": discarded,
        "remaining": remaining,
        "accounted": accounted == messages_sent and remaining == 0,
        "fill_s": round(fill_s, 2),
        "wall_s": round(measured.ended_at - measured.launched_at, 2),
        "drained_s": _rounded(
            measured.drained_at - measured.launched_at if measured.drained_at else None, 2
        ),
        "timed_out": measured.timed_out,
        "exit_codes": measured.exit_codes,
        "sqs_server_cpu_util": _rounded(sqs_util, 2),
        "emulator_cpu_util": _rounded(emulator_util, 2),
        "contender_summary": measured.summaries,
        "listening": measured.listening,
        "argv": argv,
        "log_tail": measured.log_tails if any(measured.exit_codes) or measured.timed_out else [],
    }
