"""Settings of the DLQ tools (`relay dlq stats|export|purge`, `relay replay`) and of how they
read which executions still wait (DESIGN §11): frozen dataclasses, each default written once on
its field, range checks. The CLI builds each command's flags from the fields that carry a help
text (`relay.config.option`).
"""

import math
from dataclasses import dataclass
from typing import Final, Literal

from relay.config import check_options, option
from relay.dead_letter import UNANNOTATED
from relay.errors import ConfigError
from relay.limits import RetryPolicy
from relay.outcomes import Reason

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
    # SQS holds at most 120,000 in flight on a standard queue.
    max_messages: int = option(100_000, "Messages read at most.", minimum=1)
    visibility_timeout_s: int = option(
        120,
        "Seconds a message read stays invisible while still needed (renewed); after a kill, "
        "messages come back within it.",
        minimum=1,
        maximum=43_200,
    )
    receive_wait_s: int = option(
        1,
        "Long-poll seconds per receive; an empty receive ends the reading (0 is quicker but "
        "may stop early on real SQS).",
        minimum=0,
        maximum=20,
    )
    scan_timeout_s: float = option(900.0, "Stop reading the DLQ after this many seconds.", above=0)

    def __post_init__(self) -> None:
        if not self.dlq_url:
            raise ConfigError("no DLQ: pass --dlq-url (or set RELAY_DLQ_URL)")
        check_options(self)


EXECUTION_STATES: Final = ("waiting", "finished", "unknown")
"""What `--execution-state` accepts: DESIGN §11's states of a copy's execution."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ExecutionReads:
    """How the DLQ tools read which executions still wait (DESIGN §11, `relay.executions`).

    Per workflow, one listing (`ListExecutions`, every page) for the command's run, or
    `DescribeExecution` for each of its copies' executions when there are at most
    `describe_up_to` of them: a listing costs ceil(in progress / 1000) pages, not known before
    the first, so a describe is the cheaper read only for a workflow with few copies.
    """

    describe_up_to: int = 3
    concurrency: int = 4
    """Reads in flight at once, all workflows together (Transfer Family's API quotas are per
    account, and shared with everything else calling it)."""
    retry: RetryPolicy = RetryPolicy(max_attempts=6, budget_s=20.0, base_s=0.2, cap_s=5.0)
    """Throttling and 5xx are retried like the callback: full jitter, never sooner than
    `RetryAfterSeconds`, within the budget; then the workflow counts as unknown."""
    call_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.describe_up_to < 0 or self.concurrency < 1 or self.call_timeout_s <= 0:
            raise ConfigError("execution reads need describe_up_to >= 0, concurrency >= 1")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayFilters:
    """Which DLQ messages a command selects; empty means any. Different filters must all match."""

    reasons: frozenset[str] = frozenset()
    error_codes: frozenset[str] = frozenset()
    workflow_ids: frozenset[str] = frozenset()
    older_than_s: float | None = None
    """Dead-lettered at least this long ago (unannotated messages: sent)."""
    newer_than_s: float | None = None
    """Dead-lettered at most this long ago."""
    execution_states: frozenset[str] = frozenset()
    """The state of the copy's execution (DESIGN §11): `waiting`, `finished`, `unknown`."""

    def __post_init__(self) -> None:
        check_execution_states(self.execution_states)
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


def check_execution_states(states: frozenset[str]) -> None:
    """ConfigError for an `--execution-state` that is not one of DESIGN §11's states."""
    unknown = states - set(EXECUTION_STATES)
    if unknown:
        raise ConfigError(
            f"unknown --execution-state {', '.join(sorted(unknown))}; "
            f"one of {', '.join(EXECUTION_STATES)}"
        )


_EXECUTIONS_HELP: Final = (
    "Ask Transfer Family which copies' executions still wait (ListExecutions, "
    "DescribeExecution); --no-executions makes no Transfer Family call."
)


