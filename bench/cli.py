"""`python -m bench [--workloads W1,W2] [--messages N] [--repeats R] ...` (what `make bench` runs).

Starts fauxqs and the emulator on 127.0.0.1, runs every contender of every chosen workload
(order alternating between rounds and workloads so drift hits all alike), prints the table and
the targets, and writes bench/results/<timestamp>-<workload>.json and latest.json.
"""

import argparse
import asyncio
import contextlib
import dataclasses
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from bench import report
from bench.endpoints import (
    REPO,
    OtlpEndpoint,
    SetupError,
    TableEndpoint,
    start_endpoints,
    start_otlp_endpoint,
    start_table_endpoint,
)
from bench.harness import Bench, run_contender
from bench.processes import Children
from bench.workloads import WORKLOADS, Contender, Workload, workload_named
from relay.emulator.client import EmulatorAdmin

REGION = "us-east-1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options; `BENCH_ARGS` in `make bench` passes them."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--workloads",
        default=",".join(w.name for w in WORKLOADS),
        help="comma-separated workloads to run (default: all)",
    )
    parser.add_argument(
        "--contenders", default=None, help="comma-separated contender names to keep (default: all)"
    )
    parser.add_argument(
        "--messages", type=int, default=None, help="base message count of every chosen workload"
    )
    parser.add_argument("--repeats", type=int, default=1, help="rounds per workload (default 1)")
    parser.add_argument("--timeout", type=float, default=None, help="per-run timeout in seconds")
    parser.add_argument(
        "--results-dir", type=Path, default=report.RESULTS_DIR, help="where the JSON goes"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--wrap-relay",
        default=None,
        metavar="COMMAND",
        help='prefix for relay\'s command line, e.g. "py-spy record --format raw -o W1.txt --" '
        "(its numbers then measure the wrapper too)",
    )
    parser.add_argument("--list", action="store_true", help="list workloads and contenders")
    parser.add_argument(
        "--render",
        type=Path,
        default=None,
        metavar="RESULTS.json",
        help="print a results file (e.g. bench/results/latest.json) as Markdown for the README",
    )
    options = parser.parse_args(argv)
    if options.repeats < 1 or (options.messages is not None and options.messages < 1):
        parser.error("--repeats and --messages must be at least 1")
    return options


def chosen_workloads(options: argparse.Namespace) -> list[Workload]:
    """The workloads asked for, with the count, timeout and contender filter applied."""
    keep = None if options.contenders is None else set(options.contenders.split(","))
    chosen = []
    for name in options.workloads.split(","):
        workload = workload_named(name.strip())
        if options.messages is not None:
            workload = workload.with_messages(options.messages)
        if options.timeout is not None:
            workload = dataclasses.replace(workload, timeout_s=options.timeout)
        if keep is not None:
            contenders = tuple(c for c in workload.contenders if c.name in keep)
            workload = dataclasses.replace(workload, contenders=contenders)
        if options.wrap_relay:
            wrapper = tuple(shlex.split(options.wrap_relay))
            contenders = tuple(
                dataclasses.replace(c, wrapper=wrapper) if c.kind == "relay" else c
                for c in workload.contenders
            )
            workload = dataclasses.replace(workload, contenders=contenders)
        if workload.contenders:
            chosen.append(workload)
    return chosen


def child_env() -> dict[str, str]:
    """The processes' environment: no AWS or relay settings of the caller, fake credentials,
    no instance metadata lookups, configuration files ignored."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "RELAY_", "BOTO_", "COPILOT_"))
    }
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION=REGION,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


def _describe(workload: Workload) -> dict[str, Any]:
    settings = {k: v for k, v in dataclasses.asdict(workload).items() if k not in ("contenders",)}
    settings["contenders"] = [
        {
            "name": c.name,
            "kind": c.kind,
            "args": list(c.args),
            "processes": c.processes,
            "dedupe_table": c.dedupe_table,
            "env": dict(c.env),
            "traced": c.traced,
            "messages": c.message_count(workload.messages),
            "note": c.note,
        }
        for c in workload.contenders
    ]
    return settings


def list_workloads() -> None:
    """Print what is defined."""
    for workload in WORKLOADS:
        print(f"{workload.name}: {workload.title} — {workload.messages} messages")
        for c in workload.contenders:
            extra = f" {' '.join(c.args)}" if c.args else ""
            extra += " --dedupe-table (a fresh table)" if c.dedupe_table else ""
            extra += "".join(f" {name}={value}" for name, value in c.env)
            count = c.message_count(workload.messages)
            print(f"  {c.name:<15} {c.kind}{extra} ×{c.processes}, {count} msgs — {c.note}")


async def run_session(
    workloads: list[Workload], repeats: int, logs: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start the endpoints, run everything, return the machine and every run's results."""
    env = child_env()
    with Children().scope() as children:
        endpoints = start_endpoints(children, env=env, logs=logs)
        env.update(
            AWS_ENDPOINT_URL_SQS=endpoints.sqs_url, AWS_ENDPOINT_URL_TRANSFER=endpoints.transfer_url
        )
        print(f"SQS: {endpoints.sqs_url} ({report.machine(endpoints)['sqs_endpoint']})")
        print(f"Transfer Family emulator: {endpoints.transfer_url}")
        table_endpoint: TableEndpoint | None = None
        if any(c.dedupe_table for w in workloads for c in w.contenders):
            table_endpoint = start_table_endpoint(children, env=env, logs=logs)
            env.update(AWS_ENDPOINT_URL_DYNAMODB=table_endpoint.url)
            print(f"DynamoDB: {table_endpoint.url} ({report.TABLE_ENDPOINT})")
        otlp_endpoint: OtlpEndpoint | None = None
        if any(c.traced for w in workloads for c in w.contenders):
            otlp_endpoint = start_otlp_endpoint(children, env=env, logs=logs)
            print(f"OTLP receiver: {otlp_endpoint.url} ({report.OTLP_ENDPOINT})")
        machine = report.machine(
            endpoints, table=table_endpoint is not None, otlp=otlp_endpoint is not None
        )
        config = AioConfig(retries={"mode": "standard", "total_max_attempts": 3})
        runs: list[dict[str, Any]] = []
        session = get_session()
        async with contextlib.AsyncExitStack() as stack:

            async def client(service: Any, url: str) -> Any:
                """The harness's own client of one local endpoint, closed with the stack."""
                return await stack.enter_async_context(
                    session.create_client(
                        service,
                        endpoint_url=url,
                        region_name=REGION,
                        aws_access_key_id="bench",
                        aws_secret_access_key="bench",
                        config=config,
                    )
                )

            sqs = await client("sqs", endpoints.sqs_url)
            admin = await stack.enter_async_context(EmulatorAdmin(endpoints.transfer_url))
            dynamodb = None
            if table_endpoint is not None:
                dynamodb = await client("dynamodb", table_endpoint.url)
            bench = Bench(
                endpoints=endpoints,
                sqs=sqs,
                admin=admin,
                env=env,
                logs=logs,
                children=children,
                table_endpoint=table_endpoint,
                dynamodb=dynamodb,
                otlp_endpoint=otlp_endpoint,
            )
            turn = 0
            for workload in workloads:
                for round_index in range(repeats):
                    order: list[Contender] = list(workload.contenders)
                    if turn % 2:
                        order.reverse()  # alternate the order so drift hits all alike
                    turn += 1
                    for contender in order:
                        result = await run_contender(bench, workload, contender, round_index)
                        runs.append(result)
                        _progress(result)
        machine["load_average_end"] = list(os.getloadavg())
    return machine, runs


