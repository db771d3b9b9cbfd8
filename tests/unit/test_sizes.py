"""The batch planner: SQS's two limits per request (10 entries, 1 MiB) enforced in one place."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from relay.sqs.sizes import MAX_BATCH_ENTRIES, MAX_MESSAGE_BYTES, payload_size, plan_batches

MiB = 1024 * 1024


def sizes_of(batches: list[list[int]], sizes: list[int]) -> list[list[int]]:
    """The sizes of planned item indices, batch by batch."""
    return [[sizes[i] for i in batch] for batch in batches]


def plan(sizes: list[int], **limits: int) -> list[list[int]]:
    """Plans item indices whose sizes are `sizes`."""
    return plan_batches(range(len(sizes)), lambda i: sizes[i], **limits)


def test_the_limits_are_those_of_sqs() -> None:
    """The defaults are SQS's: 10 entries and 1 MiB (1,048,576 bytes) per request."""
    assert MAX_BATCH_ENTRIES == 10
    assert MiB == MAX_MESSAGE_BYTES == 1_048_576


def test_nothing_to_send_plans_no_batch() -> None:
    """No items, no requests."""
    assert plan([]) == []


def test_small_items_are_split_by_ten_in_order() -> None:
    """25 small items make requests of 10, 10 and 5, in their original order."""
    assert plan([100] * 25) == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


def test_items_are_split_by_bytes() -> None:
    """Three 400 KB items cannot share a 1 MiB request: two go together, the third alone."""
    assert plan([400_000] * 3) == [[0, 1], [2]]


def test_a_request_may_hold_exactly_one_mebibyte() -> None:
    """The byte limit is inclusive: two halves of 1 MiB share a request, one byte more does not."""
    assert plan([MiB // 2, MiB // 2]) == [[0, 1]]
    assert plan([MiB // 2, MiB // 2 + 1]) == [[0], [1]]
    assert plan([MiB]) == [[0]]


def test_an_oversize_item_goes_alone_between_its_neighbours() -> None:
    """An item over 1 MiB is planned alone, in its place, so SQS reports it; the rest still go."""
    assert plan([10, MiB + 1, 10, 10]) == [[0], [1], [2, 3]]
    assert plan([MiB + 1, MiB + 1]) == [[0], [1]]


def test_multibyte_characters_count_in_bytes() -> None:
    """Sizes are UTF-8 bytes, not characters: 300,000 'é' are 600,000 bytes, too many for two."""
    bodies = ["é" * 300_000, "é" * 300_000, "x" * 300_000]
    assert [payload_size(body) for body in bodies] == [600_000, 600_000, 300_000]
    assert plan_batches(bodies, payload_size) == [[bodies[0]], [bodies[1], bodies[2]]]
    assert payload_size("€") == 3
    assert payload_size("😀") == 4


def test_payload_size_counts_attribute_names_types_and_values() -> None:
    """An attribute costs its name, its data type and its value, all in UTF-8 bytes."""
    attributes = {
        "relay-reason": {"DataType": "String", "StringValue": "validation"},
        "relay-error-message": {"DataType": "String", "StringValue": "bad é"},
    }
    expected = len("body") + (12 + 6 + 10) + (19 + 6 + 6)
    assert payload_size("body", attributes) == expected
    assert payload_size("body", {}) == payload_size("body", None) == payload_size("body") == 4


def test_custom_limits_are_honoured() -> None:
    """Smaller limits, as a caller may pass them, are applied the same way."""
    assert plan([1] * 5, max_entries=2) == [[0, 1], [2, 3], [4]]
    assert plan([3, 3, 3, 7, 1], max_bytes=7) == [[0, 1], [2], [3], [4]]


def test_items_are_passed_through_unchanged() -> None:
    """The planner groups the caller's own objects; it neither copies nor reorders them."""
    items = [object() for _ in range(12)]
    flat = [item for batch in plan_batches(items, lambda _: 1) for item in batch]
    assert all(ours is theirs for ours, theirs in zip(flat, items, strict=True))


@settings(max_examples=200)
@given(
    sizes=st.lists(st.integers(0, 150), max_size=60),
    max_entries=st.integers(1, 12),
    max_bytes=st.integers(1, 120),
)
def test_every_batch_is_within_both_limits_and_the_order_is_kept(
    sizes: list[int], max_entries: int, max_bytes: int
) -> None:
    """Each batch is within both limits unless it is one oversize item; concatenated, the input."""
    batches = plan(sizes, max_entries=max_entries, max_bytes=max_bytes)
    assert [i for batch in batches for i in batch] == list(range(len(sizes)))
    for batch in sizes_of(batches, sizes):
        assert batch
        assert len(batch) <= max_entries
        assert sum(batch) <= max_bytes or (len(batch) == 1 and batch[0] > max_bytes)
    # Greedy: a batch is cut only where the next item would break a limit.
    for batch, following in itertools.pairwise(batches):
        grown = [sizes[i] for i in batch] + [sizes[following[0]]]
        assert len(grown) > max_entries or sum(grown) > max_bytes


@settings(max_examples=50)
@given(
    bodies=st.lists(
        st.text(st.characters(codec="utf-8"), max_size=5).map(lambda s: s * 40_000), max_size=30
    )
)
def test_real_bodies_are_planned_within_sqs_limits(bodies: list[str]) -> None:
    """Bodies of mixed scripts are planned in order within 10 entries and 1 MiB of UTF-8."""
    batches = plan_batches(bodies, payload_size)
    assert [body for batch in batches for body in batch] == bodies
    for batch in batches:
        total = sum(len(body.encode("utf-8")) for body in batch)
        assert len(batch) <= MAX_BATCH_ENTRIES
        assert total <= MAX_MESSAGE_BYTES or len(batch) == 1
