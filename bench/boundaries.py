"""The boundary experiments (bench/README.md, "Boundaries"): on the local stack (moto's SQS
and DynamoDB, the emulator), with relay's public API and command line only, so the same script
measures an older checkout beside this one.

    python -m bench.boundaries stop --runs 20
    python -m bench.boundaries table --runs 3 [--fail-records]

`stop`: each run, 30 steps, the emulator slowed to a random 0.3-2.5 s per call, a worker with a
random --shutdown-grace of 0.2-2 s stopped (as by SIGTERM) at a random moment while its calls
are on the wire, then a second worker drains the queue.

`table`: each run, 80 steps each sent twice, three `relay run` processes sharing a
--dedupe-table behind a proxy that throttles half of the table's calls and fails a tenth with
500s (`--fail-records`: instead, fails half of the delivered-record writes); one process is
killed (SIGKILL) once 30 steps are answered; the other two drain the queue.

Counted: steps called more than once, `invalid_request` copies in the DLQ, and messages
neither delivered nor dead-lettered nor still queued.
"""

import argparse
import asyncio
import collections
import json
import random
import time
import uuid
from typing import Any

from relay.config import RunConfig
from relay.emulator import Faults
from relay.local import aws_environment as loopback_environment
from relay.local import local_emulator, point_aws_at, serve_moto
from relay.message import Status, StepResult
from relay.sqs import create_queue_pair, open_sqs, queue_counts
from relay.worker import open_worker

STEPS = 30


def _config(queue_url: str, **overrides: Any) -> RunConfig:
    settings: dict[str, Any] = {
        "queue_url": queue_url,
        "http_port": 0,
        "wait_time_s": 1,
        "empty_check_s": 0.1,
        "log_level": "ERROR",
        "max_in_flight": 64,
        "backoff_base_s": 0.05,
        "backoff_cap_s": 0.5,
        "release_base_s": 0.0,
        "release_cap_s": 0.0,
        "retry_budget_s": 5.0,
        "visibility_timeout_s": 30,
        **overrides,
    }
    return RunConfig(**settings)


def _steps(rng: random.Random, count: int = STEPS) -> list[StepResult]:
    workflow = "w-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(17))
    return [
        StepResult(workflow, str(uuid.UUID(int=rng.getrandbits(128))), f"t{i}", Status.SUCCESS)
        for i in range(count)
    ]


async def _receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for _ in range(100):
        answer = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
        )
        batch = answer.get("Messages", [])
        if not batch:
            break
        found += batch
    return found


async def one_run(rng: random.Random, sqs: Any) -> dict[str, Any]:
    """One stop mid-call and the second task after it; the counts."""
    latency_s = rng.uniform(0.3, 2.5)
    grace_s = rng.uniform(0.2, 2.0)
    steps = _steps(rng)
    queues = await create_queue_pair(sqs, f"boundary-{uuid.uuid4().hex[:10]}", max_receive_count=50)
    for start in range(0, STEPS, 10):
        await sqs.send_message_batch(
            QueueUrl=queues.url,
            Entries=[
                {"Id": str(i), "MessageBody": s.to_body()}
                for i, s in enumerate(steps[start : start + 10])
            ],
        )
    async with local_emulator(faults=Faults(latency_ms=latency_s * 1000)) as emulator:
        emulator.state.register_many(s.step_key for s in steps)
        point_aws_at(loopback_environment(transfer_url=emulator.url))
        async with open_worker(_config(queues.url, shutdown_grace_s=grace_s)) as first:
            run = asyncio.create_task(first.run(handle_signals=False))
            deadline = time.monotonic() + 30
            # A poll with a deadline: the worker offers no event for "all received".
            while first.in_flight < STEPS and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0.0, latency_s))
            first.stop("SIGTERM")
            await asyncio.wait_for(run, 60)
        emulator.state.set_faults(Faults())
        async with open_worker(_config(queues.url, exit_when_empty=True)) as second:
            await asyncio.wait_for(second.run(handle_signals=False), 120)
        calls = collections.Counter(
            (c.execution_id, c.token) for c in emulator.state.calls if c.execution_id
        )
        dead = await _receive_all(sqs, queues.dlq_url)
        counts = await queue_counts(sqs, queues.url)
        left = sum(int(v) for v in counts.values())
        delivered = sum(1 for c in emulator.state.calls if c.http_status == 200)
        reasons = collections.Counter(
            m.get("MessageAttributes", {}).get("relay-reason", {}).get("StringValue", "?")
            for m in dead
        )
        return {
            "latency_s": round(latency_s, 2),
            "grace_s": round(grace_s, 2),
            "called_twice": sum(1 for n in calls.values() if n > 1),
            "invalid_request": reasons.get("invalid_request", 0),
            "dead_lettered": len(dead),
            "delivered": delivered,
            "left_on_queue": left,
            "first_task": dict(first.counts),
            "second_task": dict(second.counts),
            "unaccounted": STEPS - _finished(first.counts) - _finished(second.counts) - left,
        }


