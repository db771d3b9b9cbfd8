"""What a deployment on ECS Fargate gives relay, and the values that must sit above relay's own
settings there: the container's stopTimeout above the grace plus one call, the redrive's
maxReceiveCount above --max-receives. The CDK construct (`relay.cdk`) builds from these; the
CloudFormation template's mappings are checked against the same functions
(tests/deploy/test_template.py), so the rules are written once.

Plain data, no AWS CDK import: the tests read the defaults without starting jsii.
"""

import re
from dataclasses import dataclass
from typing import Final

from relay.config import RunConfig, check_namespace, default_of
from relay.errors import ConfigError

CALL_TIMEOUT_S: Final[float] = default_of(RunConfig, "call_timeout_s")
"""relay's --call-timeout, which a deployment leaves at its default (RELAY_CALL_TIMEOUT)."""
STOP_MARGIN_S: Final = 5
"""Seconds between the end of the last call a drain awaits and SIGKILL."""
REDRIVE_MARGIN: Final = 5
"""Receives SQS's redrive allows beyond relay's --max-receives: relay dead-letters first."""
FARGATE_MAX_STOP_TIMEOUT_S: Final = 120
FARGATE_SIZES: Final[dict[int, tuple[int, ...]]] = {
    256: (512, 1024, 2048),
    512: (1024, 2048, 3072, 4096),
    1024: (2048, 3072, 4096, 5120, 6144, 7168, 8192),
    2048: (4096, 5120, 6144, 7168, 8192, 16384),
    4096: (8192, 16384, 30720),
}
"""Task CPU units → the memory sizes (MiB) Fargate offers with them (the template's Rules)."""
LOG_RETENTION_DAYS: Final = (
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
    2922, 3288, 3653,
)  # fmt: skip
"""The retention periods CloudWatch Logs accepts."""
COLLECTOR_IMAGE: Final = "public.ecr.aws/aws-observability/aws-otel-collector:v0.49.0"
"""The AWS Distro for OpenTelemetry collector run beside relay with tracing (pinned)."""

_SNS_TOPIC: Final = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_.-]+")
_ACCOUNT: Final = re.compile(r"[0-9]{12}")
_WORKFLOW: Final = re.compile(
    r"arn:aws[a-z-]*:transfer:[a-z0-9-]+:[0-9]{12}:workflow/w-[a-z0-9]{17}"
)


def stop_timeout_s(shutdown_grace_s: float) -> int:
    """The container's stopTimeout for a grace: the grace, one call timeout, a margin."""
    return int(shutdown_grace_s + CALL_TIMEOUT_S + STOP_MARGIN_S)


def max_receive_count(max_receives: int) -> int:
    """The redrive policy's maxReceiveCount for relay's --max-receives."""
    return max_receives + REDRIVE_MARGIN