def _progress(result: dict[str, Any]) -> None:
    flags = " TIMED OUT" if result["timed_out"] else ""
    if any(result["exit_codes"]):
        flags += f" exit codes {result['exit_codes']}"
    print(
        f"  {result['workload']} {result['contender']:<15} {result['delivered']:>6}/"
        f"{result['messages']:<6} {result['rate_per_s'] or 0:>8.1f} cb/s  "
        f"cpu/1k {result['cpu_per_1k_active_s'] or 0:.2f}s  rss {result['peak_rss_mb']:.0f} MB  "
        f"throttled {result['throttled']}  dlq {result['dlq']}  "
        f"wall {result['wall_s']:.1f}s{flags}",
        flush=True,
    )
    for tail in result["log_tail"]:
        if tail:
            print("    " + tail.replace("\n", "\n    "), flush=True)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every finally: children stopped, queues dropped


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; exit 2 on a setup problem, 1 if a run failed or timed out."""
    options = parse_args(argv)
    if options.list:
        list_workloads()
        return
    if options.render is not None:
        print(report.render_markdown(options.render))
        return
    workloads = chosen_workloads(options)
    if not workloads:
        sys.exit("bench: nothing to run")
    signal.signal(signal.SIGTERM, _interrupt)
    command = shlex.join(
        [Path(sys.executable).name, "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
    )
    started_at = datetime.now(UTC)
    started = time.monotonic()
    logs = Path(tempfile.mkdtemp(prefix="relay-bench-"))
    try:
        machine, runs = asyncio.run(run_session(workloads, options.repeats, logs))
    except SetupError as exc:
        sys.exit(f"bench: {exc}")
    except KeyboardInterrupt:
        sys.exit("bench: interrupted; every process it started has been stopped")
    finally:
        if options.keep_logs:
            print(f"logs kept in {logs}")
        else:
            shutil.rmtree(logs, ignore_errors=True)
    wall_s = time.monotonic() - started
    rows = report.summarize(runs)
    titles = {w.name: w.title for w in workloads}
    throttles = {
        w.name: (w.throttle_rps, w.throttle_burst or max(1, math.ceil(w.throttle_rps)))
        for w in workloads
        if w.throttle_rps
    }
    found = report.targets(rows, throttles)
    print()
    print(report.table(rows, titles))
    if copies := report.copies_table(rows, titles):
        print(copies)
    if tracing := report.tracing_table(rows, titles):
        print("Tracing: relay off / on (every message) / on (10 %)")
        print(tracing)
    print("Targets (issue 7):")
    print(report.targets_text(found))
    paths = report.write_results(
        started_at=started_at,
        command=command,
        machine_info=machine,
        workloads=[_describe(w) for w in workloads],
        runs=runs,
        rows=rows,
        found=found,
        wall_s=wall_s,
        directory=options.results_dir,
    )
    print()
    print(
        f"machine: {machine['cores']} cores, {machine['cpu_model']}, Python {machine['python']}; "
        f"SQS: {machine['sqs_endpoint']}; "
        f"load {machine['load_average'][0]:.1f} → {machine['load_average_end'][0]:.1f}"
    )
    print(f"note: {report.NOISE_NOTE}")
    print(f"command: {command}")
    print(
        f"wall time: {wall_s:.0f} s; results: "
        + ", ".join(str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p) for p in paths)
    )
    if any(r["timed_out"] or any(r["exit_codes"]) for r in runs):
        sys.exit(1)
