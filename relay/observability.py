"""Metric definitions and JSON logging (DESIGN §6).

Each worker owns a `Metrics` on its own registry, so several workers (tests, the demo) can
live in one process without sharing counters.
"""

import logging
import sys
from typing import Any, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from relay.outcomes import Outcome

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)


class Metrics:
    """Every `relay_*` metric the worker exports."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "relay_messages",
            "Messages finished, by outcome and reason.",
            ["outcome", "reason"],
            registry=r,
        )
        self.callback_latency = Histogram(
            "relay_callback_latency_seconds",
            "Duration of one SendWorkflowStepState call.",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = Histogram(
            "relay_end_to_end_latency_seconds",
            "From the message's SentTimestamp to its delivered callback.",
            buckets=_END_TO_END_BUCKETS,
            registry=r,
        )
        self.attempts = Counter(
            "relay_callback_attempts",
            "Callback attempts by result (ok or the error code).",
            ["result"],
            registry=r,
        )
        self.retries = Counter(
            "relay_callback_retries", "Callback attempts after the first.", registry=r
        )
        self.throttles = Counter("relay_throttles", "ThrottlingException answers.", registry=r)
        self.in_flight = Gauge("relay_in_flight", "Messages being processed now.", registry=r)
        self.oldest_in_flight = Gauge(
            "relay_oldest_in_flight_age_seconds",
            "Age (since SentTimestamp) of the oldest message in flight.",
            registry=r,
        )
        self.open_circuits = Gauge(
            "relay_open_circuits", "Workflows whose circuit is open.", registry=r
        )
        self.send_rate = Gauge(
            "relay_send_rate", "Current callback rate limit per second (0 = none).", registry=r
        )
        self.polls = Counter(
            "relay_polls", "ReceiveMessage calls, by result.", ["result"], registry=r
        )
        self.received = Counter("relay_received_messages", "Messages received.", registry=r)
        self.receive_errors = Counter(
            "relay_receive_errors", "ReceiveMessage calls that failed.", registry=r
        )
        self.delete_errors = Counter(
            "relay_delete_errors", "Deletes SQS did not perform.", registry=r
        )
        self.visibility_errors = Counter(
            "relay_visibility_errors", "Visibility changes SQS did not perform.", registry=r
        )
        self.dead_letter_errors = Counter(
            "relay_dead_letter_errors", "Dead-letter copies SQS did not accept.", registry=r
        )
        self.heartbeats = Counter(
            "relay_heartbeat_extensions",
            "Visibility extensions of messages still in flight.",
            registry=r,
        )

    def finished(self, outcome: Outcome, reason: str | None) -> None:
        """Counts one finished message."""
        self.messages.labels(outcome=outcome.value, reason=reason or "").inc()

    @staticmethod
    def total(metric: Counter) -> float:
        """A counter's total over all its labels."""
        return sum(
            sample.value
            for family in metric.collect()
            for sample in family.samples
            if sample.name.endswith("_total")
        )

    def outcome_counts(self) -> dict[tuple[str, str], int]:
        """The outcome counter as a plain dict, for tests and summaries."""
        counts: dict[tuple[str, str], int] = {}
        for metric in self.messages.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    key = (sample.labels["outcome"], sample.labels["reason"])
                    counts[key] = int(sample.value)
        return counts

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)


def configure_logging(fmt: str = "json", level: str = "INFO", stream: TextIO | None = None) -> None:
    """One JSON object per line (or readable text) on stdout, with bound context."""
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "relay") -> Any:
    """The structlog logger every module uses."""
    return structlog.get_logger(name)
