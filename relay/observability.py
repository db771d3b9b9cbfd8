"""Metric definitions and JSON logging (DESIGN §6).

Each worker owns a `Metrics` on its own registry, so several workers (tests, the demo) can
live in one process without sharing counters. The two latency histograms also keep each value
they observe while the EMF writer (relay/emf.py) wants them: CloudWatch computes percentiles
from the values themselves, which a histogram's buckets no longer hold.
"""

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, Final, TextIO

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from structlog.tracebacks import ExceptionDictTransformer

from relay.message import short_token
from relay.outcomes import Outcome

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_END_TO_END_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600)

SAMPLE_CAP: Final = 100_000
"""Values one latency series keeps between two EMF flushes (about 1,600 callbacks a second at
a 60 s interval); past it values are counted as dropped, so memory stays bounded."""


class Samples:
    """The values a histogram observed since the last drain, kept only while someone drains."""

    def __init__(self, cap: int = SAMPLE_CAP) -> None:
        self.cap = cap
        self.keeping = False
        self.dropped = 0
        self._values: list[float] = []

    def add(self, value: float) -> None:
        """Keeps one observation (when keeping and below the cap)."""
        if not self.keeping:
            return
        if len(self._values) >= self.cap:
            self.dropped += 1
            return
        self._values.append(value)

    def drain(self) -> list[float]:
        """The values kept since the last drain, oldest first; the buffer starts over."""
        values, self._values = self._values, []
        return values


class SampledHistogram(Histogram):
    """A Prometheus histogram whose every observation also goes to `samples`.

    Its labelled children share the parent's `samples`, so the worker's existing calls
    (`callback_latency.labels(result=...).observe(s)`) feed the EMF writer unchanged.
    """

    samples: Samples | None = None

    def labels(self, *labelvalues: Any, **labelkwargs: Any) -> "SampledHistogram":
        child = super().labels(*labelvalues, **labelkwargs)
        child.samples = self.samples
        return child

    def observe(self, amount: float, exemplar: dict[str, str] | None = None) -> None:
        super().observe(amount, exemplar)
        if self.samples is not None:
            self.samples.add(amount)


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
        self.callback_latency = SampledHistogram(
            "relay_callback_latency_seconds",
            "Duration of one SendWorkflowStepState call.",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.end_to_end_latency = SampledHistogram(
            "relay_end_to_end_latency_seconds",
            "From the message's SentTimestamp to its delivered callback.",
            buckets=_END_TO_END_BUCKETS,
            registry=r,
        )
        # By Prometheus name, which is how relay.emf's table names its sources.
        self.samples: dict[str, Samples] = {}
        for histogram in (self.callback_latency, self.end_to_end_latency):
            (family,) = histogram.describe()
            histogram.samples = self.samples[family.name] = Samples()
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
            "relay_dead_letter_errors",
            "Dead-letter copies SQS did not accept, by SQS's error code.",
            ["reason"],
            registry=r,
        )
        self.heartbeats = Counter(
            "relay_heartbeat_extensions",
            "Visibility extensions of messages still in flight.",
            registry=r,
        )
        self.identity_errors = Counter(
            "relay_identity_errors",
            "Callbacks refused for relay's own credentials, signature or clock, by code.",
            ["code"],
            registry=r,
        )
        self.dedupe_table_errors = Counter(
            "relay_dedupe_table_errors",
            "Delivered-memory table calls that failed (the local memory stood in), by code.",
            ["code"],
            registry=r,
        )
        self.clock_offset = Gauge(
            "relay_clock_offset_seconds",
            "Offset relay signs with: the service's clock minus this host's (from its Date).",
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

    def keep_samples(self, keeping: bool = True) -> None:
        """Starts (or stops) keeping each latency value for `drain_samples`."""
        for samples in self.samples.values():
            samples.keeping = keeping

    def drain_samples(self) -> dict[str, list[float]]:
        """Each latency value observed since the last drain, in seconds, by histogram name."""
        drained: dict[str, list[float]] = {}
        for name, samples in self.samples.items():
            drained[name] = samples.drain()
            if samples.dropped:
                get_logger().warning(
                    "latency values over the cap were not kept for EMF",
                    metric=name,
                    dropped=samples.dropped,
                    cap=samples.cap,
                )
                samples.dropped = 0
        return drained

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


class EveryInterval:
    """Says yes at most once per `interval_s`: for log lines that would otherwise repeat per
    message (an outage is logged once a minute and counted every time)."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last = -math.inf

    def due(self) -> bool:
        """True when the interval has passed since the last True."""
        now = self._clock()
        if now - self._last < self.interval_s:
            return False
        self._last = now
        return True


_SECRET: ContextVar[str | None] = ContextVar("relay_secret_token", default=None)
"""The whole callback token of the message this task is working on, to keep out of its logs."""

HIDDEN_MIN_CHARS: Final = 8
"""Shorter tokens are not searched for in log lines: replacing every `a` would garble them."""


@contextlib.contextmanager
def hiding_in_logs() -> Iterator[Callable[[str], object]]:
    """While open, the token given to the yielded function is replaced by its short form in
    every log line this task writes (an exception's message or traceback included)."""
    reset = _SECRET.set(None)
    try:
        yield _SECRET.set
    finally:
        _SECRET.reset(reset)


def _hide_secret(logger: Any, method: str, rendered: Any) -> Any:
    """The last processor: the rendered line with the task's whole token shortened."""
    token = _SECRET.get()
    if token and len(token) >= HIDDEN_MIN_CHARS and isinstance(rendered, str):
        return rendered.replace(token, short_token(token))
    return rendered


def configure_logging(
    fmt: str = "json",
    level: str = "INFO",
    stream: TextIO | None = None,
    *,
    trace_fields: Callable[[Any, str, Any], Any] | None = None,
) -> None:
    """One JSON object per line (or readable text) on stdout, with bound context (and, with
    tracing on, `trace_fields` adding the current span's `trace_id` and `span_id`).

    An unexpected error's traceback never shows local variables: a frame's locals hold whole
    callback tokens; the token of the message being worked on is shortened wherever else it
    appears, an exception's message included. In JSON the traceback is structured
    (`exception`: each exception's type, message and frames, each frame's file, line and
    function); in text it is Python's plain traceback.
    """
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if trace_fields is not None:
        processors.append(trace_fields)
    if fmt == "json":
        processors += [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
    else:
        # The default formatter (rich's or better-exceptions') prints every frame's locals.
        processors.append(
            structlog.dev.ConsoleRenderer(
                colors=False, exception_formatter=structlog.dev.plain_traceback
            )
        )
    processors.append(_hide_secret)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str = "relay") -> Any:
    """The structlog logger every module uses."""
    return structlog.get_logger(name)