def _finished(counts: Any) -> int:
    return sum(counts.get(o, 0) for o in ("delivered", "duplicate", "conflict", "dead_lettered"))


async def stop_runs(runs: int, seed: int) -> None:
    """The stop experiment."""
    rng = random.Random(seed)
    with serve_moto("sqs") as moto:
        point_aws_at(loopback_environment(sqs_url=moto.url))
        async with open_sqs() as sqs:
            results = [await one_run(rng, sqs) for _ in range(runs)]
    for result in results:
        print(json.dumps(result))
    hit = sum(1 for r in results if r["called_twice"])
    print(
        json.dumps(
            {
                "runs": runs,
                "steps": runs * STEPS,
                "runs_hit": hit,
                "steps_called_twice": sum(r["called_twice"] for r in results),
                "invalid_request_copies": sum(r["invalid_request"] for r in results),
                "unaccounted_messages": sum(r["unaccounted"] for r in results),
            }
        )
    )


# --- the fleet table under stress --------------------------------------------------------------

TABLE_STEPS = 80
THROTTLES = ("ProvisionedThroughputExceededException", "ThrottlingException")


async def _faulty_table(target_url: str, rng: random.Random, fail_records: bool) -> Any:
    """A proxy in front of moto's DynamoDB that fails calls as a busy table does."""
    from aiohttp import ClientSession, web

    counts: collections.Counter[str] = collections.Counter()

    def refuse(code: str, status: int) -> web.Response:
        body = {"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}
        return web.json_response(body, status=status, content_type="application/x-amz-json-1.0")

    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        if fail_records:
            if b'"delivered"' in body and rng.random() < 0.5:
                counts["failed_record"] += 1
                return refuse("InternalServerError", 500)
        else:
            draw = rng.random()
            if draw < 0.5:
                counts["throttled"] += 1
                return refuse(rng.choice(THROTTLES), 400)
            if draw < 0.6:
                counts["failed"] += 1
                return refuse("InternalServerError", 500)
        counts["forwarded"] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        async with client.post(target_url, data=body, headers=headers) as answered:
            payload = await answered.read()
            kept = {"content-type", "x-amzn-requestid", "x-amz-crc32"}
            return web.Response(
                body=payload,
                status=answered.status,
                headers={k: v for k, v in answered.headers.items() if k.lower() in kept},
            )

    client = ClientSession()
    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    return url, counts, runner, client


async def table_run(rng: random.Random, sqs: Any, dynamodb_url: str, fail_records: bool) -> Any:
    """One run of the table experiment; its counts."""
    import os
    import signal
    import sys

    from relay.dedupe import create_dedupe_table, dedupe_config
    from relay.local import aws_environment

    steps = (
        _steps(rng)[:0]
        + [
            StepResult(s.workflow_id, s.execution_id, f"{s.token}x{i}", Status.SUCCESS)
            for i, s in enumerate(_steps(rng) * 3)
        ][:TABLE_STEPS]
    )
    queues = await create_queue_pair(sqs, f"table-{uuid.uuid4().hex[:10]}", max_receive_count=50)
    bodies = [s.to_body() for s in steps for _ in (0, 1)]
    for start in range(0, len(bodies), 10):
        await sqs.send_message_batch(
            QueueUrl=queues.url,
            Entries=[
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[start : start + 10])
            ],
        )
    table_name = f"relay-bench-{uuid.uuid4().hex[:10]}"
    from relay.aws import new_session

    async with new_session().create_client(
        "dynamodb", endpoint_url=dynamodb_url, config=dedupe_config()
    ) as client:
        await create_dedupe_table(client, table_name)
    proxy_url, counts, runner, http = await _faulty_table(dynamodb_url, rng, fail_records)
    async with local_emulator(faults=Faults(latency_ms=50)) as emulator:
        emulator.state.register_many(s.step_key for s in steps)
        env = {
            **os.environ,
            **aws_environment(
                sqs_url=os.environ["AWS_ENDPOINT_URL_SQS"],
                transfer_url=emulator.url,
                dynamodb_url=proxy_url,
            ),
        }
        args = [
            sys.executable, "-m", "relay", "run", "--queue-url", queues.url,
            "--dedupe-table", table_name, "--http-port", "0", "--log-level", "ERROR",
            "--max-in-flight", "8", "--wait-time", "1", "--visibility-timeout", "10",
            "--retry-budget", "5", "--release-base", "0.5", "--release-cap", "2",
            "--exit-when-empty",
        ]  # fmt: skip
        quiet = asyncio.subprocess.DEVNULL
        tasks = [
            await asyncio.create_subprocess_exec(*args, env=env, stdout=quiet, stderr=quiet)
            for _ in range(3)
        ]
        try:
            deadline = time.monotonic() + 120
            # A poll with a deadline: the emulator offers no event for "30 answered".
            while len(emulator.state.calls) < 30 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            tasks[0].send_signal(signal.SIGKILL)
            await asyncio.wait_for(asyncio.gather(*(task.wait() for task in tasks)), 240)
        finally:
            for task in tasks:
                if task.returncode is None:
                    task.kill()
                    await task.wait()
        calls = collections.Counter(
            (c.execution_id, c.token) for c in emulator.state.calls if c.execution_id
        )
        delivered = {
            (c.execution_id, c.token) for c in emulator.state.calls if c.http_status == 200
        }
    await runner.cleanup()
    await http.close()
    dead = await _receive_all(sqs, queues.dlq_url)
    reasons = collections.Counter(
        m.get("MessageAttributes", {}).get("relay-reason", {}).get("StringValue", "?") for m in dead
    )
    left = sum(int(v) for v in (await queue_counts(sqs, queues.url)).values())
    return {
        "steps": TABLE_STEPS,
        "messages": len(bodies),
        "called_twice": sum(1 for n in calls.values() if n > 1),
        "steps_delivered": len(delivered),
        "invalid_request": reasons.get("invalid_request", 0),
        "saying_outcome_unknown": sum(
            m.get("MessageAttributes", {})
            .get("relay-error-message", {})
            .get("StringValue", "")
            .startswith("outcome unknown")
            for m in dead
        ),
        "dead_lettered": len(dead),
        "left_on_queue": left,
        "table_calls": dict(counts),
    }


