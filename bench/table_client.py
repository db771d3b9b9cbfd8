"""`python -m bench.table_client [--steps N]`: what relay's own side of `--dedupe-table` costs in
CPU per DynamoDB call, apart from the rest of relay and from the table's server.

relay.dedupe's `DedupeTable` against moto's DynamoDB in a child process (relay.local), three
phases of N calls each, `--concurrency` at once as relay's in-flight budget would: a claim that
wins (a step's first message), a delivered record (after its 200), a claim that loses to the
delivered record (a copy in another process). This process's CPU (user + system) per call in
each phase is printed; moto's time is not in it.
"""

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable

from aiobotocore.session import get_session

from relay.dedupe import Claimed, DedupeTable, Delivered, create_dedupe_table, open_dedupe_table
from relay.local import aws_environment, moto_process, point_aws_at
from relay.message import Status, StepKey

TABLE = "bench-table-client"
LEASE_S = 60.0
TTL_S = 3600.0


async def _phase(
    steps: list[StepKey], concurrency: int, call: Callable[[StepKey], Awaitable[object]]
) -> float:
    """CPU seconds of this process for one call per step, `concurrency` at once."""
    gate = asyncio.Semaphore(concurrency)

    async def one(key: StepKey) -> None:
        async with gate:
            await call(key)

    started = time.process_time()
    await asyncio.gather(*(one(key) for key in steps))
    return time.process_time() - started


async def measure(steps: int, concurrency: int) -> dict[str, float]:
    """CPU milliseconds per call: winning claim, delivered record, losing claim."""
    async with get_session().create_client("dynamodb") as client:
        await create_dedupe_table(client, TABLE)
    keys = [(f"w-{i % 20}", f"e-{i}", f"token-{i}") for i in range(steps)]
    warm = [(f"w-warm-{i}", "e", "t") for i in range(concurrency)]
    async with open_dedupe_table(TABLE, max_pool_connections=concurrency) as table:

        async def claim_wins(key: StepKey) -> None:
            if not isinstance(await table.claim(key, Status.SUCCESS, LEASE_S), Claimed):
                raise RuntimeError(f"claim of a new step lost: {key}")

        async def record(key: StepKey) -> None:
            await table.record_delivered(key, Status.SUCCESS, TTL_S)

        async def claim_loses(key: StepKey) -> None:
            if not isinstance(await table.claim(key, Status.SUCCESS, LEASE_S), Delivered):
                raise RuntimeError(f"claim of a delivered step did not see it: {key}")

        await _check_and_warm(table, warm, concurrency, claim_wins)
        phases: dict[str, Callable[[StepKey], Awaitable[None]]] = {
            "claim (wins)": claim_wins,
            "record delivered": record,
            "claim (loses to delivered)": claim_loses,
        }
        return {
            name: await _phase(keys, concurrency, call) * 1000 / steps
            for name, call in phases.items()
        }


async def _check_and_warm(
    table: DedupeTable,
    warm: list[StepKey],
    concurrency: int,
    call: Callable[[StepKey], Awaitable[object]],
) -> None:
    """relay's start-up check, then one round of calls: connections open, code paths loaded."""
    await table.check()
    await _phase(warm, concurrency, call)


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(prog="python -m bench.table_client", description=__doc__)
    parser.add_argument("--steps", type=int, default=2000, help="calls per phase (default 2000)")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="calls at once (relay's --max-in-flight)"
    )
    options = parser.parse_args()
    if options.steps < 1 or options.concurrency < 1:
        parser.error("--steps and --concurrency must be at least 1")
    with moto_process("dynamodb") as url:
        point_aws_at(aws_environment(dynamodb_url=url))
        found = asyncio.run(measure(options.steps, options.concurrency))
    print(f"relay.dedupe client CPU per call ({options.steps} calls a phase, moto's excluded):")
    for name, ms in found.items():
        print(f"  {name:<28} {ms:.2f} ms")


if __name__ == "__main__":
    main()
