"""`relay dlq stats`, `relay dlq export` and `relay replay`, in process, on moto and the emulator.

The DLQ contents are built directly with SendMessageBatch and `relay-*` attributes (and once by
the worker itself), so every count is known. Each test ends by accounting for every message.
"""

import asyncio
import itertools
import json
import os
import re
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from relay.cli import main, replay
from relay.dead_letter import iso_utc
from relay.message import StepResult
from relay.sqs.sizes import plan_batches
from tests.conftest import Emulator, Queues, create_queue_pair
from tests.integration.worker_support import fast_config, register, run_to_empty
from tests.support import (
    SQSClient,
    delivered_keys,
    drain,
    make_steps,
    queue_depth,
    send_bodies,
    workflow_id,
)

ALL_VISIBLE_NONE_HELD = {"in_flight": 0, "delayed": 0}
FAST = ("--receive-wait", "0")
"""moto answers an empty short poll exactly; real SQS needs the default long poll."""


@pytest.fixture(autouse=True)
def no_relay_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's RELAY_* and COPILOT_* variables must not reach the commands."""
    for name in list(os.environ):
        if name.startswith(("RELAY_", "COPILOT_")):
            monkeypatch.delenv(name)


@dataclass(frozen=True)
class Run:
    """How one CLI invocation ended."""

    code: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as the one JSON object `--json` prints."""
        return json.loads(self.out)


CHECKS_EXECUTIONS = ({"replay"}, {"dlq", "stats"})
"""The commands that ask Transfer Family which copies' executions still wait, by default."""


async def relay(capsys: pytest.CaptureFixture[str], *args: str, executions: bool = False) -> Run:
    """Runs `relay ARGS` in a worker thread (the command runs its own event loop).

    `replay` and `dlq stats` get `--no-executions` unless `executions`: the tests here are about
    other behaviours and have no Transfer Family to ask (test_replay_executions.py has them ask
    the emulator).
    """
    if not executions and any(command <= set(args[:2]) for command in CHECKS_EXECUTIONS):
        args = (*args, "--no-executions")

    def call() -> int:
        try:
            main(list(args))
        except SystemExit as exc:
            return exc.code if isinstance(exc.code, int) else 1
        raise AssertionError("relay.cli.main returned instead of exiting")

    capsys.readouterr()  # what ran before (the worker's log lines) is not this command's output
    code = await asyncio.to_thread(call)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    return Run(code, captured.out, captured.err)


def dead(
    body: str,
    *,
    reason: str | None = None,
    code: str = "",
    source: str | None = None,
    age_s: float = 0.0,
    extra: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A DLQ entry as the worker writes it (or, without a reason, as SQS's redrive leaves it)."""
    attributes = dict(extra or {})
    if reason is not None:
        at = datetime.now(UTC) - timedelta(seconds=age_s)
        attributes |= {
            "relay-reason": reason,
            "relay-error-code": code,
            "relay-error-message": f"{code}: details",
            "relay-attempts": "1",
            "relay-source-message-id": str(uuid.uuid4()),
            "relay-dead-lettered-at": iso_utc(at),
        }
        if source is not None:
            attributes["relay-source-queue"] = source
    entry: dict[str, Any] = {"MessageBody": body}
    if attributes:
        entry["MessageAttributes"] = {
            k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
        }
    return entry


async def put_dlq(sqs: SQSClient, queue_url: str, entries: Sequence[dict[str, Any]]) -> None:
    """Sends DLQ entries in batches within SQS's limits."""
    for batch in plan_batches(entries, lambda e: len(e["MessageBody"].encode()) + 2_000):
        response = await sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), **e} for i, e in enumerate(batch)]
        )
        assert not response.get("Failed"), response.get("Failed")


