"""The floor: aiobotocore `send_workflow_step_state` in a tight concurrent loop, no SQS at all
(`--lean`: the same calls through relay's lean sender, the floor for `relay --lean-sender`).

What this machine can do at most with the SDK relay uses: `--concurrency` calls at once on one
client, botocore's retries off, the steps read from a JSON Lines file. A throttled or 5xx call
is sent again at once (after `RetryAfterSeconds` when the answer carries one), up to
`--max-attempts`; anything else is counted and dropped.

    python -m bench.contenders.floor --steps steps.jsonl [--concurrency 64]
"""

import argparse
import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from bench.contenders.common import Tally, finish, setup
from relay.transfer import CallbackError, open_lean_transfer

RETRYABLE = frozenset(
    {"ThrottlingException", "ServiceUnavailableException", "InternalServiceError"}
)


def read_steps(path: str) -> list[dict[str, str]]:
    """The steps to call, one JSON object of the four fields per line."""
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


async def call_all(
    steps: Iterator[dict[str, str]],
    *,
    concurrency: int,
    max_attempts: int,
    deadline: float,
    tally: Tally,
    lean: bool = False,
) -> None:
    """`concurrency` loops share one iterator of steps and one client."""
    config = AioConfig(
        retries={"mode": "standard", "total_max_attempts": 1},
        max_pool_connections=concurrency,
        connect_timeout=5,
        read_timeout=10,
    )
    opened: Any = (
        open_lean_transfer(max_pool_connections=concurrency, call_timeout_s=10)
        if lean
        else get_session().create_client("transfer", config=config)
    )
    async with opened as client:

        async def loop() -> None:
            for step in steps:
                for _ in range(max_attempts):
                    if time.monotonic() > deadline:
                        return
                    tally.add("calls")
                    try:
                        await client.send_workflow_step_state(**step)
                    except (ClientError, CallbackError) as exc:
                        code, status, retry_after = _answer(exc)
                        tally.add(f"error_{code}")
                        if code in RETRYABLE or status >= 500:
                            if retry_after:
                                await asyncio.sleep(retry_after)
                            continue
                        break
                    except (BotoCoreError, OSError) as exc:
                        tally.add(f"error_{type(exc).__name__}")
                        continue
                    tally.add("delivered")
                    break

        await asyncio.gather(*(loop() for _ in range(concurrency)))


def _answer(exc: ClientError | CallbackError) -> tuple[str, int, float]:
    """The code, HTTP status and RetryAfterSeconds of a refused call, from either client."""
    if isinstance(exc, CallbackError):
        return exc.code, exc.http_status or 0, exc.retry_after_s or 0.0
    response: Any = exc.response
    code = str(response.get("Error", {}).get("Code", ""))
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return code, status, float(response.get("RetryAfterSeconds") or 0.0)


def main() -> None:
    """Call every step once (retrying what is retryable), then exit."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-attempts", type=int, default=100)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    parser.add_argument(
        "--lean", action="store_true", help="relay's lean sender instead of aiobotocore"
    )
    options = parser.parse_args()
    tally = Tally()
    setup(tally)
    steps = read_steps(options.steps)
    asyncio.run(
        call_all(
            iter(steps),
            concurrency=options.concurrency,
            max_attempts=options.max_attempts,
            deadline=time.monotonic() + options.deadline_s,
            tally=tally,
            lean=options.lean,
        )
    )
    finish(tally)


if __name__ == "__main__":
    main()
