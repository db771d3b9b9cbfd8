"""The EMF writer (DESIGN §6): deltas per interval, arrays of at most 100 values, gauges every
interval, the last interval flushed; every document checked by tests/emf_spec.py, a validator
written from the CloudWatch user guide's "Specification: Embedded metric format"
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
"""

import asyncio
import copy
import io
import json
from collections.abc import Callable
from typing import Any

import pytest

from relay.emf import (
    EMF_METRICS,
    NO_REASON,
    EmfWriter,
    Read,
    check_namespace,
    queue_name,
    report_emf,
    run_emf,
)
from relay.errors import ConfigError
from relay.observability import Metrics, Samples
from relay.outcomes import Outcome
from tests.emf_spec import (
    VALID_UNITS,
    InvalidEmf,
    check_against_table,
    parse_line,
    read_documents,
    validate,
)
from tests.support import eventually

QUEUE = "relay-orders"
GAUGES = {name for name, m in EMF_METRICS.items() if m.read is Read.GAUGE}
COUNTERS = {"CallbackAttempts", "Throttles", "Retries"}


class FakeClock:
    """Wall-clock seconds the test sets by hand."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def writer_for(metrics: Metrics, stream: io.StringIO | None = None) -> EmfWriter:
    """A writer for QUEUE on a fresh stream and a fixed clock."""
    return EmfWriter(metrics, queue_name=QUEUE, stream=stream or io.StringIO(), clock=FakeClock())


def checked(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The documents, each validated against the specification and relay's table."""
    for document in documents:
        validate(json.loads(json.dumps(document, allow_nan=False)))
        check_against_table(document, EMF_METRICS, namespace="relay", queue_name=QUEUE)
    return documents


