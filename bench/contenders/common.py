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
