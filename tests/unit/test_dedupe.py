"""The pure parts of the shared delivered-memory: its item key, its lease, its waits."""

import re

from relay.dedupe import CHECK_KEY, HeldElsewhere, lease_for, table_key

STEP = ("w-abcdefghijklmnopq", "12345678-1234-1234-1234-123456789abc", "tok_1")


def test_the_item_key_never_changes_between_versions() -> None:
    """Tasks of two versions during a rolling deploy share the table: the key format is fixed."""
    assert table_key(STEP) == "d02db87ab2ab51bca9c2776c207bafa5"


def test_the_item_key_depends_on_every_id_and_hides_them() -> None:
    """Changing any one id changes the key; the key is 32 hex digits and contains none of them."""
    keys = {
        table_key(STEP),
        table_key(("w-abcdefghijklmnopr", STEP[1], STEP[2])),
        table_key((STEP[0], "12345678-1234-1234-1234-123456789abd", STEP[2])),
        table_key((STEP[0], STEP[1], "tok_2")),
    }
    assert len(keys) == 4
    for key in keys:
        assert re.fullmatch(r"[0-9a-f]{32}", key)
        assert not any(part in key for part in STEP)
    assert CHECK_KEY not in keys


def test_the_item_key_does_not_run_ids_together() -> None:
    """Ids are joined with a separator they cannot contain: shifting a character between two
    ids gives another key."""
    assert table_key(("ab", "c", "d")) != table_key(("a", "bc", "d"))


def test_a_lease_outlasts_the_send_it_covers() -> None:
    """The lease covers the retry budget plus a last attempt's whole timeout, with a margin."""
    assert lease_for(20.0, 10.0) > 30.0
    assert lease_for(20.0, 10.0) - 30.0 <= 10.0


def test_a_held_step_says_how_long_to_wait() -> None:
    """The wait is the time left on the other lease, never negative."""
    assert HeldElsewhere(until=1000.0).wait_s(now=990.5) == 9.5
    assert HeldElsewhere(until=1000.0).wait_s(now=1001.0) == 0.0
