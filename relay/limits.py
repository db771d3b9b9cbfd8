"""Rate and flow limits: the retry policy, the token bucket behind `--max-rps`, the circuit per
workflow, and the memory of delivered step results that recognises duplicates and conflicts.

Pure asyncio and arithmetic; no AWS here.
"""

import asyncio
import collections
import contextlib
import hashlib
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_before_delay,
    wait_random_exponential,
)

from relay.message import StepKey


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryPolicy:
    """How one receive retries its callback: exponential backoff with full jitter from `base_s`,
    capped at `cap_s`, at most `max_attempts` within `budget_s`. The defaults are `relay run`'s
    (its `--max-attempts`, `--retry-budget`, `--backoff-base`, `--backoff-cap`)."""

    max_attempts: int = 5
    budget_s: float = 20.0
    base_s: float = 0.2
    cap_s: float = 5.0

    def controller(
        self,
        retryable: Callable[[BaseException], bool],
        *,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        wait: Callable[[wait_random_exponential], Callable[[RetryCallState], float]] | None = None,
        before_sleep: Callable[[RetryCallState], None] | None = None,
    ) -> AsyncRetrying:
        """The tenacity controller for one call's attempts under this policy (copy it per
        call): full jitter, capped, bounded by attempts and the time budget, retrying what
        `retryable` says; `wait` wraps the jitter, `sleep` waits, `before_sleep` hears of each
        wait."""
        jitter = wait_random_exponential(multiplier=self.base_s, max=self.cap_s)
        extra: dict[str, Any] = {} if before_sleep is None else {"before_sleep": before_sleep}
        return AsyncRetrying(
            sleep=sleep or asyncio.sleep,
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(self.budget_s),
            wait=jitter if wait is None else wait(jitter),
            retry=retry_if_exception(retryable),
            reraise=True,
            **extra,
        )


DEFAULT_RETRY: Final = RetryPolicy()


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

    def set_rate(self, rate: float) -> None:
        """Changes the rate from now on; tokens already earned are kept."""
        if self.rate > 0:
            self._refill()
        else:
            self._tokens, self._updated = self.burst, self._clock()
        self.rate = rate

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


