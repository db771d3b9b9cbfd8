"""CloudWatch Embedded Metric Format (DESIGN §6): relay's metrics as CloudWatch reads them.

`EMF_METRICS` is the one table of what relay emits: the EMF writer renders it, and the
deploy template's alarms and dashboard are checked against it (tests/deploy).

Every `--emf-interval` seconds `EmfWriter.flush()` reads the worker's `Metrics` (the same
Prometheus registry `/metrics` serves) and writes, one JSON line each on stdout:

- one `Messages` document per outcome and reason that finished in the interval (the counter's
  growth, not its total, so CloudWatch's Sum over any period is what happened in it);
- one queue document with the gauges (always, so alarms have data while nothing moves), the
  counters when any moved, and the first 100 latency values of each latency metric; then as
  many documents as it takes to carry the remaining latency values, 100 a document.

Why not the `aws-embedded-metrics` package (3.5, read on purpose before deciding):

- it is built around one `MetricsLogger` per invocation (`@metric_scope`): values are put,
  then flushed once. relay measures a long-running service over an interval and needs deltas
  of counters it already keeps for Prometheus; the package has no notion of either, so the
  aggregation below would be needed anyway, and the package would only serialise;
- its output depends on process-wide state read at import: `AWS_EMF_ENVIRONMENT` unset, it
  probes the EC2 metadata endpoint over HTTP and, on Fargate, falls back to a TCP agent sink
  (127.0.0.1:25888) that does not exist there; the stdout sink writes to `sys.stdout` only,
  so tests cannot give it a stream, and several workers in one process cannot differ;
- it adds `LogGroup`, `ServiceName` and `ServiceType` dimensions unless every call replaces
  them, which would change the metric identities the template's alarms name.

The format is small and fully specified (the CloudWatch user guide's "Specification: Embedded
metric format"). The document writer itself (`_document`) is a few dozen lines; the rest of
this module is what the package would not do either: the table of metrics and their
dimensions, deltas over an interval, and splitting latency arrays at 100 values. It is checked
in tests/unit/test_emf.py by a validator written from that specification.
"""

import asyncio
import contextlib
import json
import math
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, TextIO

from relay.config import check_namespace
from relay.lifecycle import wait_any
from relay.observability import Metrics, get_logger
from relay.sqs.queues import queue_name

log = get_logger("relay.emf")

QUEUE_DIMENSIONS: Final = ("QueueName",)
MESSAGE_DIMENSIONS: Final = ("QueueName", "Outcome", "Reason")

NO_REASON: Final = "none"
"""The `Reason` dimension of an outcome that has no reason."""

DEFAULT_NAMESPACE: Final = "relay"

MAX_VALUES: Final = 100
"""Values in one metric's array, per the EMF specification."""


class Read(StrEnum):
    """How a metric's value for an interval is read from the worker's `Metrics`."""

    DELTA = "delta"
    """A counter: what it grew by since the last flush; written only when it grew."""
    GAUGE = "gauge"
    """A gauge read at flush time; written every interval."""
    VALUES = "values"
    """Every value a latency histogram observed since the last flush, as arrays."""


@dataclass(frozen=True, slots=True)
class EmfMetric:
    """One metric relay writes: its CloudWatch unit and the one dimension set it carries.

    `source` is the Prometheus sample it is read from (a histogram's name for `Read.VALUES`),
    `scale` converts the Prometheus unit to `unit`. A dimension other than `QueueName` is the
    source's label of the same name in lower case (`Outcome` from `outcome`).
    """

    unit: str
    dimensions: tuple[str, ...] = QUEUE_DIMENSIONS
    help: str = ""
    read: Read = Read.GAUGE
    source: str = ""
    scale: float = 1.0


