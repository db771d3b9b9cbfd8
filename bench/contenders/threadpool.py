"""The thread-pool consumer, the next thing a user tries: N threads (default 32), each running
the naive loop (receive 10, call each, delete each) on shared boto3 clients with a connection
pool as large as the thread count. botocore's retries as a user leaves them (`--retry-mode`
to pick one explicitly). Failures are handled as in the naive consumer.

    python -m bench.contenders.threadpool --queue-url URL [--threads 32] [--deadline-s 600]
"""

import argparse
import threading
import time
from typing import Any

import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from bench.contenders.common import Tally, finish, handle_one, log, setup


def consume(sqs: Any, transfer: Any, queue_url: str, deadline: float, tally: Tally) -> None:
    """One thread's loop, until the deadline."""
    while time.monotonic() < deadline:
        try:
            response = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20
            )
        except (ClientError, BotoCoreError) as exc:
            log.warning("receive failed: %s", exc)
            tally.add("receive_errors")
            time.sleep(1.0)
            continue
        for message in response.get("Messages", []):
            handle_one(sqs, transfer, queue_url, message, tally)


def main() -> None:
    """Start the threads; exit at SIGTERM or the deadline."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--retry-mode", choices=("legacy", "standard", "adaptive"), default=None)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    options = parser.parse_args()
    tally = Tally()
    setup(tally)
    deadline = time.monotonic() + options.deadline_s
    settings: dict[str, Any] = {"max_pool_connections": options.threads}
    if options.retry_mode is not None:
        settings["retries"] = {"mode": options.retry_mode}
    config = Config(**settings)
    # Clients are thread-safe once made; making them is not, so the main thread does it.
    sqs = boto3.client("sqs", config=config)
    transfer = boto3.client("transfer", config=config)
    threads = [
        threading.Thread(
            target=consume,
            args=(sqs, transfer, options.queue_url, deadline, tally),
            name=f"consumer-{i}",
            daemon=True,
        )
        for i in range(options.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        # The main thread must stay interruptible by SIGTERM: join in short steps.
        while thread.is_alive() and time.monotonic() < deadline + 30:
            thread.join(timeout=0.5)
    finish(tally)


if __name__ == "__main__":
    main()