class AdaptiveRate:
    """The callback rate, found rather than configured: when Transfer Family throttles, the
    rate drops to just under the rate of calls it recently accepted (what it allows); while it
    does not, the rate creeps up by `increase` a second to find out whether it allows more.

    That keeps goodput near the allowed rate with few throttled calls, where plain AIMD would
    saw between half the rate and all of it. `ceiling` (`--max-rps`, 0 = none) always caps it.
    """

    def __init__(
        self,
        ceiling: float,
        *,
        enabled: bool = True,
        window_s: float = 2.0,
        backoff: float = 0.95,
        increase: float = 0.02,
        settle_s: float = 0.05,
        minimum: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ceiling = ceiling
        self.enabled = enabled
        self.window_s = window_s
        self.backoff = backoff
        self.increase = increase
        self.settle_s = settle_s
        self.minimum = minimum
        self._clock = clock
        self.bucket = TokenBucket(ceiling, burst=1, clock=clock)
        self._accepted: collections.deque[float] = collections.deque()
        self._adapted = False
        self._binding = False
        # Whether callers waited for the rate since it last grew: only then try for more.
        self._last_decrease = self._last_growth = clock()
        self._lock = asyncio.Lock()

    @property
    def rate(self) -> float:
        """Calls per second allowed now (0 = no limit)."""
        return self.bucket.rate

    def try_acquire(self) -> float:
        """Takes the right to call now and returns 0, or returns the seconds to wait first."""
        if self._adapted:
            self._creep_up()
        wait_s = self.bucket.try_take()
        if wait_s > 0:
            self._binding = True
        return wait_s

    async def acquire(self) -> None:
        """Waits until the next call may go out; callers are served in arrival order."""
        if self.bucket.rate <= 0:
            return
        async with self._lock:
            # The sleep is exactly the time until the next token; no event would come sooner.
            while (wait_s := self.try_acquire()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait_s)

    def accepted(self) -> None:
        """A call was answered without throttling."""
        now = self._clock()
        self._accepted.append(now)
        while self._accepted and self._accepted[0] < now - self.window_s:
            self._accepted.popleft()

    def throttled(self) -> None:
        """A call was throttled: drop to just under what the service recently accepted."""
        now = self._clock()
        if not self.enabled or (self._adapted and now - self._last_decrease < self.settle_s):
            return  # throttles of calls already in flight are the same event
        current = self.bucket.rate if self.bucket.rate > 0 else math.inf
        observed = self._accepted_rate(now)
        target = observed * self.backoff if observed > 0 else current / 2
        if math.isinf(target):
            target = self.minimum
        new_rate = max(self.minimum, min(target, current))
        if self.ceiling > 0:
            new_rate = min(new_rate, self.ceiling)
        self.bucket.set_rate(new_rate)
        self._adapted = True
        self._last_decrease = self._last_growth = now

    def _accepted_rate(self, now: float) -> float:
        while self._accepted and self._accepted[0] < now - self.window_s:
            self._accepted.popleft()
        if len(self._accepted) < 2:
            return 0.0
        span = max(now - self._accepted[0], 1e-3)
        return len(self._accepted) / span

    def _creep_up(self) -> None:
        now = self._clock()
        elapsed = now - self._last_growth
        if elapsed < 1.0:
            return
        if not self._binding:
            # Demand is below the rate: growing it would report a rate nobody sends at.
            self._last_growth = now
            return
        self._binding = False
        grown = self.bucket.rate * (1 + self.increase) ** elapsed
        if self.ceiling > 0 and grown >= self.ceiling:
            grown = self.ceiling
        self.bucket.set_rate(grown)
        self._last_growth = now


class InFlightBudget:
    """The in-flight bound: a poll reserves slots before it receives, at most 10 and only as
    many as are free, so no message waits invisible for a slot. Under a send rate only about
    `lease_ahead_s` seconds of sending is held, so messages are not leased only to wait for it.
    """

    def __init__(self, size: int, rate: AdaptiveRate, *, lease_ahead_s: float = 2.0) -> None:
        self.size = size
        self.rate = rate
        self.lease_ahead_s = lease_ahead_s
        self.free = size
        self._freed = asyncio.Event()

    def room(self) -> int:
        """Slots a poll may fill now."""
        room = self.free
        if (rate := self.rate.rate) > 0:
            in_use = self.size - self.free
            room = min(room, max(1, math.ceil(rate * self.lease_ahead_s)) - in_use)
        return room

    async def reserve(self, most: int = 10) -> int:
        """Waits until there is room, then reserves up to `most` slots."""
        while (room := self.room()) <= 0:
            self._freed.clear()
            # Bounded wait: a rising send rate makes room without freeing a slot.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), 1.0)
        count = min(most, room)
        self.free -= count
        return count

    def release(self, count: int) -> None:
        """Gives back slots a poll did not fill, or that finished messages held."""
        self.free += count
        if count:
            self._freed.set()


class DeliveredMemory:
    """A bounded, expiring memory of the step results this process delivered.

    Every entry lives `ttl_s`, so insertion order is expiry order: the oldest entry is always
    at the front, and both eviction rules pop from there. An entry is a 128-bit digest of the
    step and one float (its expiry, negative for FAILURE): about 170 bytes, where the step's own
    strings would cost over 400, so the default 100,000 entries stay under 20 MB.
    """

    def __init__(
        self, size: int, ttl_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.size = size
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: collections.OrderedDict[bytes, float] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def status_of(self, key: StepKey) -> str | None:
        """The status delivered for this step, if remembered and not expired."""
        self._expire()
        signed = self._entries.get(_digest(key))
        if signed is None:
            return None
        return _SUCCESS if signed > 0 else _FAILURE

    def remember(self, key: StepKey, status: str) -> None:
        """Records a delivered step result, evicting the oldest past the size bound."""
        if self.size <= 0:
            return
        digest = _digest(key)
        expires = self._clock() + self.ttl_s
        self._entries.pop(digest, None)
        self._entries[digest] = expires if status == _SUCCESS else -expires
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    def _expire(self) -> None:
        now = self._clock()
        while self._entries:
            signed = next(iter(self._entries.values()))
            if abs(signed) > now:
                return
            self._entries.popitem(last=False)


_SUCCESS: Final = "SUCCESS"
_FAILURE: Final = "FAILURE"


def _digest(key: StepKey) -> bytes:
    # 128 bits: a collision (which would skip a callback) is ~1e-29 likely at 100,000 entries.
    return hashlib.blake2b("\x00".join(key).encode(), digest_size=16).digest()


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

    def cancel_probe(self, workflow_id: str) -> None:
        """The probe taken by `allow` was not sent after all: the next message may probe."""
        circuit = self._open.get(workflow_id)
        if circuit is not None:
            circuit.probing = False


ATTEMPT_MEMORY: Final = 10_000
"""Message ids whose callback attempts are remembered across receives (relay-attempts)."""


class AttemptMemory:
    """Callback attempts of released messages, by message id, so a dead-letter copy can say how
    many were made over all receives (bounded; an id forgotten counts one per earlier receive)."""

    def __init__(self, size: int = ATTEMPT_MEMORY) -> None:
        self.size = size
        self._attempts: collections.OrderedDict[str, int] = collections.OrderedDict()

    def earlier(self, message_id: str, receive_count: int) -> int:
        """Attempts made on the message's earlier receives (`receive_count` counts this one)."""
        return self._attempts.get(message_id, receive_count - 1)

    def remember(self, message_id: str, attempts: int) -> None:
        """Records the attempts of a message released to come back."""
        self._attempts[message_id] = attempts
        self._attempts.move_to_end(message_id)
        while len(self._attempts) > self.size:
            self._attempts.popitem(last=False)

    def forget(self, message_id: str) -> None:
        """The message is finished for good."""
        self._attempts.pop(message_id, None)
