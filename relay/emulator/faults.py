"""Fault settings of the emulator (latency, throttling, 5xx, denial) and its token bucket."""

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, TypeGuard

from relay.errors import ConfigError


class FailureKind(StrEnum):
    """A kind of 5xx the emulator can inject; the value is what `error_kinds` holds in JSON."""

    SERVICE_UNAVAILABLE = "ServiceUnavailableException"
    INTERNAL_SERVICE_ERROR = "InternalServiceError"
    BAD_GATEWAY = "BadGateway"


ALL_FAILURE_KINDS = tuple(FailureKind)


@dataclass(frozen=True, kw_only=True, slots=True)
class Faults:
    """What the emulator does wrong on purpose; the defaults do nothing wrong.

    `throttle_rps` 0 turns throttling off; `throttle_burst` None means "one second's worth,
    at least 1". `retry_after_s` None derives `RetryAfterSeconds` from the bucket (see
    `retry_after_text`). `error_rate` is the probability of a 5xx, its kind drawn uniformly
    from `error_kinds`.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    throttle_rps: float = 0.0
    throttle_burst: int | None = None
    retry_after_s: float | None = None
    error_rate: float = 0.0
    error_kinds: tuple[FailureKind, ...] = ALL_FAILURE_KINDS
    deny_workflows: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("latency_ms", "jitter_ms", "throttle_rps"):
            _require(_is_non_negative(getattr(self, name)), f"{name} must be a number >= 0")
        _require(
            self.throttle_burst is None
            or (_is_int(self.throttle_burst) and self.throttle_burst >= 1),
            "throttle_burst must be an integer >= 1",
        )
        _require(
            self.retry_after_s is None or _is_non_negative(self.retry_after_s),
            "retry_after_s must be a number >= 0",
        )
        _require(
            _is_number(self.error_rate) and 0.0 <= self.error_rate <= 1.0,
            "error_rate must be a number between 0 and 1",
        )
        _require(
            all(isinstance(kind, FailureKind) for kind in self.error_kinds),
            f"error_kinds must be among {[kind.value for kind in FailureKind]}",
        )
        _require(
            bool(self.error_kinds) or self.error_rate == 0.0,
            "error_kinds must not be empty while error_rate > 0",
        )
        _require(
            isinstance(self.deny_workflows, frozenset)
            and all(isinstance(workflow, str) for workflow in self.deny_workflows),
            "deny_workflows must be a frozenset of workflow ids",
        )

    @property
    def burst(self) -> int:
        """The bucket's capacity in effect."""
        if self.throttle_burst is not None:
            return self.throttle_burst
        return max(1, math.ceil(self.throttle_rps))

    def to_json(self) -> dict[str, Any]:
        """The settings as the admin API shows them."""
        return {
            "latency_ms": self.latency_ms,
            "jitter_ms": self.jitter_ms,
            "throttle_rps": self.throttle_rps,
            "throttle_burst": self.throttle_burst,
            "retry_after_s": self.retry_after_s,
            "error_rate": self.error_rate,
            "error_kinds": [kind.value for kind in self.error_kinds],
            "deny_workflows": sorted(self.deny_workflows),
        }

    def updated(self, changes: Mapping[str, object]) -> "Faults":
        """These settings with the given JSON members changed; raise ConfigError on a bad one."""
        unknown = sorted(set(changes) - set(self.__dataclass_fields__))
        _require(not unknown, f"unknown fault settings: {unknown}")
        values: dict[str, Any] = dict(changes)
        if "error_kinds" in values:
            values["error_kinds"] = _failure_kinds(values["error_kinds"])
        if "deny_workflows" in values:
            workflows = values["deny_workflows"]
            _require(
                isinstance(workflows, list | tuple | set | frozenset),
                "deny_workflows must be a list of workflow ids",
            )
            values["deny_workflows"] = frozenset(workflows)
        return replace(self, **values)


def _failure_kinds(value: object) -> tuple[FailureKind, ...]:
    choices = [kind.value for kind in FailureKind]
    if not isinstance(value, list | tuple):
        raise ConfigError(f"error_kinds must be a list of {choices}")
    try:
        return tuple(FailureKind(kind) for kind in value)
    except ValueError as error:
        raise ConfigError(f"error_kinds must be among {choices}") from error


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def _is_int(value: object) -> bool:
    # bool is an int subclass; `true` in JSON is not a count.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> TypeGuard[float]:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _is_non_negative(value: object) -> bool:
    return _is_number(value) and value >= 0


class TokenBucket:
    """A token bucket: `rate_per_s` tokens a second, at most `burst` saved, starting full."""

    __slots__ = ("_burst", "_clock", "_rate_per_s", "_tokens", "_updated_at")

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rate_per_s = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated_at = clock()

    def take(self) -> float:
        """Take one token and return 0.0, or return the seconds until one is available."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated_at) * self._rate_per_s)
        self._updated_at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate_per_s


def retry_after_text(wait_s: float, override_s: float | None) -> str:
    """The `RetryAfterSeconds` value: whole seconds, rounded up, at least "1".

    The model types it as a string and says nothing more; AWS services put whole seconds
    there (as in HTTP's Retry-After). Rounding up keeps the promise "no token sooner", and
    "0" would invite a client that honours it to retry in a hot loop. An override is sent
    as given ("2", or "0.25" for a fractional one) so tests and benchmarks can pick any value.
    """
    if override_s is not None:
        return str(int(override_s)) if float(override_s).is_integer() else str(override_s)
    return str(max(1, math.ceil(wait_s)))