@dataclass(frozen=True)
class Mix:
    """A DLQ of 11: 4 not_found (workflow A, 2 days old), 3 retries_exhausted (B, 10 minutes),
    2 validation, 2 unannotated (C, with an attribute of their own)."""

    a: list[StepResult]
    b: list[StepResult]
    c: list[StepResult]
    invalid: list[str]

    @property
    def not_found(self) -> list[str]:
        """Bodies dead-lettered as not_found."""
        return [s.to_body() for s in self.a]

    @property
    def exhausted(self) -> list[str]:
        """Bodies dead-lettered as retries_exhausted."""
        return [s.to_body() for s in self.b]

    @property
    def unannotated(self) -> list[str]:
        """Bodies SQS's own redrive moved."""
        return [s.to_body() for s in self.c]

    @property
    def bodies(self) -> Counter[str]:
        """Every body the DLQ holds."""
        return Counter(self.not_found + self.exhausted + self.invalid + self.unannotated)


@pytest.fixture
async def mix(sqs: SQSClient, queues: Queues) -> Mix:
    """The DLQ of `queues` filled with the mix."""
    result = Mix(
        a=make_steps(4, workflow="w-aaaaaaaaaaaaaaaaa", seed=1),
        b=make_steps(3, workflow="w-bbbbbbbbbbbbbbbbb", seed=2),
        c=make_steps(2, workflow="w-ccccccccccccccccc", seed=3),
        invalid=["{not json", '{"WorkflowId": "w-bad"}'],
    )
    day = 86_400
    entries = [
        *(
            dead(b, reason="not_found", code="ResourceNotFoundException", source=queues.url,
                 age_s=2 * day)
            for b in result.not_found
        ),
        *(
            dead(b, reason="retries_exhausted", code="ThrottlingException", source=queues.url,
                 age_s=600)
            for b in result.exhausted
        ),
        *(
            dead(b, reason="validation", code="ValidationError", source=queues.url)
            for b in result.invalid
        ),
        *(dead(b, extra={"trace-id": "t-1"}) for b in result.unannotated),
    ]  # fmt: skip
    await put_dlq(sqs, queues.dlq_url, entries)
    return result


async def assert_all_visible(sqs: SQSClient, queue_url: str, count: int) -> None:
    """The queue holds `count` messages, every one visible now (none held, none delayed)."""
    assert await queue_depth(sqs, queue_url) == {"visible": count, **ALL_VISIBLE_NONE_HELD}


async def account(
    sqs: SQSClient, *, dlq: tuple[str, Counter[str]], **queues: tuple[str, Counter[str]]
) -> None:
    """Drains the DLQ and the other queues; each holds exactly the bodies expected."""
    for name, (url, expected) in {"dlq": dlq, **queues}.items():
        found = Counter(m.body for m in await drain(sqs, url))
        assert found == expected, f"{name} holds other messages than expected"


# --- dlq stats -----------------------------------------------------------------------------


