"""A validator for CloudWatch Embedded Metric Format documents, written from the specification.

Source: Amazon CloudWatch User Guide, "Specification: Embedded metric format"
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html),
with the units of the CloudWatch API Reference's MetricDatum and the dimension value rules of
its Dimension type. What each check enforces, in the specification's words:

- the LogEvent message is one JSON object with nothing before or after it;
- the root has `_aws`, an object with `CloudWatchMetrics` (an array of MetricDirective) and
  `Timestamp` (a number of milliseconds after the epoch); the specification's objects carry
  no other members (`StorageResolution` 1 or 60 is the one optional member it adds later);
- a MetricDirective has `Namespace` (a string), `Dimensions` (an array of DimensionSets) and
  `Metrics` (at most 100 MetricDefinitions);
- a DimensionSet is an array of at most 30 dimension keys (earlier revisions said 9; relay
  uses at most 3), each of which is a root member with a string value;
- a MetricDefinition has `Name` (a root member holding a number or an array of at most 100
  numbers) and optionally `Unit`, one of CloudWatch's units;
- a document is at most 256 KB (the CloudWatch Logs event limit the specification names);
- CloudWatch takes no NaN or infinity, and a dimension value is 1 to 1024 ASCII characters,
  not blank.
"""

import json
from collections.abc import Iterable
from typing import Any, Final

VALID_UNITS: Final = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)
MAX_METRICS_PER_DIRECTIVE: Final = 100
MAX_DIMENSIONS_PER_SET: Final = 30
MAX_VALUES_PER_ARRAY: Final = 100
MAX_DOCUMENT_BYTES: Final = 256 * 1024


class InvalidEmf(AssertionError):
    """A document the EMF specification does not allow."""


def parse_line(line: str) -> dict[str, Any]:
    """One log line as an EMF document: a JSON object alone on its line (NaN refused)."""

    def refuse(constant: str) -> None:
        raise InvalidEmf(f"{constant} is not a JSON number CloudWatch accepts")

    _require(len(line.encode()) <= MAX_DOCUMENT_BYTES, "document over 256 KB")
    _require(line == line.strip(), "data before or after the JSON object")
    try:
        document = json.loads(line, parse_constant=refuse)
    except ValueError as exc:
        raise InvalidEmf(f"not JSON: {exc}") from None
    _require(isinstance(document, dict), "the root is not a JSON object")
    return document  # type: ignore[no-any-return]


def validate(document: dict[str, Any]) -> None:
    """Raises `InvalidEmf` unless `document` is an EMF document CloudWatch extracts metrics from."""
    metadata: Any = document.get("_aws")
    _require(isinstance(metadata, dict), "_aws is missing or not an object")
    _only(metadata, {"CloudWatchMetrics", "Timestamp"}, "_aws")
    timestamp = metadata.get("Timestamp")
    _require(_is_int(timestamp) and timestamp >= 0, "_aws.Timestamp is not epoch milliseconds")
    directives = metadata.get("CloudWatchMetrics")
    _require(isinstance(directives, list) and directives, "CloudWatchMetrics is not an array")
    for directive in directives:
        _validate_directive(document, directive)