EMF_METRICS: Final[dict[str, EmfMetric]] = {
    "Messages": EmfMetric(
        "Count",
        MESSAGE_DIMENSIONS,
        "Messages finished, by outcome and reason (`none`).",
        read=Read.DELTA,
        source="relay_messages_total",
    ),
    "CallbackLatency": EmfMetric(
        "Milliseconds",
        help="One SendWorkflowStepState call.",
        read=Read.VALUES,
        source="relay_callback_latency_seconds",
        scale=1000.0,
    ),
    "EndToEndLatency": EmfMetric(
        "Milliseconds",
        help="From the message's SentTimestamp to its delivered callback.",
        read=Read.VALUES,
        source="relay_end_to_end_latency_seconds",
        scale=1000.0,
    ),
    "CallbackAttempts": EmfMetric(
        "Count",
        help="SendWorkflowStepState calls made.",
        read=Read.DELTA,
        source="relay_callback_attempts_total",
    ),
    "Throttles": EmfMetric(
        "Count",
        help="ThrottlingException answers.",
        read=Read.DELTA,
        source="relay_throttles_total",
    ),
    "Retries": EmfMetric(
        "Count",
        help="Callback attempts after the first, in process.",
        read=Read.DELTA,
        source="relay_callback_retries_total",
    ),
    "InFlight": EmfMetric(
        "Count",
        help="Messages being processed at the end of the interval.",
        source="relay_in_flight",
    ),
    "OpenCircuits": EmfMetric(
        "Count",
        help="Workflows whose circuit is open (an IAM mistake).",
        source="relay_open_circuits",
    ),
    "OldestInFlightAge": EmfMetric(
        "Seconds",
        help="Age of the oldest message in flight.",
        source="relay_oldest_in_flight_age_seconds",
    ),
    "SendRate": EmfMetric(
        "Count/Second",
        help="The callback rate limit in force (0 = none).",
        source="relay_send_rate",
    ),
    "ClockOffset": EmfMetric(
        "Seconds",
        help="Offset relay signs with, learnt from the service's Date header.",
        source="relay_clock_offset_seconds",
    ),
}

Number = int | float
Document = dict[str, Any]