async def test_stats_counts_exactly_and_changes_nothing(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dlq stats` counts by reason, error code and workflow (JSON, or tables with --top), and
    every message is visible again right after."""
    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--json", *FAST)
    assert run.code == 0, run.err
    stats = run.json()
    assert stats["messages"] == 11
    assert stats["complete"] is True
    assert stats["stopped_by"] == "empty"
    assert stats["by_reason"] == {
        "not_found": 4,
        "retries_exhausted": 3,
        "validation": 2,
        "unannotated": 2,
    }
    assert sorted(
        (e["reason"], e["error_code"], e["messages"]) for e in stats["by_error_code"]
    ) == [
        ("not_found", "ResourceNotFoundException", 4),
        ("retries_exhausted", "ThrottlingException", 3),
        ("unannotated", None, 2),
        ("validation", "ValidationError", 2),
    ]
    assert stats["top_workflows"] == [
        {"workflow_id": "w-aaaaaaaaaaaaaaaaa", "messages": 4},
        {"workflow_id": "w-bbbbbbbbbbbbbbbbb", "messages": 3},
        {"workflow_id": "w-ccccccccccccccccc", "messages": 2},
    ]
    assert stats["without_workflow"] == 2
    oldest = datetime.fromisoformat(stats["oldest_dead_lettered_at"])
    newest = datetime.fromisoformat(stats["newest_dead_lettered_at"])
    assert timedelta(days=1, hours=23) < datetime.now(UTC) - oldest < timedelta(days=2, hours=1)
    assert datetime.now(UTC) - newest < timedelta(minutes=5)
    await assert_all_visible(sqs, queues.dlq_url, 11)

    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--top", "1", *FAST)
    assert run.code == 0, run.err
    for word in ("not_found", "retries_exhausted", "validation", "unannotated", "11"):
        assert word in run.out
    assert "w-aaaaaaaaaaaaaaaaa" in run.out
    assert "w-ccccccccccccccccc" not in run.out, "--top 1 lists one workflow"
    await assert_all_visible(sqs, queues.dlq_url, 11)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


async def test_stats_with_max_messages_reads_only_that_many_and_gives_them_back(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-messages bounds the reading; what was read is visible again at once."""
    run = await relay(
        capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--max-messages", "5", "--json", *FAST
    )
    assert run.code == 0, run.err
    assert run.json()["messages"] == 5
    assert run.json()["stopped_by"] == "max messages"
    await assert_all_visible(sqs, queues.dlq_url, 11)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


# --- dry run and filters -------------------------------------------------------------------


async def test_dry_run_reports_per_reason_and_workflow_and_changes_nothing(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """--dry-run selects as a replay would, sends nothing, and leaves every message visible."""
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", "--json", *FAST)
    assert run.code == 0, run.err
    summary = run.json()
    assert summary["dry_run"] is True
    assert (summary["read"], summary["selected"], summary["replayed"]) == (11, 11, 0)
    assert summary["selected_by_reason"] == {
        "not_found": 4,
        "retries_exhausted": 3,
        "validation": 2,
        "unannotated": 2,
    }
    assert summary["selected_by_workflow"] == {
        "w-aaaaaaaaaaaaaaaaa": 4,
        "w-bbbbbbbbbbbbbbbbb": 3,
        "w-ccccccccccccccccc": 2,
        "-": 2,
    }
    await assert_all_visible(sqs, queues.dlq_url, 11)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies), source=(queues.url, Counter()))


FILTER_CASES: list[tuple[list[str], dict[str, int]]] = [
    (["--older-than", "1d"], {"not_found": 4}),
    # Unannotated messages are aged by their SentTimestamp: they were sent just now.
    (["--newer-than", "1h"], {"retries_exhausted": 3, "validation": 2, "unannotated": 2}),
    (["--older-than", "5m", "--newer-than", "1h"], {"retries_exhausted": 3}),
    (["--error-code", "ThrottlingException"], {"retries_exhausted": 3}),
    (["--workflow-id", "w-ccccccccccccccccc"], {"unannotated": 2}),
    (["--reason", "validation", "--reason", "unannotated"], {"validation": 2, "unannotated": 2}),
    (["--reason", "not_found", "--workflow-id", "w-bbbbbbbbbbbbbbbbb"], {}),
]


async def test_filters_select_exactly_their_messages(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each filter selects by its attribute; repeated values widen, different filters narrow."""
    # Dry runs change nothing, so every case reads the same DLQ.
    for filters, expected in FILTER_CASES:
        run = await relay(
            capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", "--json", *filters, *FAST
        )
        assert run.code == 0, run.err
        summary = run.json()
        assert summary["selected_by_reason"] == expected, filters
        assert summary["skipped_by_filter"] == 11 - sum(expected.values()), filters
        await assert_all_visible(sqs, queues.dlq_url, 11)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


# --- replay to a queue ---------------------------------------------------------------------


async def test_replay_by_reason_moves_only_those_byte_for_byte(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """--reason not_found puts exactly those bodies back on the source queue without relay-*
    attributes; the other messages are visible in the DLQ right away."""
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--reason", "not_found", "--json", *FAST
    )
    assert run.code == 0, run.err
    summary = run.json()
    assert (summary["replayed"], summary["failed"], summary["skipped_by_filter"]) == (4, 0, 7)
    assert summary["ok"] is True
    await assert_all_visible(sqs, queues.dlq_url, 7)
    requeued = await drain(sqs, queues.url)
    assert Counter(m.body for m in requeued) == Counter(mix.not_found)
    assert all(m.attributes == {} for m in requeued)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies - Counter(mix.not_found)))


async def test_unannotated_messages_need_a_queue_url(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --queue-url an unannotated message fails with a clear reason and stays; with it,
    it goes there with its own attributes."""
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--reason", "unannotated", *FAST
    )
    assert run.code == 1
    assert "no_destination" in run.out
    assert "--queue-url" in run.out
    await assert_all_visible(sqs, queues.dlq_url, 11)

    other = await create_queue_pair(sqs)
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--reason", "unannotated",
        "--queue-url", other.url, "--json", *FAST,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.json()["replayed"] == 2
    moved = await drain(sqs, other.url)
    assert Counter(m.body for m in moved) == Counter(mix.unannotated)
    assert all(m.attributes == {"trace-id": "t-1"} for m in moved)
    await account(
        sqs,
        dlq=(queues.dlq_url, mix.bodies - Counter(mix.unannotated)),
        source=(queues.url, Counter()),
    )


async def test_max_messages_caps_the_replay(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-messages 2 replays two selected messages; the rest stay, visible at once."""
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--reason", "not_found",
        "--max-messages", "2", "--json", *FAST,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.json()["replayed"] == 2
    await assert_all_visible(sqs, queues.dlq_url, 9)
    requeued = Counter(m.body for m in await drain(sqs, queues.url))
    assert requeued.total() == 2
    assert requeued <= Counter(mix.not_found)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies - requeued))


async def test_max_messages_counts_selected_messages_not_messages_read(
    sqs: SQSClient, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    """--max-messages 2 replays two selected messages even when many unselected ones are read
    first: it bounds the replay, not the reading."""
    steps = make_steps(12, seed=21)
    await put_dlq(
        sqs,
        queues.dlq_url,
        [dead(s.to_body(), reason="validation", source=queues.url) for s in steps[:10]],
    )
    await put_dlq(
        sqs,
        queues.dlq_url,
        [dead(s.to_body(), reason="not_found", source=queues.url) for s in steps[10:]],
    )
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--reason", "not_found",
        "--max-messages", "2", "--json", *FAST,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["replayed"], run.json()["skipped_by_filter"]) == (2, 10)
    await assert_all_visible(sqs, queues.dlq_url, 10)
    requeued = Counter(m.body for m in await drain(sqs, queues.url))
    assert requeued == Counter(s.to_body() for s in steps[10:])
    await account(sqs, dlq=(queues.dlq_url, Counter(s.to_body() for s in steps[:10])))


async def test_fifo_destination_gets_a_group_and_deduplication_id(
    sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replaying onto a FIFO queue keeps the DLQ message's group and gives a dedup id."""
    fifo = await create_queue_pair(sqs, fifo=True)
    steps = make_steps(3, seed=9)
    entries = [
        {
            **dead(s.to_body(), reason="not_found", code="ResourceNotFoundException",
                   source=fifo.url),
            "MessageGroupId": s.execution_id,
            "MessageDeduplicationId": f"dl-{i}",
        }
        for i, s in enumerate(steps)
    ]  # fmt: skip
    await put_dlq(sqs, fifo.dlq_url, entries)
    run = await relay(capsys, "replay", "--dlq-url", fifo.dlq_url, "--json", *FAST)
    assert run.code == 0, run.err
    assert run.json()["replayed"] == 3
    requeued = await drain(sqs, fifo.url)
    assert sorted(m.body for m in requeued) == sorted(s.to_body() for s in steps)
    by_body = {s.to_body(): s.execution_id for s in steps}
    assert all(m.system["MessageGroupId"] == by_body[m.body] for m in requeued)
    assert all(m.system["MessageDeduplicationId"].startswith("replay-") for m in requeued)
    await account(sqs, dlq=(fifo.dlq_url, Counter()))


# --- replay to Transfer Family -------------------------------------------------------------


async def test_to_transfer_delivers_and_keeps_permanent_failures(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """--to transfer delivers the registered steps (deleting them) and leaves unknown executions
    and invalid bodies in the DLQ, reported by reason."""
    register(emulator.state, [*mix.a[:3], *mix.c])
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--to", "transfer", "--json",
                      *FAST)  # fmt: skip
    assert run.code == 1
    summary = run.json()
    assert summary["replayed"] == 5
    assert summary["failed_by_reason"] == {"not_found": 4, "validation": 2}
    assert "ResourceNotFoundException" in summary["failure_details"]["not_found"]
    assert sorted(delivered_keys(emulator.state.calls)) == sorted(
        (s.workflow_id, s.execution_id, s.token, s.status.value) for s in [*mix.a[:3], *mix.c]
    )
    await assert_all_visible(sqs, queues.dlq_url, 6)
    kept = Counter([mix.not_found[3], *mix.exhausted, *mix.invalid])
    await account(sqs, dlq=(queues.dlq_url, kept), source=(queues.url, Counter()))


async def test_to_transfer_stops_calling_a_workflow_that_is_denied(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """AccessDenied for a workflow fails its messages as access_denied after one call, not one
    call per message; they stay in the DLQ."""
    from relay.emulator import Faults

    register(emulator.state, mix.b)
    emulator.state.set_faults(Faults(deny_workflows=frozenset({"w-bbbbbbbbbbbbbbbbb"})))
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--to", "transfer",
        "--reason", "retries_exhausted", "--concurrency", "1", "--json", *FAST,
    )  # fmt: skip
    assert run.code == 1
    assert run.json()["failed_by_reason"] == {"access_denied": 3}
    assert [c.error_code for c in emulator.state.calls] == ["AccessDeniedException"]
    await assert_all_visible(sqs, queues.dlq_url, 11)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


# --- export and import ---------------------------------------------------------------------


async def test_export_then_import_round_trips_bodies_byte_for_byte(
    sqs: SQSClient, queues: Queues, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Export leaves the DLQ as it was; importing the file puts every body, non-ASCII and a
    500 KB one included, back on the source queue unchanged."""
    steps = make_steps(3, seed=11)
    bodies = [
        steps[0].to_body(),
        json.dumps({**steps[1].to_request(), "note": "héllo ✓ 𝄞 \u2028 \"q\" \\ \r\n\t"},
                   ensure_ascii=False),
        json.dumps({**steps[2].to_request(), "padding": "ü" * 250_000}, ensure_ascii=False),
    ]  # fmt: skip
    assert len(bodies[2].encode()) > 500_000
    await put_dlq(
        sqs,
        queues.dlq_url,
        [dead(b, reason="not_found", code="ResourceNotFoundException", source=queues.url)
         for b in bodies],
    )  # fmt: skip
    out = tmp_path / "dlq.jsonl"
    run = await relay(
        capsys, "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out), "--json", *FAST
    )
    assert run.code == 0, run.err
    assert run.json()["written"] == 3
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert sorted(r["body"] for r in records) == sorted(bodies)
    assert all(r["attributes"]["relay-reason"] == "not_found" for r in records)
    assert all(isinstance(r["sent_timestamp"], int) and r["message_id"] for r in records)
    await assert_all_visible(sqs, queues.dlq_url, 3)

    run = await relay(capsys, "replay", "--from-file", str(out), "--json")
    assert run.code == 0, run.err
    assert run.json()["replayed"] == 3
    requeued = await drain(sqs, queues.url)
    assert sorted(m.body for m in requeued) == sorted(bodies)
    assert all(m.attributes == {} for m in requeued)
    await account(sqs, dlq=(queues.dlq_url, Counter(bodies)))


async def test_import_to_transfer_with_filters(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`replay --from-file --to transfer` applies the filters to the file's records."""
    out = tmp_path / "dlq.jsonl"
    run = await relay(capsys, "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out),
                      *FAST)  # fmt: skip
    assert run.code == 0, run.err
    assert "exported 11 message(s)" in run.out
    register(emulator.state, mix.a)
    run = await relay(
        capsys, "replay", "--from-file", str(out), "--to", "transfer",
        "--workflow-id", "w-aaaaaaaaaaaaaaaaa", "--json",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["replayed"], run.json()["skipped_by_filter"]) == (4, 7)
    assert len(delivered_keys(emulator.state.calls)) == 4
    await account(sqs, dlq=(queues.dlq_url, mix.bodies), source=(queues.url, Counter()))


# --- the worker's own dead letters, end to end --------------------------------------------


async def test_late_registered_executions_are_delivered_after_a_replay(
    sqs: SQSClient, queues: Queues, emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Steps the worker dead-lettered as not_found are delivered once registered and replayed
    onto the source queue (relay-source-queue from the worker's own copies)."""
    steps = make_steps(6, workflow=workflow_id(), seed=12)
    await send_bodies(sqs, queues.url, [s.to_body() for s in steps])
    # Short polls: a long poll cut short at the stop could still take a replayed copy and hide
    # it for the queue's visibility timeout.
    await run_to_empty(fast_config(queues.url, wait_time_s=0))
    await assert_all_visible(sqs, queues.dlq_url, 6)

    register(emulator.state, steps)
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--reason", "not_found",
                      "--json", *FAST)  # fmt: skip
    assert run.code == 0, run.err
    assert run.json()["replayed"] == 6
    await run_to_empty(fast_config(queues.url))
    assert sorted(delivered_keys(emulator.state.calls)) == sorted(
        (s.workflow_id, s.execution_id, s.token, s.status.value) for s in steps
    )
    await account(sqs, dlq=(queues.dlq_url, Counter()), source=(queues.url, Counter()))


# --- usage ---------------------------------------------------------------------------------


USAGE_CASES: list[tuple[list[str], str]] = [
    (["replay"], "exactly one of --dlq-url and --from-file"),
    (["replay", "--dlq-url", "{dlq}", "--from-file", "x.jsonl"], "exactly one"),
    (["replay", "--dlq-url", "{dlq}", "--to", "transfer", "--queue-url", "{dlq}"], "--to"),
    (["replay", "--dlq-url", "{dlq}", "--reason", "nonsense"], "unknown --reason"),
    (["replay", "--dlq-url", "{dlq}", "--older-than", "soon"], "not a duration"),
    (["replay", "--dlq-url", "{dlq}", "--older-than", "2h", "--newer-than", "1h"], "older"),
    (["replay", "--dlq-url", "{dlq}", "--rate", "-1"], "--rate"),
    (["replay", "--dlq-url", "{missing}"], "NonExistentQueue"),
    (["replay", "--dlq-url", "{dlq}", "--queue-url", "{missing}"], "NonExistentQueue"),
    (["replay", "--from-file", "{bad_file}"], ":2: not valid JSON"),
    (["dlq", "stats"], "--dlq-url"),
    (["dlq", "stats", "--dlq-url", "{missing}"], "NonExistentQueue"),
    (["dlq", "export", "--dlq-url", "{dlq}", "--out", "/nonexistent/dir/f.jsonl"], "cannot"),
]


async def test_bad_usage_exits_2_with_one_line(
    sqs: SQSClient, queues: Queues, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad usage or configuration: exit 2, one line on stderr naming the problem, DLQ untouched."""
    await put_dlq(sqs, queues.dlq_url, [dead("{}", reason="validation", source=queues.url)])
    bad_file = tmp_path / "bad.jsonl"
    bad_file.write_text('{"body": "{}"}\n{nope\n')
    missing = queues.dlq_url.rsplit("/", 1)[0] + "/no-such-queue"
    values = {"dlq": queues.dlq_url, "missing": missing, "bad_file": str(bad_file)}
    for args, says in USAGE_CASES:
        run = await relay(capsys, *(a.format(**values) for a in args))
        assert (run.code, run.out) == (2, ""), args
        assert len(run.err.strip().splitlines()) == 1, args
        assert says in run.err, args
    await assert_all_visible(sqs, queues.dlq_url, 1)
    await account(sqs, dlq=(queues.dlq_url, Counter(["{}"])))


def test_every_replay_option_is_in_the_readme_table() -> None:
    """The README's replay options table names exactly the options `relay replay` has."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Replaying failed callbacks", 1)[1].split("### Options", 1)[1]
    lines = itertools.dropwhile(lambda line: not line.startswith("|"), section.splitlines())
    table = list(itertools.takewhile(lambda line: line.startswith("|"), lines))[2:]
    documented = {flag for row in table for flag in re.findall(r"--[a-z-]+", row.split("|")[1])}
    options = {
        name
        for p in replay.params
        for name in (*p.opts, *p.secondary_opts)
        if name.startswith("--")
    }
    assert documented == options