async def table_runs(runs: int, seed: int, fail_records: bool) -> None:
    """The table experiment."""
    rng = random.Random(seed)
    with serve_moto("sqs") as moto, serve_moto("dynamodb") as dynamodb:
        point_aws_at(loopback_environment(sqs_url=moto.url))
        async with open_sqs() as sqs:
            results = [await table_run(rng, sqs, dynamodb.url, fail_records) for _ in range(runs)]
    for result in results:
        print(json.dumps(result))
    print(
        json.dumps(
            {
                "runs": runs,
                "steps": runs * TABLE_STEPS,
                "steps_called_twice": sum(r["called_twice"] for r in results),
                "invalid_request_copies": sum(r["invalid_request"] for r in results),
                "saying_outcome_unknown": sum(r["saying_outcome_unknown"] for r in results),
                "steps_never_answered": sum(TABLE_STEPS - r["steps_delivered"] for r in results),
            }
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiment", choices=["stop", "table"])
    parser.add_argument("--runs", type=int, default=0)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--fail-records", action="store_true")
    arguments = parser.parse_args()
    if arguments.experiment == "stop":
        asyncio.run(stop_runs(arguments.runs or 20, arguments.seed))
    else:
        asyncio.run(table_runs(arguments.runs or 3, arguments.seed, arguments.fail_records))