class EmfWriter:
    """Writes one worker's metrics as EMF documents, as deltas over each interval.

    The first flush reports everything counted since the `Metrics` was created, each later
    one what was counted since the previous flush, so the sums over a run are the totals.
    """

    def __init__(
        self,
        metrics: Metrics,
        *,
        queue_name: str,
        namespace: str = DEFAULT_NAMESPACE,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metrics = metrics
        self.queue_name = queue_name
        self.namespace = check_namespace(namespace)
        self._stream = stream
        self._clock = clock
        # The counter totals at the previous flush, by metric and dimension values.
        self._last: dict[tuple[str, tuple[str, ...]], float] = {}
        metrics.keep_samples()

    def flush(self) -> int:
        """Writes this interval's documents, one line and one `write()` each; returns how many."""
        documents = self.documents()
        # sys.stdout looked up per flush: the log lines and these must share one stream object.
        stream = self._stream or sys.stdout
        for document in documents:
            stream.write(json.dumps(document, separators=(",", ":"), allow_nan=False) + "\n")
            stream.flush()
        return len(documents)

    def documents(self) -> list[Document]:
        """The documents for the interval that ends now; the next interval starts now."""
        timestamp_ms = int(self._clock() * 1000)
        samples = _samples_by_name(self.metrics)
        values = self.metrics.drain_samples()
        documents: list[Document] = []
        queue: dict[str, Any] = {}
        counters: dict[str, Number] = {}
        arrays: dict[str, list[float]] = {}
        for name, metric in EMF_METRICS.items():
            if metric.read is Read.GAUGE:
                gauge = sum(s.value for s in samples.get(metric.source, ()))
                queue[name] = _finite(gauge * metric.scale)
            elif metric.read is Read.VALUES:
                arrays[name] = [round(v * metric.scale, 3) for v in values.get(metric.source, [])]
            elif metric.dimensions == QUEUE_DIMENSIONS:
                counters[name] = self._deltas(name, metric, samples).get((), 0)
            else:
                for key, delta in sorted(self._deltas(name, metric, samples).items()):
                    if delta > 0:
                        documents.append(
                            self._document(timestamp_ms, metric.dimensions, key, {name: delta})
                        )
        if any(counters.values()):
            queue.update(counters)
        # The gauges, the counters and the first 100 values of each array go together; the
        # rest of the arrays follow, 100 values a document, until every value is written.
        parts = max((math.ceil(len(a) / MAX_VALUES) for a in arrays.values()), default=0)
        for index in range(max(parts, 1)):
            start = index * MAX_VALUES
            part = {name: a[start : start + MAX_VALUES] for name, a in arrays.items() if a[start:]}
            merged = {**queue, **part} if index == 0 else part
            body = {name: merged[name] for name in EMF_METRICS if name in merged}
            documents.append(self._document(timestamp_ms, QUEUE_DIMENSIONS, (), body))
        return documents

    def _deltas(
        self, name: str, metric: EmfMetric, samples: dict[str, list[Any]]
    ) -> dict[tuple[str, ...], Number]:
        """A counter's growth since the last flush, by its dimension values after QueueName."""
        labels = [d.lower() for d in metric.dimensions if d != "QueueName"]
        totals: dict[tuple[str, ...], float] = {}
        for sample in samples.get(metric.source, ()):
            # An empty label (an outcome without a reason) is `none`: CloudWatch needs a value.
            key = tuple(sample.labels.get(label) or NO_REASON for label in labels)
            totals[key] = totals.get(key, 0.0) + sample.value
        deltas: dict[tuple[str, ...], Number] = {}
        for key, total in totals.items():
            delta = total - self._last.get((name, key), 0.0)
            self._last[(name, key)] = total
            deltas[key] = int(delta) if float(delta).is_integer() else delta
        return deltas

    def _document(
        self,
        timestamp_ms: int,
        dimensions: tuple[str, ...],
        values_after_queue: tuple[str, ...],
        body: dict[str, Any],
    ) -> Document:
        """One EMF document: one directive, one dimension set, and `body`'s metrics."""
        directive = {
            "Namespace": self.namespace,
            "Dimensions": [list(dimensions)],
            "Metrics": [{"Name": name, "Unit": EMF_METRICS[name].unit} for name in body],
        }
        dimension_values = (self.queue_name, *values_after_queue)
        return {
            "_aws": {"Timestamp": timestamp_ms, "CloudWatchMetrics": [directive]},
            **dict(zip(dimensions, dimension_values, strict=True)),
            **body,
        }


def _samples_by_name(metrics: Metrics) -> dict[str, list[Any]]:
    """Every sample of the registry by sample name (gauges' functions are called now)."""
    found: dict[str, list[Any]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            found.setdefault(sample.name, []).append(sample)
    return found


def _finite(value: float) -> Number:
    """A gauge as JSON can carry it: CloudWatch takes no NaN or infinity."""
    if not math.isfinite(value):
        return 0
    return int(value) if value.is_integer() else round(value, 6)


async def run_emf(writer: EmfWriter, interval_s: float, stop: asyncio.Event) -> None:
    """Flushes every `interval_s` until `stop` is set or the task is cancelled, then once more
    so the last interval is not lost."""
    loop = asyncio.get_running_loop()
    next_at = loop.time() + interval_s
    try:
        while not stop.is_set():
            await wait_any(stop, timeout_s=max(0.0, next_at - loop.time()))
            if stop.is_set():
                break
            # On the schedule, not after it: a slow flush does not push later ones back.
            next_at = max(next_at + interval_s, loop.time())
            _flush_logged(writer)
    finally:
        _flush_logged(writer)


def _flush_logged(writer: EmfWriter) -> None:
    """A flush that never ends the loop: a failed write is logged and the next one tried."""
    try:
        writer.flush()
    except Exception as exc:  # the outermost code of the EMF task: log, keep the worker alive
        log.error("EMF flush failed", error=f"{type(exc).__name__}: {exc}"[:300])


@contextlib.asynccontextmanager
async def report_emf(
    metrics: Metrics,
    *,
    queue_url: str,
    interval_s: float,
    namespace: str = DEFAULT_NAMESPACE,
    stream: TextIO | None = None,
) -> AsyncIterator[EmfWriter | None]:
    """Writes EMF every `interval_s` while the block runs and the last interval on the way
    out; `interval_s` 0 turns it off (yields None)."""
    if interval_s <= 0:
        yield None
        return
    writer = EmfWriter(
        metrics, queue_name=queue_name(queue_url), namespace=namespace, stream=stream
    )
    stop = asyncio.Event()
    task = asyncio.create_task(run_emf(writer, interval_s, stop), name="emf")
    try:
        yield writer
    finally:
        stop.set()
        await task
