"""Settings for each command: frozen dataclasses, defaults, range checks, `RELAY_*` names.

`RUN_OPTIONS` is the one table of `relay run`'s options: the CLI builds its flags from it, the
README's configuration table is written from it, and `RunConfig` holds the values.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from relay.errors import ConfigError

LogFormat = Literal["json", "text"]


def env_name(option: str) -> str:
    """`--max-in-flight` → `RELAY_MAX_IN_FLIGHT` (DESIGN §5)."""
    return "RELAY_" + option.lstrip("-").replace("-", "_").upper()


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One `relay run` option: flag, type, default and help text."""

    flag: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None

    @property
    def field(self) -> str:
        """The `RunConfig` field this option fills."""
        return field_for(self.flag)

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return env_name(self.flag)


RUN_OPTIONS: Final[tuple[OptionSpec, ...]] = (
    OptionSpec("--max-in-flight", int, 64, "Callbacks in progress at once.", minimum=1),
    OptionSpec("--pollers", int, 4, "Concurrent long polls on the queue.", minimum=1),
    OptionSpec(
        "--max-receives",
        int,
        10,
        "A retryable failure on this receive count or later is dead-lettered as retries_exhausted.",
        minimum=1,
    ),
    OptionSpec(
        "--visibility-timeout",
        int,
        60,
        "Seconds a received message stays invisible; a heartbeat extends it while in flight.",
        minimum=5,
        maximum=43_200,  # SQS refuses a longer visibility timeout (12 hours).
    ),
    OptionSpec(
        "--retry-budget",
        float,
        20.0,
        "Seconds one receive may spend retrying its callback before releasing it.",
        minimum=0.1,
    ),
    OptionSpec(
        "--max-attempts", int, 5, "Callback attempts per receive before releasing.", minimum=1
    ),
    OptionSpec("--call-timeout", float, 10.0, "Seconds one callback call may take.", minimum=0.1),
    OptionSpec(
        "--backoff-base", float, 0.2, "First retry delay in seconds (then doubling).", minimum=0
    ),
    OptionSpec("--backoff-cap", float, 5.0, "Longest in-process retry delay.", minimum=0),
    OptionSpec(
        "--release-base",
        float,
        5.0,
        "Visibility delay of a released message on its first receive (then doubling).",
        minimum=0,
    ),
    OptionSpec(
        "--release-cap", float, 300.0, "Longest visibility delay of a released message.", minimum=0
    ),
    OptionSpec(
        "--shutdown-grace",
        float,
        25.0,
        "Seconds in-flight callbacks may finish after SIGTERM (ECS waits 30 by default).",
        minimum=0,
    ),
    OptionSpec("--max-rps", float, 0.0, "Cap on callbacks per second (0 = no cap).", minimum=0),
    OptionSpec(
        "--breaker-cooldown",
        float,
        300.0,
        "Seconds a workflow that answered AccessDenied is left alone before a probe.",
        minimum=0,
    ),
    OptionSpec(
        "--callback-deadline",
        float,
        1800.0,
        "Seconds after sending past which a retryable failure is dead-lettered as expired.",
        minimum=0,
    ),
    OptionSpec(
        "--dedupe-size", int, 100_000, "Step results remembered to skip duplicates.", minimum=0
    ),
    OptionSpec(
        "--dedupe-ttl", float, 3600.0, "Seconds a delivered step result is remembered.", minimum=0
    ),
    OptionSpec("--http-host", str, "0.0.0.0", "Address of the health and metrics server."),
    OptionSpec(
        "--http-port",
        int,
        8080,
        "Port of /healthz and /metrics (0 = no server).",
        minimum=0,
        maximum=65_535,
    ),
    OptionSpec(
        "--unhealthy-after",
        int,
        5,
        "Consecutive receive failures after which /healthz answers 503.",
        minimum=1,
    ),
    OptionSpec("--log-format", str, "json", "json (one object per line) or text."),
    OptionSpec("--log-level", str, "INFO", "DEBUG, INFO, WARNING or ERROR."),
)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """Everything `relay run` needs; durations in seconds (`_s`)."""

    queue_url: str
    dlq_url: str | None = None
    exit_when_empty: bool = False
    max_in_flight: int = 64
    pollers: int = 4
    max_receives: int = 10
    visibility_timeout_s: int = 60
    retry_budget_s: float = 20.0
    max_attempts: int = 5
    call_timeout_s: float = 10.0
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 5.0
    release_base_s: float = 5.0
    release_cap_s: float = 300.0
    shutdown_grace_s: float = 25.0
    max_rps: float = 0.0
    breaker_cooldown_s: float = 300.0
    callback_deadline_s: float = 1800.0
    dedupe_size: int = 100_000
    dedupe_ttl_s: float = 3600.0
    http_host: str = "0.0.0.0"
    http_port: int = 8080
    unhealthy_after: int = 5
    log_format: LogFormat = "json"
    log_level: str = "INFO"
    wait_time_s: int = 20
    """Long-poll wait; 20 is SQS's maximum. Tests shorten it."""
    empty_check_s: float = 1.0
    """How often `--exit-when-empty` asks the queue for its counts."""

    def __post_init__(self) -> None:
        for spec in RUN_OPTIONS:
            value = getattr(self, spec.field)
            # click's FLOAT accepts "nan" and "inf"; NaN passes every comparison below.
            if spec.type is float and not math.isfinite(value):
                raise ConfigError(f"{spec.flag} must be a finite number, not {value}")
            if spec.minimum is not None and value < spec.minimum:
                raise ConfigError(f"{spec.flag} must be at least {spec.minimum:g}, not {value}")
            if spec.maximum is not None and value > spec.maximum:
                raise ConfigError(f"{spec.flag} must be at most {spec.maximum:g}, not {value}")
        if self.retry_budget_s >= self.visibility_timeout_s:
            raise ConfigError(
                f"--retry-budget ({self.retry_budget_s:g}s) must be shorter than "
                f"--visibility-timeout ({self.visibility_timeout_s}s)"
            )
        if self.log_format not in ("json", "text"):
            raise ConfigError(f"--log-format must be json or text, not {self.log_format}")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"--log-level must be DEBUG, INFO, WARNING or ERROR: {self.log_level}"
            )
        if not 0 <= self.wait_time_s <= 20:
            raise ConfigError("wait time must be between 0 and 20 seconds")

    @classmethod
    def build(cls, options: Mapping[str, Any], env: Mapping[str, str]) -> "RunConfig":
        """From CLI option values by field name; the queue URL may come from Copilot."""
        values = {k: v for k, v in options.items() if v is not None}
        if not values.get("queue_url"):
            values["queue_url"] = env.get("COPILOT_QUEUE_URI", "")
        if not values["queue_url"]:
            raise ConfigError(
                "no queue: pass --queue-url or set RELAY_QUEUE_URL (or COPILOT_QUEUE_URI)"
            )
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)


def field_for(flag: str) -> str:
    """The `RunConfig` field for a flag: durations gain `_s`."""
    name = flag.lstrip("-").replace("-", "_")
    if name in _DURATIONS:
        return name + "_s"
    return name


_DURATIONS: Final = frozenset(
    {
        "visibility_timeout",
        "retry_budget",
        "call_timeout",
        "backoff_base",
        "backoff_cap",
        "release_base",
        "release_cap",
        "shutdown_grace",
        "breaker_cooldown",
        "callback_deadline",
        "dedupe_ttl",
    }
)
