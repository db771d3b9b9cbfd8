"""Settings for each command: frozen dataclasses, each default written once on its field, range
checks, `RELAY_*` names.

`relay run`'s options are `RunConfig`'s fields that carry a help text (`option(...)`): the CLI
builds its flags from them (`RUN_OPTIONS`) and the README's configuration table is checked
against them, so a default lives in exactly one place. The DLQ tools' settings are
`relay.config.dlq`'s.
"""

import math
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, Final, Literal

from relay.errors import ConfigError
from relay.limits import DEFAULT_RETRY, RetryPolicy
from relay.outcomes import Limits

LogFormat = Literal["json", "text"]


def env_name(option: str) -> str:
    """`--max-in-flight` → `RELAY_MAX_IN_FLIGHT` (DESIGN §5)."""
    return "RELAY_" + option.lstrip("-").replace("-", "_").upper()


def option(
    default: Any,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    flag: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A command-line option: a field with its default, help text and range (`minimum` and
    `maximum` inclusive, `above` exclusive); the flag is the field's name unless given."""
    metadata = {
        "help": help,
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
        "flag": flag,
        "choices": choices,
    }
    return field(default=default, metadata=metadata)


def check_namespace(namespace: str) -> str:
    """The namespace, if CloudWatch takes it for custom metrics; else a `ConfigError`.

    CloudWatch's rule (PutMetricData): ASCII without control characters, at most 255, and
    not `AWS/...`, which is reserved for AWS's own services.
    """
    if not namespace.strip() or len(namespace) > 255:
        raise ConfigError(f"--emf-namespace must be 1 to 255 characters: {namespace!r}")
    if not (namespace.isascii() and namespace.isprintable()):
        raise ConfigError(f"--emf-namespace must be printable ASCII: {namespace!r}")
    if namespace.startswith("AWS/"):
        raise ConfigError(f"--emf-namespace must not start with AWS/ (reserved): {namespace!r}")
    return namespace


def default_of(cls: type, name: str) -> Any:
    """The default written on a config dataclass's field (for CLI options that show it)."""
    for item in fields(cls):
        if item.name == name and item.default is not MISSING:
            return item.default
    raise KeyError(f"{cls.__name__}.{name} has no default")


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One command-line option: flag, type, default, help text and range, read off its field."""

    flag: str
    type: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] | None = None
    name: str = ""
    """The field it fills."""

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return env_name(self.flag)

    @classmethod
    def of(cls, item: "Field[Any]") -> "OptionSpec":
        """The option a field declares."""
        meta = item.metadata
        return cls(
            flag=meta["flag"] or "--" + item.name.removesuffix("_s").replace("_", "-"),
            type=type(item.default),
            default=item.default,
            help=meta["help"],
            minimum=meta["minimum"],
            maximum=meta["maximum"],
            above=meta["above"],
            choices=meta["choices"],
            name=item.name,
        )

    def check(self, value: Any) -> None:
        """ConfigError when the value is outside the option's range."""
        # click's FLOAT accepts "nan" and "inf"; NaN passes every comparison below.
        if self.type is float and not math.isfinite(value):
            raise ConfigError(f"{self.flag} must be a finite number, not {value}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(f"{self.flag} must be at least {self.minimum:g}, not {value}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(f"{self.flag} must be at most {self.maximum:g}, not {value}")
        if self.above is not None and not value > self.above:
            raise ConfigError(f"{self.flag} must be above {self.above:g}, not {value}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{self.flag} must be {' or '.join(self.choices)}, not {value}")


def options_of(cls: type) -> tuple[OptionSpec, ...]:
    """The command-line options a config dataclass declares, in field order."""
    return tuple(OptionSpec.of(item) for item in fields(cls) if "help" in item.metadata)


def check_options(config: Any) -> None:
    """ConfigError for the first option of a config dataclass outside its range."""
    for spec in options_of(type(config)):
        value = getattr(config, spec.name)
        if value is not None:
            spec.check(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class RunConfig:
    """Everything `relay run` needs; durations in seconds (`_s`)."""

    queue_url: str
    dlq_url: str | None = None
    exit_when_empty: bool = False
    max_in_flight: int = option(64, "Callbacks in progress at once.", minimum=1)
    pollers: int = option(4, "Concurrent long polls on the queue.", minimum=1)
    wait_time_s: int = option(
        20,
        "Seconds one long poll waits for messages (SQS's maximum, 20, costs least).",
        minimum=0,
        maximum=20,
    )
    max_receives: int = option(
        10,
        "A retryable failure on this receive count or later is dead-lettered as retries_exhausted.",
        minimum=1,
    )
    visibility_timeout_s: int = option(
        60,
        "Seconds a received message stays invisible; a heartbeat extends it while in flight.",
        minimum=5,
        maximum=43_200,  # SQS refuses a longer visibility timeout (12 hours).
    )
    retry_budget_s: float = option(
        DEFAULT_RETRY.budget_s,
        "Seconds one receive may spend retrying its callback before releasing it.",
        minimum=0.1,
    )
    max_attempts: int = option(
        DEFAULT_RETRY.max_attempts, "Callback attempts per receive before releasing.", minimum=1
    )
    call_timeout_s: float = option(10.0, "Seconds one callback call may take.", minimum=0.1)
    backoff_base_s: float = option(
        DEFAULT_RETRY.base_s, "First retry delay in seconds (then doubling).", minimum=0
    )
    backoff_cap_s: float = option(DEFAULT_RETRY.cap_s, "Longest in-process retry delay.", minimum=0)
    release_base_s: float = option(
        5.0,
        "Visibility delay of a released message on its first receive (then doubling).",
        minimum=0,
    )
    release_cap_s: float = option(
        300.0, "Longest visibility delay of a released message.", minimum=0
    )
    shutdown_grace_s: float = option(
        25.0,
        "Seconds in-flight callbacks may finish after SIGTERM; an attempt starts only if it can "
        "finish within what is left, and a call on the wire is awaited, never cut.",
        minimum=0,
    )
    max_rps: float = option(0.0, "Cap on callbacks per second (0 = no cap).", minimum=0)
    lean_sender: bool = option(
        True,
        "Send callbacks, SQS's per-message calls and the fleet table's calls with relay's lean "
        "AWS JSON client (SigV4 with a cached signing key, one aiohttp session per service): "
        "the same credentials, endpoints and errors at a fraction of the CPU per call "
        "(--no-lean-sender: aiobotocore's clients for all).",
    )
    adaptive_rate: bool = option(
        True,
        "When throttled, slow to the rate Transfer Family accepts, then probe upwards "
        "(--no-adaptive-rate: only back off per call).",
    )
    breaker_cooldown_s: float = option(
        300.0,
        "Seconds a workflow that answered AccessDenied is left alone before a probe.",
        minimum=0,
    )
    callback_deadline_s: float = option(
        1800.0,
        "Seconds after sending past which a retryable failure is dead-lettered as expired.",
        minimum=0,
    )
    dedupe_size: int = option(100_000, "Step results remembered to skip duplicates.", minimum=0)
    dedupe_ttl_s: float = option(
        3600.0, "Seconds a delivered step result is remembered.", minimum=0
    )
    dedupe_table: str = option(
        "",
        "DynamoDB table a fleet shares so each step is answered once (empty = each process "
        "remembers alone).",
    )
    http_host: str = option("0.0.0.0", "Address of the health and metrics server.")
    http_port: int = option(
        8080, "Port of /healthz and /metrics (0 = no server).", minimum=0, maximum=65_535
    )
    unhealthy_after: int = option(
        5, "Consecutive receive failures after which /healthz answers 503.", minimum=1
    )
    log_format: LogFormat = option(
        "json", "json (one object per line) or text.", choices=("json", "text")
    )
    log_level: str = option("INFO", "DEBUG, INFO, WARNING or ERROR.")
    emf_interval_s: float = option(
        0.0,
        "Seconds between CloudWatch Embedded Metric Format documents on stdout, deltas over the "
        "interval (0 = off).",
        minimum=0,
    )
    emf_namespace: str = option("relay", "CloudWatch namespace of the EMF metrics.")
    tracing: bool = option(
        False,
        "Trace each message with OpenTelemetry, exported as the OTEL_* variables say (needs the "
        "otel extra); also on when OTEL_TRACES_EXPORTER names an exporter.",
    )
    empty_check_s: float = 1.0
    """How often `--exit-when-empty` asks the queue for its counts."""

    def __post_init__(self) -> None:
        check_options(self)
        if self.retry_budget_s >= self.visibility_timeout_s:
            raise ConfigError(
                f"--retry-budget ({self.retry_budget_s:g}s) must be shorter than "
                f"--visibility-timeout ({self.visibility_timeout_s}s)"
            )
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"--log-level must be DEBUG, INFO, WARNING or ERROR: {self.log_level}"
            )
        check_namespace(self.emf_namespace)

    def retry_policy(self) -> RetryPolicy:
        """How one receive retries its callback."""
        return RetryPolicy(
            max_attempts=self.max_attempts,
            budget_s=self.retry_budget_s,
            base_s=self.backoff_base_s,
            cap_s=self.backoff_cap_s,
        )

    def limits(self) -> Limits:
        """The settings the rules of `relay.outcomes.decide` read."""
        return Limits(
            max_receives=self.max_receives,
            callback_deadline_s=self.callback_deadline_s,
            breaker_cooldown_s=self.breaker_cooldown_s,
            release_base_s=self.release_base_s,
            release_cap_s=self.release_cap_s,
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


RUN_OPTIONS: Final[tuple[OptionSpec, ...]] = options_of(RunConfig)
"""`relay run`'s options, in the order `--help` and the README list them."""


# --- demo ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class DemoConfig:
    """What `relay demo` runs: the mix, the offered rate and the emulator's faults."""

    messages: int = option(1000, "Step results to send.", minimum=1)
    rate_per_s: float = option(
        60.0,
        "Messages per second offered on average, in bursts of twice that.",
        above=0,
        flag="--rate",
    )
    # Below the bursts, above the lulls: throttling comes and goes.
    throttle_rps: float = option(
        45.0, "Calls per second the emulator allows (0 = no throttling).", minimum=0
    )
    latency_ms: float = option(5.0, "Emulator latency (+ as much again in jitter).", minimum=0)
    error_rate: float = 0.02
    malformed_share: float = 0.03
    unknown_share: float = 0.03
    workflows: int = 4
    seed: int | None = None
    keep_running: bool = option(
        False, "Afterwards, keep the endpoints up and print their settings until Ctrl-C."
    )
    emf: bool = option(
        False, "Show the CloudWatch EMF documents the worker writes (every 5 s) as it runs."
    )
    max_receives: int = 10
    max_backlog: int = 40
    """Sent but unfinished messages at most: moto's ReceiveMessage slows as its queue grows."""
    drain_timeout_s: float = 60.0
    """How long the worker may take to finish after the last message was sent."""

    def __post_init__(self) -> None:
        check_options(self)
