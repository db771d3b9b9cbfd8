"""The fair floor: a minimal correct consumer on the lean stack, the floor relay is held to.

Each of `--loops` loops (7: about 64 callbacks at once, relay's default `--max-in-flight`)
receives up to 10 messages with a 20 s long poll, sends their callbacks at once, then deletes
the answered ones with one `DeleteMessageBatch`. Every call is signed and sent by relay's lean
AWS JSON client (`relay.awsjson.lean`): SQS through its JSON protocol (awsJson1_0), Transfer
Family through the lean sender (awsJson1_1), one aiohttp session each. What it leaves out is
what makes relay a service: no retry policy beyond sending a throttled or 5xx call again at
once (after `RetryAfterSeconds` when given), no dead-letter copies (a malformed message or a
permanently refused callback is logged and deleted), no metrics, no visibility changes.

    python -m bench.contenders.fair --queue-url URL [--loops 7]
"""

import argparse
import asyncio
import time
from typing import Any, Final

import aiohttp

from bench.contenders.common import PERMANENT_ERRORS, Tally, finish, parse_step, setup
from relay.aws import new_session
from relay.awsjson.lean import AwsJsonError, LeanJsonClient, open_lean_json
from relay.sqs.client import sqs_config
from relay.transfer import CallbackError, LeanTransferClient, open_lean_transfer

RETRYABLE: Final = frozenset(
    {"ThrottlingException", "ServiceUnavailableException", "InternalServiceError"}
)
BATCH: Final = 10
WAIT_S: Final = 20


async def handle(transfer: LeanTransferClient, message: dict[str, Any], tally: Tally) -> bool:
    """One message's callback: True when it may be deleted (delivered, malformed, refused)."""
    try:
        step = parse_step(message["Body"])
    except (ValueError, KeyError, TypeError):
        tally.add("discarded")
        return True
    for _ in range(100):
        tally.add("calls")
        try:
            await transfer.send_workflow_step_state(**step)
        except CallbackError as exc:
            tally.add(f"error_{exc.code}")
            if exc.code in PERMANENT_ERRORS:
                tally.add("discarded")
                return True
            if exc.code in RETRYABLE or (exc.http_status or 0) >= 500:
                if exc.retry_after_s:
                    await asyncio.sleep(exc.retry_after_s)
                continue
            return False  # left for SQS to redeliver
        tally.add("delivered")
        return True
    return False


async def consume(
    sqs: LeanJsonClient,
    transfer: LeanTransferClient,
    queue_url: str,
    *,
    deadline: float,
    tally: Tally,
) -> None:
    """Receive 10, call them at once, delete the answered ones in one batch; until stopped."""
    while time.monotonic() < deadline:
        try:
            answer, _ = await sqs.call(
                "ReceiveMessage",
                {"QueueUrl": queue_url, "MaxNumberOfMessages": BATCH, "WaitTimeSeconds": WAIT_S},
            )
        except AwsJsonError as exc:
            tally.add(f"receive_error_{exc.code}")
            continue
        messages: list[dict[str, Any]] = answer.get("Messages") or []
        if not messages:
            continue
        done = await asyncio.gather(*(handle(transfer, m, tally) for m in messages))
        entries = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
            for i, (m, ok) in enumerate(zip(messages, done, strict=True))
            if ok
        ]
        if not entries:
            continue
        try:
            deleted, _ = await sqs.call(
                "DeleteMessageBatch", {"QueueUrl": queue_url, "Entries": entries}
            )
        except AwsJsonError as exc:
            tally.add(f"delete_error_{exc.code}")
            continue
        tally.add("deleted", len(deleted.get("Successful") or ()))


async def run(queue_url: str, *, loops: int, deadline: float, tally: Tally) -> None:
    """`loops` consumers sharing one SQS client and one Transfer Family client."""
    session = new_session()
    async with (
        open_lean_json(
            session,
            "sqs",
            config=sqs_config(max_pool_connections=1),
            timeout=aiohttp.ClientTimeout(total=WAIT_S + 10, connect=5),
            max_pool_connections=loops * 2,
        ) as sqs,
        open_lean_transfer(session, max_pool_connections=loops * BATCH, call_timeout_s=10) as tr,
    ):
        await asyncio.gather(
            *(consume(sqs, tr, queue_url, deadline=deadline, tally=tally) for _ in range(loops))
        )


def main() -> None:
    """Consume until SIGTERM (the harness sends it once the queue is empty) or the deadline."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--loops", type=int, default=7)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    options = parser.parse_args()
    tally = Tally()
    setup(tally)
    asyncio.run(
        run(
            options.queue_url,
            loops=options.loops,
            deadline=time.monotonic() + options.deadline_s,
            tally=tally,
        )
    )
    finish(tally)


if __name__ == "__main__":
    main()
