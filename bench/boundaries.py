"""The boundary experiments of the README's "Stopping mid-call" figures: in one process, on
the local stack (moto's SQS, the emulator), with the worker's public API only, so the same
script measures an older checkout beside this one.

    python -m bench.boundaries --runs 20

Each run: 30 steps, the emulator slowed to a random 0.3-2.5 s per call, a worker with a random
--shutdown-grace of 0.2-2 s stopped (as by SIGTERM) at a random moment while its calls are on
the wire, then a second worker drains the queue. Counted: steps called more than once,
`invalid_request` copies in the DLQ, and messages neither delivered nor dead-lettered.
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


def _steps(rng: random.Random) -> list[StepResult]:
    workflow = "w-" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(17))
    return [
        StepResult(workflow, str(uuid.UUID(int=rng.getrandbits(128))), f"t{i}", Status.SUCCESS)
        for i in range(STEPS)
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


async def main(runs: int, seed: int) -> None:
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


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=18)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.runs, arguments.seed))
