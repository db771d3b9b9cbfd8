"""Which DLQ copies can still help (DESIGN §11), end to end on moto and the emulator: `relay
replay` skips the copies whose execution has finished, `relay dlq stats` shows the copies by
execution state, `relay dlq export` and `relay dlq purge` select by it. Each test accounts for
every message, and counts the Transfer Family calls it cost."""

import json
import os
import stat
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.emulator import Faults
from relay.emulator.protocol import StepCall
from relay.message import Status, StepResult
from tests.conftest import Emulator, Queues
from tests.integration.test_replay import (
    FAST,
    Run,
    account,
    assert_all_visible,
    dead,
    put_dlq,
    relay,
)
from tests.support import SQSClient, delivered_keys, drain

SEND = "SendWorkflowStepState"


def steps_of(workflow: str, count: int, start: int = 0) -> list[StepResult]:
    """`count` steps of a workflow, each its own execution (ids from `start`)."""
    return [
        StepResult(workflow, str(uuid.UUID(int=start + i + 1)), f"tok_{start + i}", Status.SUCCESS)
        for i in range(count)
    ]


def calls(emulator: Emulator) -> Counter[str]:
    """The calls the emulator answered, by operation."""
    return Counter(c.operation for c in emulator.state.calls)


@dataclass(frozen=True)
class Mix:
    """A DLQ of 11 across three workflows and no workflow: A has 5 copies (3 waiting, one of an
    execution answered meanwhile, one timed out), B 2 (1 waiting, 1 never started), C 1 (timed
    out), and 3 that are not step results. A is listed, B and C described."""

    waiting: list[StepResult]
    finished: list[StepResult]
    invalid: list[str]

    @property
    def bodies(self) -> Counter[str]:
        """Every body the DLQ holds."""
        return Counter([*(s.to_body() for s in [*self.waiting, *self.finished]), *self.invalid])


A, B, C = "w-aaaaaaaaaaaaaaaaa", "w-bbbbbbbbbbbbbbbbb", "w-ccccccccccccccccc"


@pytest.fixture
async def mix(sqs: SQSClient, queues: Queues, emulator: Emulator) -> Mix:
    """The DLQ of `queues` filled with the mix, its executions started in the emulator."""
    a, b, c = steps_of(A, 5), steps_of(B, 2, start=10), steps_of(C, 1, start=20)
    state = emulator.state
    state.register_many([s.step_key for s in [*a[:4], b[0]]])
    state.register_many([a[4].step_key], started_s_ago=1800)  # its step has timed out
    state.register_many([c[0].step_key], started_s_ago=3600)
    # Another copy of a[3] was delivered meanwhile: its execution completed.
    workflow_id, execution_id, token = a[3].step_key
    assert state.decide(StepCall(workflow_id=workflow_id, execution_id=execution_id,
                                 token=token, status="SUCCESS")) is None  # fmt: skip
    result = Mix(
        waiting=[*a[:3], b[0]],
        finished=[a[3], a[4], b[1], c[0]],
        invalid=["{not json", '{"WorkflowId": "w-bad"}', "[]"],
    )
    entries = [
        *(
            dead(s.to_body(), reason="not_found", code="ResourceNotFoundException",
                 source=queues.url, age_s=60 * (i + 1))
            for i, s in enumerate([*result.waiting, *result.finished])
        ),
        *(dead(b, reason="validation", code="ValidationError", source=queues.url)
          for b in result.invalid),
    ]  # fmt: skip
    await put_dlq(sqs, queues.dlq_url, entries)
    return result


