"""Rate and flow limits: the token bucket behind `--max-rps`, the circuit per workflow, and
the memory of delivered step results that recognises duplicates and conflicts.

Pure asyncio and arithmetic; no AWS here.
"""

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass


class TokenBucket:
    """A token bucket: `rate` tokens a second, at most `burst` saved up; rate 0 means no limit."""

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._updated) * self.rate)
        self._updated = now

    def try_take(self) -> float:
        """Takes a token and returns 0, or returns the seconds until one is due."""
        if self.rate <= 0:
            return 0.0
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def take(self) -> None:
        """Waits for a token; callers are served in arrival order."""
        if self.rate <= 0:
            return
        async with self._lock:
            # The sleep is exactly the time until the next token; no event would come sooner.
            while (wait_s := self.try_take()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait_s)


StepKey = tuple[str, str, str]
"""(workflow id, execution id, token): the waiting step a result answers."""


class DeliveredMemory:
    """A bounded, expiring memory of the step results this process delivered.

    Every entry lives `ttl_s`, so insertion order is expiry order: the oldest entry is always
    at the front, and both eviction rules pop from there.
    """

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: collections.OrderedDict[StepKey, tuple[str, float]] = (
            collections.OrderedDict()
        )

    def __len__(self) -> int:
        return len(self._entries)

    def status_of(self, key: StepKey) -> str | None:
        """The status delivered for this step, if remembered and not expired."""
        self._expire()
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def remember(self, key: StepKey, status: str) -> None:
        """Records a delivered step result, evicting the oldest past the size bound."""
        if self.size <= 0:
            return
        self._entries.pop(key, None)
        self._entries[key] = (status, self._clock() + self.ttl_s)
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            _, (_, expires) = next(iter(self._entries.items()))
            if expires > now:
                return
            self._entries.popitem(last=False)


@dataclass(slots=True)
class _Circuit:
    opened_at: float
    probing: bool = False


class Circuits:
    """A circuit per workflow (DESIGN §1): AccessDenied opens it; while open its messages are
    released without a call; after `cooldown_s` one probe goes through and its answer closes
    or reopens it. Other workflows are untouched."""

    def __init__(self, cooldown_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._open: dict[str, _Circuit] = {}

    def __len__(self) -> int:
        return len(self._open)

    def allow(self, workflow_id: str) -> bool:
        """Whether a call for this workflow may go out now (taking the probe if it is due)."""
        circuit = self._open.get(workflow_id)
        if circuit is None:
            return True
        if circuit.probing or self._clock() - circuit.opened_at < self.cooldown_s:
            return False
        circuit.probing = True
        return True

    def wait_s(self, workflow_id: str) -> float:
        """Seconds until this workflow's next probe is due (0 when closed)."""
        circuit = self._open.get(workflow_id)
        if circuit is None:
            return 0.0
        return max(0.0, circuit.opened_at + self.cooldown_s - self._clock())

    def denied(self, workflow_id: str) -> None:
        """AccessDenied: open (or reopen) the circuit from now."""
        self._open[workflow_id] = _Circuit(opened_at=self._clock())

    def answered(self, workflow_id: str) -> None:
        """Any answer but AccessDenied: the workflow no longer refuses us; close it."""
        self._open.pop(workflow_id, None)
