"""What the hand-written contenders share: a user's parsing, the summary line, the stop signal."""

import json
import logging
import os
import signal
import sys
import threading
from collections import Counter
from types import FrameType
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

FIELDS: Final = ("WorkflowId", "ExecutionId", "Token", "Status")
PERMANENT_ERRORS: Final = frozenset(
    {"InvalidRequestException", "ResourceNotFoundException", "AccessDeniedException"}
)
"""Answers no retry can change: a careful user logs and deletes these."""

log = logging.getLogger("contender")


class Tally:
    """Counters shared by threads, printed as one JSON line at the end."""

    def __init__(self) -> None:
        # Re-entrant: the SIGTERM handler reads it in whichever frame the main thread was in.
        self._lock = threading.RLock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        """Count something."""
        with self._lock:
            self._counts[name] += amount

    def summary(self) -> str:
        """The counts as one JSON line."""
        with self._lock:
            return json.dumps({"summary": dict(self._counts)}, sort_keys=True)


def parse_step(body: str) -> dict[str, str]:
    """The four fields, as a user would read them; ValueError, KeyError or TypeError if not."""
    document: Any = json.loads(body)
    return {name: str(document[name]) for name in FIELDS}


def setup(tally: Tally) -> None:
    """Failures logged to stderr; SIGTERM prints the summary and exits at once (the harness
    sends it once the queue is empty, so nothing is in flight)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")

    def on_term(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once is enough
        print(tally.summary(), flush=True)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)


def finish(tally: Tally) -> None:
    """Print the summary and exit 0 (a deadline or the end of the work)."""
    print(tally.summary(), flush=True)
    sys.stdout.flush()
    os._exit(0)


def handle_one(sqs: Any, transfer: Any, queue_url: str, message: Any, tally: Tally) -> None:
    """The naive consumer's handling of one message (the thread pool runs the same):
    call, then delete; malformed or permanently refused ones are logged and deleted; anything
    else is left for SQS to redeliver."""
    receipt = message["ReceiptHandle"]
    try:
        step = parse_step(message["Body"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("malformed message %s: %r; deleting", message["MessageId"], exc)
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
        tally.add("discarded")
        return
    try:
        transfer.send_workflow_step_state(**step)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in PERMANENT_ERRORS:
            log.warning("callback refused (%s); deleting", code)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
            tally.add("discarded")
        else:
            log.warning("callback failed (%s); SQS will redeliver", code)
            tally.add("left")
        return
    except BotoCoreError as exc:
        log.warning("callback failed (%s); SQS will redeliver", exc)
        tally.add("left")
        return
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
    tally.add("delivered")
