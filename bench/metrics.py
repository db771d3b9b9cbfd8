"""What a run measured, computed from the emulator's call log and the CPU samples.

Throughput is delivered callbacks over the window from the first call received to the last
success answered, both from the emulator's log, so start-up and the drain check of a contender
are outside it. End-to-end latency is from the moment the harness sent a message (or launched
the floor) to the emulator's answer of that token's first success.
"""

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

THROTTLED = "ThrottlingException"


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class CallStats:
    """The emulator's log of one run, reduced."""

    calls: int
    successes: int
    delivered_tokens: int
    throttled: int
    server_errors: int
    duplicates: int
    """Calls for a token after that token's callback had succeeded."""
    other_errors: dict[str, int]
    first_received_at: float | None
    last_success_at: float | None
    e2e_p50_s: float | None
    e2e_p99_s: float | None
    service_p50_ms: float | None
    """The emulator's own time per success (receive to answer), injected latency included."""

    @property
    def window_s(self) -> float | None:
        """From the first call received to the last success answered."""
        if self.first_received_at is None or self.last_success_at is None:
            return None
        return max(1e-9, self.last_success_at - self.first_received_at)

    @property
    def rate_per_s(self) -> float | None:
        """Delivered callbacks per second over the window."""
        window = self.window_s
        return None if window is None else self.successes / window


def reduce_calls(calls: Iterable[Mapping[str, Any]], sent_at: Mapping[str, float]) -> CallStats:
    """Reduce a call log (`GET /_emulator/calls`, oldest answer first) of one run."""
    succeeded: dict[str, float] = {}
    successes = throttled = server_errors = duplicates = total = 0
    other: dict[str, int] = {}
    first_received: float | None = None
    service_ms: list[float] = []
    for call in sorted(calls, key=lambda c: int(c["index"])):
        total += 1
        received = float(call["received_at"])
        first_received = received if first_received is None else min(first_received, received)
        token = call.get("token")
        if token is not None and token in succeeded:
            duplicates += 1
        status = int(call["http_status"])
        code = call.get("error_code")
        if status == 200 and code is None:
            successes += 1
            if token is not None:
                succeeded.setdefault(str(token), float(call["answered_at"]))
            service_ms.append((float(call["answered_at"]) - received) * 1000)
        elif code == THROTTLED:
            throttled += 1
        elif status >= 500:
            server_errors += 1
        else:
            other[str(code)] = other.get(str(code), 0) + 1
    latencies = [
        answered - sent_at[token] for token, answered in succeeded.items() if token in sent_at
    ]
    return CallStats(
        calls=total,
        successes=successes,
        delivered_tokens=len(succeeded),
        throttled=throttled,
        server_errors=server_errors,
        duplicates=duplicates,
        other_errors=other,
        first_received_at=first_received,
        last_success_at=max(succeeded.values(), default=None),
        e2e_p50_s=percentile(latencies, 0.50),
        e2e_p99_s=percentile(latencies, 0.99),
        service_p50_ms=percentile(service_ms, 0.50),
    )


@dataclass(slots=True)
class CpuTrace:
    """CPU seconds of one process sampled over time, to read the CPU spent inside a window."""

    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    def add(self, at: float, cpu_s: float | None) -> None:
        """Record a sample (None: the process is gone; ignored)."""
        if cpu_s is not None:
            self.times.append(at)
            self.cpu.append(cpu_s)

    def at(self, moment: float) -> float | None:
        """CPU seconds at `moment`, interpolated between samples (clamped to the ends)."""
        if not self.times:
            return None
        i = bisect.bisect_left(self.times, moment)
        if i == 0:
            return self.cpu[0]
        if i >= len(self.times):
            return self.cpu[-1]
        t0, t1 = self.times[i - 1], self.times[i]
        c0, c1 = self.cpu[i - 1], self.cpu[i]
        return c0 if t1 == t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)

    def between(self, start: float, end: float) -> float | None:
        """CPU seconds spent between two moments."""
        a, b = self.at(start), self.at(end)
        return None if a is None or b is None else max(0.0, b - a)