@dataclass(frozen=True, kw_only=True, slots=True)
class StatsConfig:
    """`relay dlq stats`."""

    scan: ScanConfig
    execution_states: frozenset[str] = frozenset()
    """Count only copies whose execution is in one of these states (`--execution-state`)."""
    reads: ExecutionReads = ExecutionReads()
    top: int = option(10, "Workflows listed, most messages first.", minimum=1)
    executions: bool = option(True, _EXECUTIONS_HELP)
    json_output: bool = option(False, "One JSON object on stdout.", flag="--json")

    def __post_init__(self) -> None:
        check_options(self)
        check_execution_states(self.execution_states)
        if self.execution_states and not self.executions:
            raise ConfigError("--execution-state needs the executions read: drop --no-executions")


@dataclass(frozen=True, kw_only=True, slots=True)
class ExportConfig:
    """`relay dlq export`."""

    scan: ScanConfig
    out: str
    execution_states: frozenset[str] = frozenset()
    """Write only copies whose execution is in one of these states; without it no Transfer
    Family call is made."""
    reads: ExecutionReads = ExecutionReads()
    json_output: bool = option(False, "The summary as one JSON object.", flag="--json")

    def __post_init__(self) -> None:
        check_execution_states(self.execution_states)


@dataclass(frozen=True, kw_only=True, slots=True)
class PurgeConfig:
    """`relay dlq purge`: delete the selected copies, after writing them to an export file."""

    scan: ScanConfig
    out: str | None = None
    """The export file the copies go to before any is deleted; optional with --dry-run only."""
    filters: ReplayFilters = ReplayFilters()
    reads: ExecutionReads = ExecutionReads()
    max_messages: int = option(100_000, "Delete at most this many.", minimum=1)
    dry_run: bool = option(False, "Report what would be deleted; write and delete nothing.")
    top: int = option(10, "Workflows listed in the summary.", minimum=1)
    json_output: bool = option(False, "The summary as one JSON object.", flag="--json")

    def __post_init__(self) -> None:
        check_options(self)
        if self.out is None and not self.dry_run:
            raise ConfigError("--out is needed: what is deleted is written there first")


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplayConfig:
    """`relay replay`: from a DLQ (`scan`) or an export file, to a queue or Transfer Family."""

    scan: ScanConfig | None = None
    from_file: str | None = None
    to: Destination = option(
        "queue",
        "queue: back onto a queue for the worker; transfer: call SendWorkflowStepState here.",
        choices=("queue", "transfer"),
    )
    queue_url: str | None = None
    """Destination queue for every message; default: each message's `relay-source-queue`."""
    filters: ReplayFilters = ReplayFilters()
    max_messages: int = option(100_000, "Replay at most this many.", minimum=1)
    dry_run: bool = option(False, "Report what would be replayed; change nothing.")
    rate: float = option(0.0, "Messages per second (0 = no cap).", minimum=0)
    concurrency: int = option(16, "Replays in progress at once.", minimum=1, maximum=1000)
    shutdown_grace_s: float = option(
        10.0, "Seconds replays in progress may finish after SIGINT or SIGTERM.", minimum=0
    )
    call_timeout_s: float = option(
        10.0, "Seconds one Transfer Family call may take (--to transfer).", above=0
    )
    top: int = option(10, "Workflows listed in the summary.", minimum=1)
    include_finished: bool = option(
        False, "Replay copies whose execution has finished too (by default they stay in the DLQ)."
    )
    executions: bool = option(True, _EXECUTIONS_HELP + " Every copy is then replayed unchecked.")
    reads: ExecutionReads = ExecutionReads()
    json_output: bool = option(False, "The summary as one JSON object.", flag="--json")
    tracing: bool = option(
        False,
        "Trace each replay with OpenTelemetry, continuing the trace each copy carries (needs "
        "the otel extra); also on when OTEL_TRACES_EXPORTER names an exporter.",
    )

    def __post_init__(self) -> None:
        if (self.scan is None) == (self.from_file is None):
            raise ConfigError("give exactly one of --dlq-url and --from-file")
        check_options(self)
        if self.to == "transfer" and self.queue_url:
            raise ConfigError("--queue-url is for --to queue; --to transfer calls Transfer Family")
        states = self.filters.execution_states
        if states and not self.executions:
            raise ConfigError("--execution-state needs the executions read: drop --no-executions")
        if "finished" in states and not self.include_finished:
            raise ConfigError(
                "--execution-state finished selects copies a replay skips: "
                "add --include-finished to replay them"
            )