def messages(documents: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    """`Messages` summed by (Outcome, Reason)."""
    sums: dict[tuple[str, str], int] = {}
    for doc in documents:
        if "Messages" in doc:
            key = (doc["Outcome"], doc["Reason"])
            sums[key] = sums.get(key, 0) + doc["Messages"]
    return sums


def values(documents: list[dict[str, Any]], name: str) -> list[float]:
    """Every value of one array metric, over all documents."""
    return [v for doc in documents for v in doc.get(name, [])]


def spec_example() -> dict[str, Any]:
    """The valid example document of the specification."""
    return {
        "_aws": {
            "Timestamp": 1574109732004,
            "CloudWatchMetrics": [
                {
                    "Namespace": "lambda-function-metrics",
                    "Dimensions": [["functionVersion"]],
                    "Metrics": [{"Name": "time", "Unit": "Milliseconds"}],
                }
            ],
        },
        "functionVersion": "$LATEST",
        "time": 100,
        "requestId": "989ffbf8-9ace-4817-a57c-e4dd734019ee",
    }


# --- the validator ---------------------------------------------------------------------------


def test_the_validator_accepts_the_specifications_example() -> None:
    """The specification's own example passes the validator."""
    validate(spec_example())


def _directive(doc: dict[str, Any]) -> dict[str, Any]:
    directive: dict[str, Any] = doc["_aws"]["CloudWatchMetrics"][0]
    return directive


def _many_metrics(doc: dict[str, Any]) -> None:
    _directive(doc)["Metrics"] = [{"Name": f"m{i}", "Unit": "Count"} for i in range(101)]
    doc.update({f"m{i}": 1 for i in range(101)})


def _many_dimensions(doc: dict[str, Any]) -> None:
    _directive(doc)["Dimensions"] = [[f"d{i}" for i in range(31)]]
    doc.update({f"d{i}": "x" for i in range(31)})


BROKEN: dict[str, Callable[[dict[str, Any]], None]] = {
    "no _aws": lambda d: d.pop("_aws"),
    "no Timestamp": lambda d: d["_aws"].pop("Timestamp"),
    "Timestamp in seconds as a string": lambda d: d["_aws"].update(Timestamp="1574109732"),
    "extra _aws member": lambda d: d["_aws"].update(LogGroupName="x"),
    "no Namespace": lambda d: _directive(d).pop("Namespace"),
    "101 metrics in one directive": _many_metrics,
    "31 dimensions in one set": _many_dimensions,
    "101 values in one array": lambda d: d.update(time=list(range(101))),
    "an empty array": lambda d: d.update(time=[]),
    "a unit CloudWatch does not know": lambda d: _directive(d)["Metrics"][0].update(Unit="ms"),
    "a metric missing at the top level": lambda d: d.pop("time"),
    "a dimension missing at the top level": lambda d: d.pop("functionVersion"),
    "a metric that is a string": lambda d: d.update(time="100"),
    "a metric that is a boolean": lambda d: d.update(time=True),
    "a dimension that is a number": lambda d: d.update(functionVersion=1),
    "an empty dimension value": lambda d: d.update(functionVersion=""),
    "a metric that is also a dimension": lambda d: _directive(d)["Dimensions"][0].append("time"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_the_validator_rejects_what_the_specification_forbids(breakage: str) -> None:
    """Each rule of the specification the validator checks can fail."""
    document = copy.deepcopy(spec_example())
    BROKEN[breakage](document)
    with pytest.raises(InvalidEmf):
        validate(document)


@pytest.mark.parametrize(
    "line",
    [
        '{"_aws": {}} trailing',
        "[1, 2]",
        '{"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}, "x": NaN}',
    ],
)
def test_a_line_must_be_one_json_object_of_finite_numbers(line: str) -> None:
    """A log line with data after the object, a non-object or a NaN is not an EMF document."""
    with pytest.raises(InvalidEmf):
        parse_line(line)


def test_relays_table_uses_only_valid_units_and_small_dimension_sets() -> None:
    """Every metric in EMF_METRICS has a CloudWatch unit and at most 30 dimensions."""
    for name, metric in EMF_METRICS.items():
        assert metric.unit in VALID_UNITS, name
        assert 1 <= len(metric.dimensions) <= 30, name
        assert metric.dimensions[0] == "QueueName", name
        assert metric.source.startswith("relay_"), name


# --- the writer ------------------------------------------------------------------------------


def test_two_flushes_report_increments_not_totals() -> None:
    """Counters are written as what they grew by since the previous flush."""
    metrics = Metrics()
    writer = writer_for(metrics)
    for _ in range(3):
        metrics.finished(Outcome.DELIVERED, None)
    metrics.attempts.labels(result="ok").inc(3)
    metrics.attempts.labels(result="ThrottlingException").inc(2)
    metrics.throttles.inc(2)
    metrics.retries.inc(2)
    first = checked(writer.documents())

    for _ in range(2):
        metrics.finished(Outcome.DELIVERED, None)
    metrics.finished(Outcome.DEAD_LETTERED, "not_found")
    metrics.attempts.labels(result="ok").inc(1)
    second = checked(writer.documents())

    assert messages(first) == {("delivered", NO_REASON): 3}
    assert messages(second) == {("delivered", NO_REASON): 2, ("dead_lettered", "not_found"): 1}
    first_queue, second_queue = first[-1], second[-1]
    assert {k: first_queue[k] for k in COUNTERS} == {
        "CallbackAttempts": 5,
        "Throttles": 2,
        "Retries": 2,
    }
    assert {k: second_queue[k] for k in COUNTERS} == {
        "CallbackAttempts": 1,
        "Throttles": 0,
        "Retries": 0,
    }


def test_one_messages_document_per_outcome_and_reason_with_none_for_no_reason() -> None:
    """Each outcome and reason seen gets its own document; no reason is written `none`."""
    metrics = Metrics()
    metrics.finished(Outcome.DELIVERED, None)
    metrics.finished(Outcome.RELEASED, None)
    metrics.finished(Outcome.DEAD_LETTERED, "validation")
    metrics.finished(Outcome.DEAD_LETTERED, "validation")
    metrics.finished(Outcome.CONFLICT, "conflict")

    documents = checked(writer_for(metrics).documents())

    by_key = [(d["Outcome"], d["Reason"], d["Messages"]) for d in documents if "Messages" in d]
    assert sorted(by_key) == [
        ("conflict", "conflict", 1),
        ("dead_lettered", "validation", 2),
        ("delivered", "none", 1),
        ("released", "none", 1),
    ]
    for doc in documents:
        if "Messages" in doc:
            assert set(_directive(doc)["Dimensions"][0]) == {"QueueName", "Outcome", "Reason"}
            assert [m["Name"] for m in _directive(doc)["Metrics"]] == ["Messages"]


def test_latency_arrays_are_split_at_100_values_and_none_is_lost() -> None:
    """250 callback latencies go out as 100, 100 and 50 values, in milliseconds."""
    metrics = Metrics()
    writer = writer_for(metrics)
    for i in range(250):
        metrics.callback_latency.labels(result="ok" if i % 2 else "error").observe(i / 1000)
    for i in range(30):
        metrics.end_to_end_latency.observe(i)

    documents = checked(writer.documents())

    arrays = [doc for doc in documents if "CallbackLatency" in doc]
    assert [len(doc["CallbackLatency"]) for doc in arrays] == [100, 100, 50]
    assert values(documents, "CallbackLatency") == [float(i) for i in range(250)]
    assert values(documents, "EndToEndLatency") == [i * 1000.0 for i in range(30)]
    assert [len(doc.get("EndToEndLatency", [])) for doc in arrays] == [30, 0, 0]
    # The gauges ride in the first document only, so their averages are not skewed.
    assert [bool(set(doc) >= GAUGES) for doc in arrays] == [True, False, False]


def test_an_idle_interval_writes_only_the_gauges() -> None:
    """With nothing new, one document carries the gauges and nothing else."""
    metrics = Metrics()
    metrics.in_flight.set(2)
    metrics.oldest_in_flight.set(12.5)
    metrics.send_rate.set(40)
    writer = writer_for(metrics)
    metrics.finished(Outcome.DELIVERED, None)
    metrics.attempts.labels(result="ok").inc()
    metrics.callback_latency.labels(result="ok").observe(0.01)
    checked(writer.documents())

    idle = checked(writer.documents())

    assert len(idle) == 1
    assert {m["Name"] for m in _directive(idle[0])["Metrics"]} == GAUGES
    assert {k: idle[0][k] for k in GAUGES} == {
        "InFlight": 2,
        "OpenCircuits": 0,
        "OldestInFlightAge": 12.5,
        "SendRate": 40,
        "ClockOffset": 0,
    }


def test_gauges_are_read_at_flush_time_and_the_clock_offset_with_them() -> None:
    """Gauges backed by functions, the clock offset among them, are read at each flush."""
    metrics = Metrics()
    in_flight = [3]
    metrics.in_flight.set_function(lambda: in_flight[0])
    writer = writer_for(metrics)
    first = checked(writer.documents())[-1]
    in_flight[0] = 7
    metrics.clock_offset.set(-1.25)

    second = checked(writer.documents())[-1]

    assert (first["InFlight"], first["ClockOffset"]) == (3, 0)
    assert (second["InFlight"], second["ClockOffset"]) == (7, -1.25)


def test_a_non_finite_gauge_is_written_as_zero() -> None:
    """An infinite or NaN gauge would make the line invalid JSON for CloudWatch; it is 0."""
    metrics = Metrics()
    metrics.send_rate.set(float("inf"))
    metrics.oldest_in_flight.set(float("nan"))

    queue = checked(writer_for(metrics).documents())[-1]

    assert (queue["SendRate"], queue["OldestInFlightAge"]) == (0, 0)


def test_each_document_is_one_write_of_one_line_then_a_flush() -> None:
    """So it cannot interleave with log lines: one write() of one line, then flush()."""

    class Recorder(io.StringIO):
        events: list[str]

        def write(self, text: str) -> int:
            self.events.append("write:" + text)
            return super().write(text)

        def flush(self) -> None:
            self.events.append("flush")

    stream = Recorder()
    stream.events = []
    metrics = Metrics()
    writer = writer_for(metrics, stream)
    metrics.finished(Outcome.DELIVERED, None)
    for i in range(150):
        metrics.callback_latency.labels(result="ok").observe(i / 1000)

    written = writer.flush()

    assert written == 3
    assert stream.events[1::2] == ["flush"] * written
    for event in stream.events[0::2]:
        line = event.removeprefix("write:")
        assert line.endswith("\n")
        assert line.count("\n") == 1
        validate(parse_line(line.rstrip("\n")))


def test_the_document_has_the_namespace_timestamp_and_queue_name() -> None:
    """Namespace from --emf-namespace, Timestamp in epoch milliseconds, QueueName the queue's."""
    metrics = Metrics()
    clock = FakeClock()
    writer = EmfWriter(metrics, queue_name=QUEUE, namespace="acme/relay", clock=clock)

    (document,) = writer.documents()

    assert _directive(document)["Namespace"] == "acme/relay"
    assert document["_aws"]["Timestamp"] == 1_700_000_000_000
    assert document["QueueName"] == QUEUE


def test_queue_name_is_the_last_segment_of_the_url() -> None:
    """The QueueName dimension is the queue's name, FIFO suffix included."""
    assert queue_name("https://sqs.eu-west-1.amazonaws.com/123456789012/orders") == "orders"
    assert queue_name("http://127.0.0.1:5000/123456789012/steps.fifo") == "steps.fifo"


@pytest.mark.parametrize("namespace", ["", "  ", "AWS/Relay", "relé", "re\tlay", "x" * 256])
def test_a_namespace_cloudwatch_refuses_is_a_config_error(namespace: str) -> None:
    """Blank, reserved (AWS/), non-ASCII, control characters or over 255 are refused up front."""
    with pytest.raises(ConfigError, match="--emf-namespace"):
        check_namespace(namespace)


# --- the latency values Metrics keeps ---------------------------------------------------------


def test_latency_values_are_kept_only_while_emf_drains_them() -> None:
    """Without an EMF writer the histograms keep no values (no memory growth); with one, all."""
    metrics = Metrics()
    metrics.callback_latency.labels(result="ok").observe(0.5)
    assert metrics.drain_samples() == {
        "relay_callback_latency_seconds": [],
        "relay_end_to_end_latency_seconds": [],
    }
    metrics.keep_samples()
    metrics.callback_latency.labels(result="ok").observe(0.25)
    metrics.callback_latency.labels(result="error").observe(0.75)
    metrics.end_to_end_latency.observe(2.0)

    assert metrics.drain_samples() == {
        "relay_callback_latency_seconds": [0.25, 0.75],
        "relay_end_to_end_latency_seconds": [2.0],
    }
    assert (
        metrics.registry.get_sample_value("relay_callback_latency_seconds_count", {"result": "ok"})
        == 2
    )


def test_past_the_cap_values_are_dropped_and_counted() -> None:
    """A buffer never holds more than its cap between two drains."""
    samples = Samples(cap=3)
    samples.keeping = True
    for i in range(5):
        samples.add(i)

    assert samples.drain() == [0, 1, 2]
    assert samples.dropped == 2
    samples.add(9)
    assert samples.drain() == [9]


# --- the loop --------------------------------------------------------------------------------


async def test_stopping_the_loop_flushes_the_last_interval() -> None:
    """What happened after the last periodic flush is written when the loop stops."""
    metrics = Metrics()
    stream = io.StringIO()
    writer = writer_for(metrics, stream)
    stop = asyncio.Event()
    task = asyncio.create_task(run_emf(writer, 3600.0, stop))
    metrics.finished(Outcome.DELIVERED, None)
    metrics.finished(Outcome.DEAD_LETTERED, "validation")

    stop.set()
    await asyncio.wait_for(task, 5)

    documents = read_documents(stream.getvalue())
    assert messages(documents) == {("delivered", "none"): 1, ("dead_lettered", "validation"): 1}


async def test_cancelling_the_loop_also_flushes_the_last_interval() -> None:
    """A cancelled EMF task still writes what it had not written yet."""
    metrics = Metrics()
    stream = io.StringIO()
    task = asyncio.create_task(run_emf(writer_for(metrics, stream), 3600.0, asyncio.Event()))
    await asyncio.sleep(0)  # let the loop start waiting
    metrics.finished(Outcome.RELEASED, None)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert messages(read_documents(stream.getvalue())) == {("released", "none"): 1}


async def test_the_loop_flushes_every_interval_and_the_sums_are_the_totals() -> None:
    """Several periodic flushes plus the last one add up to exactly what was counted."""
    metrics = Metrics()
    stream = io.StringIO()
    async with report_emf(
        metrics, queue_url=f"http://127.0.0.1/1/{QUEUE}", interval_s=0.02, stream=stream
    ) as writer:
        assert writer is not None
        for round_ in range(3):
            metrics.finished(Outcome.DELIVERED, None)
            metrics.callback_latency.labels(result="ok").observe(0.001 * (round_ + 1))
            flushed = stream.getvalue().count("\n")
            await eventually(
                lambda flushed=flushed: stream.getvalue().count("\n") > flushed,
                timeout_s=10,
                what="a periodic flush",
            )
        metrics.finished(Outcome.DUPLICATE, None)

    documents = read_documents(stream.getvalue())
    gauge_documents = [doc for doc in documents if "InFlight" in doc]
    assert len(gauge_documents) >= 4  # three periodic flushes and the last one, at least
    assert messages(documents) == {("delivered", "none"): 3, ("duplicate", "none"): 1}
    assert values(documents, "CallbackLatency") == [1.0, 2.0, 3.0]


async def test_an_interval_of_zero_writes_nothing() -> None:
    """--emf-interval 0 (the default) turns EMF off and keeps no latency values."""
    metrics = Metrics()
    stream = io.StringIO()
    async with report_emf(metrics, queue_url="q", interval_s=0, stream=stream) as writer:
        metrics.finished(Outcome.DELIVERED, None)
        metrics.callback_latency.labels(result="ok").observe(0.1)

    assert writer is None
    assert stream.getvalue() == ""
    assert metrics.drain_samples()["relay_callback_latency_seconds"] == []