def _validate_directive(document: dict[str, Any], directive: Any) -> None:
    _require(isinstance(directive, dict), "a MetricDirective is not an object")
    _only(directive, {"Namespace", "Dimensions", "Metrics"}, "MetricDirective")
    namespace = directive.get("Namespace")
    _require(_is_name(namespace), f"Namespace {namespace!r} is not a string of 1-255 characters")
    dimension_sets = directive.get("Dimensions")
    _require(isinstance(dimension_sets, list) and dimension_sets, "Dimensions is not an array")
    for dimension_set in dimension_sets:
        _require(isinstance(dimension_set, list), "a DimensionSet is not an array")
        _require(
            len(dimension_set) <= MAX_DIMENSIONS_PER_SET,
            f"a DimensionSet has {len(dimension_set)} keys (at most 30)",
        )
        _require(len(set(dimension_set)) == len(dimension_set), "a DimensionSet repeats a key")
        for key in dimension_set:
            _require(_is_name(key), f"dimension key {key!r} is not a string of 1-255 characters")
            _require(key in document, f"dimension {key} is not a member of the root")
            _require(_is_dimension_value(document[key]), f"dimension {key} is not a valid value")
    metrics = directive.get("Metrics")
    _require(isinstance(metrics, list) and metrics, "Metrics is not a non-empty array")
    _require(
        len(metrics) <= MAX_METRICS_PER_DIRECTIVE,
        f"a directive names {len(metrics)} metrics (at most 100)",
    )
    names = [d.get("Name") if isinstance(d, dict) else None for d in metrics]
    _require(len(set(map(str, names))) == len(names), "a directive names a metric twice")
    for definition in metrics:
        _validate_definition(document, definition, _keys(dimension_sets))


def _validate_definition(document: dict[str, Any], definition: Any, dimensions: set[str]) -> None:
    _require(isinstance(definition, dict), "a MetricDefinition is not an object")
    _only(definition, {"Name", "Unit", "StorageResolution"}, "MetricDefinition")
    name = definition.get("Name")
    _require(_is_name(name), f"metric name {name!r} is not a string of 1-255 characters")
    _require(name not in dimensions, f"{name} is both a metric and a dimension")
    if "Unit" in definition:
        unit = definition["Unit"]
        _require(unit in VALID_UNITS, f"{name}: {unit!r} is not a CloudWatch unit")
    if "StorageResolution" in definition:
        _require(definition["StorageResolution"] in (1, 60), f"{name}: StorageResolution")
    _require(name in document, f"metric {name} is not a member of the root")
    value = document[name]
    if isinstance(value, list):
        _require(value, f"{name} is an empty array")
        _require(
            len(value) <= MAX_VALUES_PER_ARRAY,
            f"{name} has {len(value)} values (at most 100)",
        )
        _require(all(_is_number(v) for v in value), f"{name} holds something not a number")
    else:
        _require(_is_number(value), f"{name} is {value!r}, not a number or an array of numbers")


def _keys(dimension_sets: Iterable[list[str]]) -> set[str]:
    return {key for dimension_set in dimension_sets for key in dimension_set}


def _only(obj: dict[str, Any], allowed: set[str], what: str) -> None:
    extra = set(obj) - allowed
    _require(not extra, f"{what} has members the specification does not define: {sorted(extra)}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_name(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= 255


def _is_dimension_value(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 1 <= len(value) <= 1024
        and value.isascii()
        and bool(value.strip())
        and value.isprintable()
    )


def _require(condition: Any, message: str) -> None:
    if not condition:
        raise InvalidEmf(message)


def read_documents(text: str) -> list[dict[str, Any]]:
    """Every line of a captured stream, each parsed and validated as an EMF document."""
    documents = [parse_line(line) for line in text.splitlines()]
    for document in documents:
        validate(document)
    return documents


def check_against_table(
    document: dict[str, Any], table: dict[str, Any], *, namespace: str, queue_name: str
) -> None:
    """Raises `InvalidEmf` unless every metric is in relay's table with its unit and dimensions."""
    for directive in document["_aws"]["CloudWatchMetrics"]:
        _require(directive["Namespace"] == namespace, f"namespace {directive['Namespace']}")
        for definition in directive["Metrics"]:
            name = definition["Name"]
            _require(name in table, f"{name} is not in relay.emf.EMF_METRICS")
            _require(definition["Unit"] == table[name].unit, f"{name}: unit {definition['Unit']}")
            _require(
                directive["Dimensions"] == [list(table[name].dimensions)],
                f"{name}: dimensions {directive['Dimensions']}",
            )
    _require(document["QueueName"] == queue_name, f"QueueName {document['QueueName']}")
