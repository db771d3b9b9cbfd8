"""The demo's second act: the bulk replay an operator runs after an incident (DESIGN §11).

While the worker drained, some step results named executions Transfer Family did not know, and
were dead-lettered as `not_found`. Meanwhile some of those executions were fixed (registered
late: in progress now), some started but their step timed out before anyone replayed, and the
rest never ran. `relay dlq stats` shows which copies can still help; `relay replay --to
transfer` answers the waiting ones and leaves the finished ones in the DLQ; the accounting
still balances.
"""

import random
from typing import TYPE_CHECKING, Any, Final

from rich.console import Console

from relay.config.dlq import ReplayConfig, ReplayFilters, ScanConfig, StatsConfig
from relay.demo.accounting import Accounting, delivered_steps, read_dead_letters
from relay.demo.mix import Mix
from relay.dlq.replay import replay
from relay.dlq.stats import dlq_stats
from relay.emulator import EmulatorState
from relay.emulator.executions import DEFAULT_STEP_TIMEOUT_S
from relay.sqs import QueuePair, queue_total
from relay.terminal import print_replay, print_stats

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

TOP: Final = 10


def meanwhile(mix: Mix, emulator: EmulatorState, seed: int | None) -> tuple[int, int, int]:
    """What happened to the unknown executions while the worker drained: a third were fixed
    (in progress now), a third started and timed out, the rest never ran. Returns the three
    counts."""
    steps = list(mix.unknown)
    random.Random(seed).shuffle(steps)
    fixed = steps[: (len(steps) + 2) // 3]
    timed_out = steps[len(fixed) : len(fixed) + (len(steps) + 1) // 3]
    emulator.register_many(fixed)
    emulator.register_many(timed_out, started_s_ago=DEFAULT_STEP_TIMEOUT_S + 60)
    return len(fixed), len(timed_out), len(steps) - len(fixed) - len(timed_out)


async def bulk_replay(
    console: Console,
    sqs: SQSClient,
    queues: QueuePair,
    mix: Mix,
    emulator: EmulatorState,
    *,
    sent: int,
    seed: int | None,
) -> Accounting:
    """The act: stats, the replay of the not_found copies, and the accounting after it."""
    fixed, timed_out, never = meanwhile(mix, emulator, seed)
    console.rule("bulk replay")
    console.print(
        f"meanwhile, of the {len(mix.unknown)} executions Transfer Family did not know: {fixed} "
        f"were fixed (in progress now), {timed_out} started but their step timed out, "
        f"{never} never ran",
        soft_wrap=True,
    )
    scan = ScanConfig(dlq_url=queues.dlq_url, receive_wait_s=0)
    console.print(f"\n$ relay dlq stats --dlq-url {queues.dlq_url}", soft_wrap=True)
    print_stats(await dlq_stats(StatsConfig(scan=scan)), TOP)
    console.print(
        f"\n$ relay replay --dlq-url {queues.dlq_url} --reason not_found --to transfer",
        soft_wrap=True,
    )
    config = ReplayConfig(
        scan=scan, to="transfer", filters=ReplayFilters(reasons=frozenset({"not_found"}))
    )
    print_replay(await replay(config), TOP)
    console.print(
        "the finished ones stay in the DLQ until someone gives up on them:\n"
        f"  relay dlq purge --dlq-url {queues.dlq_url} --execution-state finished "
        "--out given-up.jsonl",
        soft_wrap=True,
    )
    delivered = delivered_steps(emulator)
    dead = await read_dead_letters(sqs, queues.dlq_url, sent, delivered)
    return Accounting(
        sent=sent,
        delivered=len(delivered),
        dead_lettered=dead.total - dead.of_delivered,
        still_queued=await queue_total(sqs, queues.url),
    )
