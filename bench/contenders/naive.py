"""The naive consumer, as a user first writes it: boto3, receive 10, call each in turn, delete
each. botocore's default retries; malformed messages and permanent errors are logged and
deleted; any other failure is left for SQS to redeliver after the visibility timeout.

    python -m bench.contenders.naive --queue-url URL [--deadline-s 600]
"""

import argparse
import time

import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints

from bench.contenders.common import Tally, finish, handle_one, setup


def main() -> None:
    """Consume until SIGTERM or the deadline."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queue-url", required=True)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    options = parser.parse_args()
    tally = Tally()
    setup(tally)
    deadline = time.monotonic() + options.deadline_s
    sqs = boto3.client("sqs")
    transfer = boto3.client("transfer")
    queue_url = options.queue_url
    while time.monotonic() < deadline:
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=20
        )
        for message in response.get("Messages", []):
            handle_one(sqs, transfer, queue_url, message, tally)
    finish(tally)


if __name__ == "__main__":
    main()
