"""Rate and flow limits: the token bucket behind `--max-rps`.

Pure asyncio and arithmetic; no AWS here.
"""

import asyncio
import time
from collections.abc import Callable


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