async def checked(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """`relay ARGS`, asking Transfer Family (the emulator) which executions still wait."""
    return await relay(capsys, *args, executions=True)


async def test_replay_to_the_queue_skips_copies_whose_execution_has_finished(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """The waiting copies and those that are not step results (unknown) go back to the source
    queue; the finished ones stay in the DLQ, counted as skipped execution_finished; reading A
    cost one listing, B and C a describe per execution."""
    run = await checked(capsys, "replay", "--dlq-url", queues.dlq_url, "--json", *FAST)
    assert run.code == 0, run.err
    summary = run.json()
    assert (summary["replayed"], summary["skipped_execution_finished"]) == (7, 4)
    assert summary["selected_by_execution_state"] == {"waiting": 4, "unknown": 3}
    assert summary["replayed_by_execution_state"] == {"waiting": 4, "unknown": 3}
    assert summary["unchecked"] == 3
    assert summary["executions"]["unknown_why"] == {"not_a_step_result": 3}
    assert summary["executions"]["reads"] == {"ListExecutions": 1, "DescribeExecution": 3}
    assert calls(emulator) == Counter({"ListExecutions": 1, "DescribeExecution": 3})
    requeued = Counter(m.body for m in await drain(sqs, queues.url))
    assert requeued == Counter([*(s.to_body() for s in mix.waiting), *mix.invalid])
    await assert_all_visible(sqs, queues.dlq_url, 4)
    await account(sqs, dlq=(queues.dlq_url, Counter(s.to_body() for s in mix.finished)))


async def test_replay_to_transfer_calls_only_for_the_waiting_copies(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """--to transfer makes a callback for each waiting copy and none for a finished one; the
    finished copies stay in the DLQ, the invalid ones fail as validation and stay too."""
    run = await checked(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--to", "transfer", "--json", *FAST
    )
    assert run.code == 1, "the validation copies fail"
    summary = run.json()
    assert (summary["replayed"], summary["skipped_execution_finished"]) == (4, 4)
    assert summary["failed_by_reason"] == {"validation": 3}
    assert calls(emulator) == Counter({"ListExecutions": 1, "DescribeExecution": 3, SEND: 4})
    assert sorted(delivered_keys(emulator.state.calls)) == sorted(
        (*s.step_key, "SUCCESS") for s in mix.waiting
    )
    await account(
        sqs,
        dlq=(queues.dlq_url, mix.bodies - Counter(s.to_body() for s in mix.waiting)),
        source=(queues.url, Counter()),
    )


async def test_dry_run_shows_the_split_and_include_finished_replays_them_all(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A dry run's table says how many would be skipped as finished and how many replayed
    unchecked, changing nothing; --include-finished replays the finished ones too."""
    run = await checked(capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", *FAST)
    assert run.code == 0, run.err
    assert "skipped: execution_finished" in run.out
    assert "waiting 4, unknown 3" in run.out
    assert "unchecked" in run.out
    assert "not a step result 3" in run.out
    assert "Transfer Family reads: 3 DescribeExecution, 1 ListExecutions" in run.out
    await assert_all_visible(sqs, queues.dlq_url, 11)

    run = await checked(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--include-finished", "--json", *FAST
    )
    assert run.code == 0, run.err
    assert (run.json()["replayed"], run.json()["skipped_execution_finished"]) == (11, 0)
    assert run.json()["selected_by_execution_state"] == {"waiting": 4, "finished": 4, "unknown": 3}
    await account(sqs, dlq=(queues.dlq_url, Counter()), source=(queues.url, mix.bodies))


async def test_execution_state_filters_the_replay(
    sqs: SQSClient, queues: Queues, mix: Mix, capsys: pytest.CaptureFixture[str]
) -> None:
    """--execution-state unknown replays only the copies whose execution is unknown;
    --execution-state finished without --include-finished is bad usage."""
    run = await checked(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--execution-state", "unknown", "--json",
        *FAST,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["replayed"], run.json()["skipped_by_filter"]) == (3, 8)
    run = await checked(capsys, "replay", "--dlq-url", queues.dlq_url, "--execution-state",
                        "finished", *FAST)  # fmt: skip
    assert run.code == 2
    assert "--include-finished" in run.err
    await account(
        sqs,
        dlq=(queues.dlq_url, mix.bodies - Counter(mix.invalid)),
        source=(queues.url, Counter(mix.invalid)),
    )


@pytest.mark.parametrize("refused", ["ListExecutions", "DescribeExecution"])
async def test_without_the_permission_replay_goes_on_unchecked_and_says_why(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator,
    capsys: pytest.CaptureFixture[str], refused: str,
) -> None:  # fmt: skip
    """With a read refused, its workflows' copies are unknown and replayed as before; the
    summary names the permission; the other read still sorts its own workflows."""
    emulator.state.set_faults(Faults(deny_operations=frozenset({refused})))
    run = await checked(capsys, "replay", "--dlq-url", queues.dlq_url, *FAST)
    assert run.code == 0, run.err
    assert f"transfer:{refused} was refused (AccessDeniedException)" in run.out
    assert "access denied" in run.out
    listed_unknown = refused == "ListExecutions"
    kept = Counter(s.to_body() for s in mix.finished if (s.workflow_id == A) != listed_unknown)
    requeued = Counter(m.body for m in await drain(sqs, queues.url))
    assert requeued == mix.bodies - kept
    await account(sqs, dlq=(queues.dlq_url, kept))


async def test_throttled_reads_are_retried_and_the_split_is_the_same(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Every read throttled at 2 a second (RetryAfterSeconds 0.05): retried until answered,
    the same copies skipped, the throttles counted."""
    emulator.state.set_faults(
        Faults(
            throttle_operations={"ListExecutions": 2.0, "DescribeExecution": 2.0},
            retry_after_s=0.05,
        )
    )
    run = await checked(capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", "--json",
                        *FAST)  # fmt: skip
    assert run.code == 0, run.err
    summary = run.json()
    assert summary["skipped_execution_finished"] == 4
    assert sum(summary["executions"]["throttled"].values()) > 0
    answered = Counter(
        c.operation for c in emulator.state.calls if c.error_code != "ThrottlingException"
    )
    assert answered == Counter({"ListExecutions": 1, "DescribeExecution": 3})
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


async def test_stats_shows_copies_by_execution_state_and_the_oldest_waiting(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`dlq stats` counts each workflow's copies by state and says how long the oldest waiting
    copy has been in the DLQ; --execution-state counts only those; --no-executions calls
    nothing."""
    run = await checked(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--json", *FAST)
    assert run.code == 0, run.err
    executions = run.json()["executions"]
    assert executions["by_state"] == {"waiting": 4, "finished": 4, "unknown": 3}
    by_workflow = {w["workflow_id"]: w for w in executions["workflows"]}
    assert (by_workflow[A]["waiting"], by_workflow[A]["finished"]) == (3, 2)
    assert (by_workflow[B]["waiting"], by_workflow[B]["finished"]) == (1, 1)
    assert (by_workflow[C]["waiting"], by_workflow[C]["finished"]) == (0, 1)
    assert by_workflow[None]["unknown"] == 3
    # The waiting copies were dead-lettered 1 to 4 minutes ago; B's 4 minutes ago.
    assert 235 < executions["oldest_waiting_age_s"] < 300
    assert 1500 < executions["oldest_waiting_at_most_left_s"] < 1565
    assert by_workflow[C]["oldest_waiting_age_s"] is None
    assert calls(emulator) == Counter({"ListExecutions": 1, "DescribeExecution": 3})

    run = await checked(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, *FAST)
    assert "Which copies can still help" in run.out
    assert "its step has at most" in run.out

    run = await checked(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url,
                        "--execution-state", "waiting", "--json", *FAST)  # fmt: skip
    assert (run.json()["messages"], run.json()["skipped_by_execution_state"]) == (4, 7)

    before = len(emulator.state.calls)
    run = await checked(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--no-executions",
                        "--json", *FAST)  # fmt: skip
    assert run.json()["executions"]["checked"] is False
    assert run.json()["messages"] == 11
    assert len(emulator.state.calls) == before
    await assert_all_visible(sqs, queues.dlq_url, 11)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


async def test_export_writes_only_the_execution_states_asked_for(
    sqs: SQSClient, queues: Queues, mix: Mix, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dlq export --execution-state finished` writes exactly the finished copies."""
    out = tmp_path / "finished.jsonl"
    run = await checked(capsys, "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out),
                        "--execution-state", "finished", "--json", *FAST)  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["written"], run.json()["skipped_by_execution_state"]) == (4, 7)
    lines = out.read_text(encoding="utf-8").splitlines()
    written = Counter(json.loads(line)["body"] for line in lines)
    assert written == Counter(s.to_body() for s in mix.finished)
    await account(sqs, dlq=(queues.dlq_url, mix.bodies))


async def test_purge_deletes_the_finished_copies_after_writing_them(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """`dlq purge --execution-state finished --out F`: a dry run changes nothing; then F holds
    exactly the finished copies (mode 0600) and the DLQ exactly the rest."""
    out = tmp_path / "given-up.jsonl"
    args = ("dlq", "purge", "--dlq-url", queues.dlq_url, "--execution-state", "finished", *FAST)
    run = await checked(capsys, *args, "--dry-run")
    assert run.code == 0, run.err
    assert "would delete" in run.out
    assert not out.exists()
    await assert_all_visible(sqs, queues.dlq_url, 11)

    run = await checked(capsys, *args, "--out", str(out), "--json")
    assert run.code == 0, run.err
    summary = run.json()
    assert (summary["selected"], summary["written"], summary["deleted"]) == (4, 4, 4)
    assert summary["saved"] is True
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert Counter(r["body"] for r in records) == Counter(s.to_body() for s in mix.finished)
    assert all(r["attributes"]["relay-reason"] == "not_found" for r in records)
    assert SEND not in calls(emulator)
    await account(
        sqs, dlq=(queues.dlq_url, mix.bodies - Counter(s.to_body() for s in mix.finished))
    )


async def test_purge_by_reason_with_a_limit_and_its_refusals(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Without --execution-state purge makes no Transfer Family call; --max-messages bounds
    what it deletes; no --out, or a symbolic link there, is bad usage and deletes nothing."""
    base = ("dlq", "purge", "--dlq-url", queues.dlq_url, *FAST)
    link = tmp_path / "link.jsonl"
    link.symlink_to(tmp_path / "elsewhere.jsonl")
    for bad, says in (((), "--out"), (("--out", str(link)), "symbolic link")):
        run = await relay(capsys, *base, *bad)
        assert (run.code, run.out) == (2, ""), bad
        assert says in run.err
    await assert_all_visible(sqs, queues.dlq_url, 11)

    out = tmp_path / "validation.jsonl"
    run = await relay(capsys, *base, "--reason", "validation", "--max-messages", "2",
                      "--out", str(out), "--json")  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["deleted"], run.json()["skipped_over_limit"]) == (2, 1)
    purged = Counter(json.loads(x)["body"] for x in out.read_text().splitlines())
    assert purged.total() == 2
    assert purged <= Counter(mix.invalid)
    assert len(emulator.state.calls) == 0
    await account(sqs, dlq=(queues.dlq_url, mix.bodies - purged))


async def test_replay_from_a_file_reads_each_workflow_the_cheaper_way(
    sqs: SQSClient, queues: Queues, mix: Mix, emulator: Emulator, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A file's copies are all known before any replay: the same reads as from the DLQ, and
    only the waiting copies called back."""
    out = tmp_path / "dlq.jsonl"
    run = await relay(capsys, "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out),
                      *FAST)  # fmt: skip
    assert run.code == 0, run.err
    run = await checked(capsys, "replay", "--from-file", str(out), "--to", "transfer",
                        "--reason", "not_found", "--json")  # fmt: skip
    assert run.code == 0, run.err
    assert (run.json()["replayed"], run.json()["skipped_execution_finished"]) == (4, 4)
    assert calls(emulator) == Counter({"ListExecutions": 1, "DescribeExecution": 3, SEND: 4})
    await account(sqs, dlq=(queues.dlq_url, mix.bodies), source=(queues.url, Counter()))
