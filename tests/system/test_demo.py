"""`relay demo` as a process: the whole local pipeline runs, and every message is accounted for."""

import os
import re
import signal
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_ACCOUNTING = re.compile(
    r"accounting: sent (\d+) = delivered (\d+) \+ dead-lettered (\d+) \+ still queued (\d+)  ok"
)
_AFTER_REPLAY = re.compile(r"after the replay, " + _ACCOUNTING.pattern)
_ROW = r"^[│|]\s*{}\s*[│|]\s*(\d+)\s*[│|]"
_STATES_TOTAL = re.compile(
    r"^[│|]\s*total\s*[│|]\s*(\d+)\s*[│|]\s*(\d+)\s*[│|]\s*(\d+)\s*[│|]", re.M
)
# A row of rich's table; its rules are box-drawing characters, or ASCII on a plain console.
_TABLE_ROW = re.compile(
    r"^[│|]\s*(delivered|dead_lettered)\s*[│|]\s*(\S+)\s*[│|]\s*(\d+)\s*[│|]$", re.MULTILINE
)


def test_demo_accounts_for_every_message_then_replays_what_can_still_help() -> None:
    """100 messages (with seed 7, some of each outcome in the table): exit 0, an outcome table, a
    balanced accounting line; then the bulk replay: `dlq stats` shows waiting and finished
    copies, the replay answers the waiting ones and skips the finished, and the accounting after
    it still balances, with those delivered."""
    result = subprocess.run(
        [sys.executable, "-m", "relay", "demo", "--messages", "100", "--seed", "7"],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr

    rows = {(outcome, reason): int(n) for outcome, reason, n in _TABLE_ROW.findall(output)}
    assert rows.get(("delivered", "-"), 0) > 0, output
    assert rows.get(("dead_lettered", "validation"), 0) > 0, output
    assert rows.get(("dead_lettered", "not_found"), 0) > 0, output

    accounting = _ACCOUNTING.search(output)
    assert accounting is not None, output
    sent, delivered, dead_lettered, still_queued = map(int, accounting.groups())
    assert sent == 100
    assert sent == delivered + dead_lettered + still_queued
    assert delivered == rows[("delivered", "-")]

    assert re.search(
        r"relay replay --dlq-url http://127\.0\.0\.1:\d+/\S+ --reason not_found", output
    )
    act = output.split("bulk replay", 1)[1]
    assert "Which copies can still help" in act
    states = _STATES_TOTAL.search(act)
    assert states is not None, act
    waiting, finished, _ = map(int, states.groups())
    assert waiting > 0, act
    assert finished > 0, act
    replayed = int(re.findall(_ROW.format("replayed"), act, re.M)[0])
    skipped = int(re.findall(_ROW.format("skipped: execution_finished"), act, re.M)[0])
    assert 0 < replayed <= waiting, act
    assert 0 < skipped <= finished, act
    after = _AFTER_REPLAY.search(act)
    assert after is not None, act
    sent_after, delivered_after, dead_after, queued_after = map(int, after.groups())
    assert sent_after == sent == delivered_after + dead_after + queued_after
    assert delivered_after == delivered + replayed


def test_demo_first_ctrl_c_stops_producing_and_still_accounts_for_every_message() -> None:
    """SIGINT mid-run: production stops, the worker drains, the summary is printed and balances,
    exit 130."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "relay", "demo", "--messages", "3000", "--seed", "7"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        seen: list[str] = []
        # Plain progress lines come every two seconds once the producer has started.
        for line in process.stdout:
            seen.append(line)
            if re.search(r"sent \d+/3000", line):
                break
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    output = "".join(seen) + rest
    assert process.returncode == 130, output

    accounting = _ACCOUNTING.search(output)
    assert accounting is not None, output
    sent, delivered, dead_lettered, still_queued = map(int, accounting.groups())
    assert 0 < sent < 3000, output
    assert sent == delivered + dead_lettered + still_queued
