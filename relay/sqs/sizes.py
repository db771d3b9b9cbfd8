"""SQS's sizes, and the batch planner: entries to SQS batch requests within both of SQS's
limits.

One pure function, shared by `relay send`, the worker's dead-letter copies and replay, so the
two limits (10 entries, 1 MiB of payload per request) are enforced in one place.
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Final, TypeVar

MAX_BATCH_ENTRIES: Final = 10
MAX_MESSAGE_BYTES: Final = 1_048_576
"""1 MiB: SQS's largest message (its largest `MaximumMessageSize`, and the default of a new
queue), and its limit on the sum of a batch request's payloads."""

T = TypeVar("T")


def plan_batches(
    items: Iterable[T],
    size_of: Callable[[T], int],
    *,
    max_entries: int = MAX_BATCH_ENTRIES,
    max_bytes: int = MAX_MESSAGE_BYTES,
) -> list[list[T]]:
    """Groups items, in order, into batches of at most `max_entries` and `max_bytes`.

    An item larger than `max_bytes` on its own goes alone, so SQS reports it rather than
    the planner hiding it.
    """
    batches: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    for item in items:
        size = size_of(item)
        if current and (len(current) >= max_entries or current_bytes + size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += size
    if current:
        batches.append(current)
    return batches


def payload_size(body: str, attributes: Mapping[str, Mapping[str, str]] | None = None) -> int:
    """Bytes SQS counts for a message: UTF-8 body plus attribute names, types and values."""
    size = len(body.encode("utf-8"))
    for name, attribute in (attributes or {}).items():
        size += len(name.encode("utf-8"))
        size += len(attribute.get("DataType", "").encode("utf-8"))
        size += len(attribute.get("StringValue", "").encode("utf-8"))
    return size
