"""Settings for each command: frozen dataclasses, defaults, range checks, `RELAY_*` names.

`RUN_OPTIONS` is the one table of `relay run`'s options: the CLI builds its flags from it, the
README's configuration table is written from it, and `RunConfig` holds the values.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final, Literal

from relay.errors import ConfigError
from relay.outcomes import Reason

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
        "--wait-time",
        int,
        20,
        "Seconds one long poll waits for messages (SQS's maximum, 20, costs least).",
        minimum=0,
        maximum=20,
    ),
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
        "--lean-sender",
        bool,
        True,
        "Send callbacks with botocore's signer on a shared aiohttp session: the same "
        "credentials, endpoint and errors at half the CPU per call (--no-lean-sender: the "
        "aiobotocore client).",
    ),
    OptionSpec(
        "--adaptive-rate",
        bool,
        True,
        "When throttled, slow to the rate Transfer Family accepts, then probe upwards "
        "(--no-adaptive-rate: only back off per call).",
    ),
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
    adaptive_rate: bool = True
    lean_sender: bool = True
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
        "wait_time",
    }
)


# --- dlq stats, dlq export, replay -------------------------------------------------------------

UNANNOTATED: Final = "unannotated"
"""The reason of a DLQ message without `relay-*` attributes (moved by SQS's own redrive)."""

REPLAY_REASONS: Final = frozenset({reason.value for reason in Reason} | {UNANNOTATED})
"""What `--reason` accepts: DESIGN §4's reasons, and `unannotated`."""

Destination = Literal["queue", "transfer"]

_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `30m`, `2h`, `1d`, `1w` → seconds; ConfigError otherwise."""
    value = text.strip().lower()
    unit = value[-1:] if value[-1:] in _DURATION_UNITS else "s"
    number = value[:-1] if value[-1:] in _DURATION_UNITS else value
    try:
        seconds = float(number) * _DURATION_UNITS[unit]
    except ValueError:
        raise ConfigError(f"not a duration: {text!r} (use e.g. 90s, 30m, 2h, 1d)") from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"not a duration: {text!r} (must be a finite number >= 0)")
    return seconds


@dataclass(frozen=True, kw_only=True, slots=True)
class ScanConfig:
    """How a DLQ is read once through: every message held invisible until it is dealt with."""

    dlq_url: str
    max_messages: int = 100_000
    """Messages read at most (SQS holds at most 120,000 in flight on a standard queue)."""
    visibility_timeout_s: int = 120
    """Lease of a message read; a heartbeat renews it while the command still needs it."""
    receive_wait_s: int = 1
    """Long-poll wait of each receive; an empty receive ends the scan."""
    scan_timeout_s: float = 900.0
    """Reading stops after this long; what was read is still handled."""

    def __post_init__(self) -> None:
        if not self.dlq_url:
            raise ConfigError("no DLQ: pass --dlq-url (or set RELAY_DLQ_URL)")
        if self.max_messages < 1:
            raise ConfigError(f"--max-messages must be at least 1, not {self.max_messages}")
        if not 1 <= self.visibility_timeout_s <= 43_200:
            raise ConfigError(
                f"--visibility-timeout must be between 1 and 43200, not {self.visibility_timeout_s}"
            )
        if not 0 <= self.receive_wait_s <= 20:
            raise ConfigError(f"--receive-wait must be between 0 and 20, not {self.receive_wait_s}")
        if not (math.isfinite(self.scan_timeout_s) and self.scan_timeout_s > 0):
            raise ConfigError(f"--scan-timeout must be above 0, not {self.scan_timeout_s}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayFilters:
    """Which DLQ messages a replay selects; empty means any. Different filters must all match."""

    reasons: frozenset[str] = frozenset()
    error_codes: frozenset[str] = frozenset()
    workflow_ids: frozenset[str] = frozenset()
    older_than_s: float | None = None
    """Dead-lettered at least this long ago (unannotated messages: sent)."""
    newer_than_s: float | None = None
    """Dead-lettered at most this long ago."""

    def __post_init__(self) -> None:
        unknown = self.reasons - REPLAY_REASONS
        if unknown:
            raise ConfigError(
                f"unknown --reason {', '.join(sorted(unknown))}; "
                f"one of {', '.join(sorted(REPLAY_REASONS))}"
            )
        if (
            self.older_than_s is not None
            and self.newer_than_s is not None
            and self.older_than_s >= self.newer_than_s
        ):
            raise ConfigError("--older-than must be shorter than --newer-than, or nothing matches")


@dataclass(frozen=True, kw_only=True, slots=True)
class StatsConfig:
    """`relay dlq stats`."""

    scan: ScanConfig
    top: int = 10
    json_output: bool = False

    def __post_init__(self) -> None:
        if self.top < 1:
            raise ConfigError(f"--top must be at least 1, not {self.top}")


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportConfig:
    """`relay dlq export`."""

    scan: ScanConfig
    out: str
    json_output: bool = False


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayConfig:
    """`relay replay`: from a DLQ (`scan`) or an export file, to a queue or Transfer Family."""

    scan: ScanConfig | None = None
    from_file: str | None = None
    to: Destination = "queue"
    queue_url: str | None = None
    """Destination queue for every message; default: each message's `relay-source-queue`."""
    filters: ReplayFilters = ReplayFilters()
    max_messages: int = 100_000
    """Selected messages replayed at most."""
    dry_run: bool = False
    rate: float = 0.0
    """Messages per second (0 = no limit)."""
    concurrency: int = 16
    shutdown_grace_s: float = 10.0
    call_timeout_s: float = 10.0
    top: int = 10
    json_output: bool = False

    def __post_init__(self) -> None:
        if (self.scan is None) == (self.from_file is None):
            raise ConfigError("give exactly one of --dlq-url and --from-file")
        if self.to not in ("queue", "transfer"):
            raise ConfigError(f"--to must be queue or transfer, not {self.to}")
        if self.to == "transfer" and self.queue_url:
            raise ConfigError("--queue-url is for --to queue; --to transfer calls Transfer Family")
        if self.max_messages < 1:
            raise ConfigError(f"--max-messages must be at least 1, not {self.max_messages}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ConfigError(f"--rate must be a number >= 0, not {self.rate}")
        if not 1 <= self.concurrency <= 1000:
            raise ConfigError(f"--concurrency must be between 1 and 1000, not {self.concurrency}")
        if not (math.isfinite(self.shutdown_grace_s) and self.shutdown_grace_s >= 0):
            raise ConfigError(
                f"--shutdown-grace must be a number >= 0, not {self.shutdown_grace_s}"
            )
        if not (math.isfinite(self.call_timeout_s) and self.call_timeout_s > 0):
            raise ConfigError(f"--call-timeout must be a number above 0, not {self.call_timeout_s}")
        if self.top < 1:
            raise ConfigError(f"--top must be at least 1, not {self.top}")