@dataclass(frozen=True, kw_only=True, slots=True)
class DeploymentSettings:
    """relay's settings on ECS Fargate, each defaulting to relay's own (RunConfig) or to the
    CloudFormation template's parameter of the same meaning (deploy/README.md, "Parameters")."""

    cpu: int = 512
    """Task CPU units (1024 = 1 vCPU): 256, 512, 1024, 2048 or 4096."""
    memory_mib: int = 1024
    """Task memory; a size Fargate offers with `cpu`."""
    arm64: bool = False
    """Graviton (ARM64) instead of X86_64; the image must be built for it."""
    min_tasks: int = 1
    """Fewest tasks autoscaling keeps (at least 1, so no callback waits for a cold start)."""
    max_tasks: int = 4
    """Most tasks autoscaling starts."""
    backlog_per_task_target: int = 200
    """Visible messages per running task that target tracking holds."""
    max_receives: int = default_of(RunConfig, "max_receives")
    """relay's --max-receives; the redrive's maxReceiveCount is 5 above it."""
    shutdown_grace_s: float = default_of(RunConfig, "shutdown_grace_s")
    """relay's --shutdown-grace; stopTimeout is it plus --call-timeout plus 5 (at most 120)."""
    visibility_timeout_s: int = default_of(RunConfig, "visibility_timeout_s")
    """relay's --visibility-timeout and the queue's own (30 to 43200, above --retry-budget)."""
    max_in_flight: int = default_of(RunConfig, "max_in_flight")
    """relay's --max-in-flight per task."""
    max_rps: float = default_of(RunConfig, "max_rps")
    """relay's --max-rps per task (0 = no cap)."""
    log_level: str = default_of(RunConfig, "log_level")
    """relay's --log-level."""
    emf_namespace: str = default_of(RunConfig, "emf_namespace")
    """CloudWatch namespace of relay's metrics; the alarms and the dashboard read them there."""
    log_retention_days: int = 30
    """Days CloudWatch Logs keeps relay's log lines (one of LOG_RETENTION_DAYS)."""
    dead_letter_alarm_threshold: int = 0
    """The dead-letter alarm fires above this many dead-letters in 5 minutes."""
    oldest_message_alarm_s: int = 300
    """The messages-stuck alarm's threshold (60 or more; a custom step waits 1800 s at most)."""
    throttled_share_alarm_percent: int = 20
    """The throttling alarm fires above this share of throttled attempts for 15 minutes."""
    dedupe_table: bool = False
    """A DynamoDB table every task shares as its delivered-memory (DESIGN §10)."""
    tracing: bool = False
    """The ADOT collector beside relay, exporting relay's spans to X-Ray (DESIGN §12)."""
    tracing_sample_ratio: float = 1.0
    """With tracing, the share of messages traced that carry no sampling decision (0 to 1)."""
    workflow_arns: tuple[str, ...] = ()
    """Workflows relay may answer; empty: every workflow of the account in the region."""
    sns_topic_arns: tuple[str, ...] = ()
    """SNS topics that may deliver to the queue; empty: none."""
    producer_account_ids: tuple[str, ...] = ()
    """Other accounts whose step processors may publish (sqs:SendMessage only); empty: none."""

    def __post_init__(self) -> None:
        if self.memory_mib not in FARGATE_SIZES.get(self.cpu, ()):
            raise ConfigError(
                f"Fargate offers no task of cpu {self.cpu} with memory {self.memory_mib} MiB"
            )
        if not 1 <= self.min_tasks <= self.max_tasks:
            raise ConfigError("min_tasks must be at least 1 and at most max_tasks")
        if self.backlog_per_task_target < 1 or self.max_receives < 1 or self.max_in_flight < 1:
            raise ConfigError("backlog_per_task_target, max_receives, max_in_flight: at least 1")
        if self.shutdown_grace_s < 0 or (
            stop_timeout_s(self.shutdown_grace_s) > FARGATE_MAX_STOP_TIMEOUT_S
        ):
            raise ConfigError(
                f"shutdown_grace_s {self.shutdown_grace_s:g}: the stopTimeout it needs "
                f"({stop_timeout_s(self.shutdown_grace_s)} s) is above Fargate's "
                f"{FARGATE_MAX_STOP_TIMEOUT_S} s"
            )
        budget = default_of(RunConfig, "retry_budget_s")
        if not (30 <= self.visibility_timeout_s <= 43_200 and self.visibility_timeout_s > budget):
            raise ConfigError("visibility_timeout_s must be 30 to 43200, above --retry-budget")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"log_level must be DEBUG, INFO, WARNING or ERROR: {self.log_level}")
        check_namespace(self.emf_namespace)
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ConfigError(f"log_retention_days must be one of {LOG_RETENTION_DAYS}")
        if self.max_rps < 0 or self.dead_letter_alarm_threshold < 0:
            raise ConfigError("max_rps and dead_letter_alarm_threshold: at least 0")
        if self.oldest_message_alarm_s < 60:
            raise ConfigError("oldest_message_alarm_s: at least 60")
        if not 1 <= self.throttled_share_alarm_percent <= 100:
            raise ConfigError("throttled_share_alarm_percent: 1 to 100")
        if not 0 <= self.tracing_sample_ratio <= 1:
            raise ConfigError("tracing_sample_ratio: 0 to 1")
        for name, pattern, values in (
            ("workflow_arns", _WORKFLOW, self.workflow_arns),
            ("sns_topic_arns", _SNS_TOPIC, self.sns_topic_arns),
            ("producer_account_ids", _ACCOUNT, self.producer_account_ids),
        ):
            bad = [value for value in values if not pattern.fullmatch(value)]
            if bad or isinstance(values, str):
                raise ConfigError(f"{name}: not well formed: {bad or values}")

    @property
    def stop_timeout_s(self) -> int:
        """The relay container's stopTimeout."""
        return stop_timeout_s(self.shutdown_grace_s)

    @property
    def max_receive_count(self) -> int:
        """The queue's redrive maxReceiveCount."""
        return max_receive_count(self.max_receives)
