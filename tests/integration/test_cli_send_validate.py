"""`relay validate` and `relay send`, run in-process against moto's SQS server.

The CLI calls `asyncio.run` itself, so async tests run it in a worker thread; `main` always
ends in `SystemExit`, whose code is the exit code.
"""

import asyncio
import codecs
import io
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from relay.cli import main
from relay.message import TOKEN_RULE, InvalidMessage, Status, parse
from tests.conftest import Queues, create_queue_pair
from tests.support import SQSClient, drain, event_body, make_steps, sns_body, total_depth

MiB = 1024 * 1024


@dataclass(frozen=True)
class Run:
    """How one CLI invocation ended."""

    code: int
    out: list[str]
    err: list[str]


@pytest.fixture(autouse=True)
def no_relay_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's RELAY_* and COPILOT_* variables must not reach the commands."""
    for name in list(os.environ):
        if name.startswith(("RELAY_", "COPILOT_")):
            monkeypatch.delenv(name)


def exit_code(args: list[str]) -> int:
    """Runs the console script's entry point and returns the code it exits with."""
    try:
        main(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    raise AssertionError("relay.cli.main returned instead of exiting")


def finish(code: int, capsys: pytest.CaptureFixture[str]) -> Run:
    """The exit code with what the command printed, line by line."""
    captured = capsys.readouterr()
    run = Run(code, captured.out.splitlines(), captured.err.splitlines())
    assert "Traceback" not in captured.out + captured.err
    return run


def relay(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """Runs `relay ARGS` in this thread."""
    return finish(exit_code(list(args)), capsys)


async def relay_async(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    """Runs `relay ARGS` in a worker thread, since the command runs its own event loop."""
    return finish(await asyncio.to_thread(exit_code, list(args)), capsys)


def jsonl(path: Path, lines: Iterable[str | bytes], *, newline: bytes = b"\n") -> str:
    """Writes a JSON Lines file and returns its path."""
    path.write_bytes(
        b"".join((line if isinstance(line, bytes) else line.encode()) + newline for line in lines)
    )
    return str(path)


def padded(body: str, size: int) -> str:
    """A canonical body with an unknown `padding` key that brings it to `size` bytes."""
    document = json.loads(body)
    document["padding"] = ""
    room = size - len(json.dumps(document).encode())
    document["padding"] = "x" * room
    result = json.dumps(document)
    assert len(result.encode()) == size
    return result


STEPS = make_steps(8, seed=7)
GOOD = STEPS[0].to_body()
TOKEN_RULE_TEXT = f"must match {TOKEN_RULE}"


# --- validate ------------------------------------------------------------------------------


def test_validate_reports_each_bad_line_with_its_field_and_rule_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad record gets `LINE: FIELD: rule`, blank lines keep numbering, a count ends it."""
    bad_token = json.dumps({**STEPS[1].to_request(), "Token": "tok-en"})
    bad_status = sns_body(json.dumps({**STEPS[2].to_request(), "Status": "success"}))
    path = jsonl(
        tmp_path / "results.jsonl",
        [
            GOOD,
            bad_token,
            "",
            "{not json",
            event_body(STEPS[3]),
            bad_status,
            b"\xff{}",
            sns_body(event_body(STEPS[4])),
        ],
    )
    run = relay(capsys, "validate", path)
    assert run.code == 1
    assert run.out == [
        f"2: Token: {TOKEN_RULE_TEXT}",
        "4: body: not valid JSON",
        "6: Message.Status: must be SUCCESS or FAILURE",
        "7: body: not UTF-8 (byte 0)",
    ]
    assert run.err == ["7 record(s), 4 invalid"]


def test_validate_a_clean_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file of valid records in all three shapes, with CRLF line ends, passes."""
    lines = [GOOD, event_body(STEPS[1]), sns_body(STEPS[2].to_body()), "   "]
    run = relay(capsys, "validate", jsonl(tmp_path / "ok.jsonl", lines, newline=b"\r\n"))
    assert run == Run(0, ["3 record(s), 0 invalid"], [])


def test_validate_ignores_a_byte_order_mark_at_the_start_of_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A UTF-8 file saved with a byte order mark is read as the records it holds."""
    path = tmp_path / "bom.jsonl"
    path.write_bytes(codecs.BOM_UTF8 + f"{GOOD}\n{STEPS[1].to_body()}\n".encode())
    assert relay(capsys, "validate", str(path)) == Run(0, ["2 record(s), 0 invalid"], [])


def test_validate_an_empty_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty file holds no bad record."""
    run = relay(capsys, "validate", jsonl(tmp_path / "empty.jsonl", []))
    assert run == Run(0, ["0 record(s), 0 invalid"], [])


def test_validate_reads_stdin_given_a_dash(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relay validate -` reads the records from standard input."""
    data = f"{GOOD}\n{json.dumps({**STEPS[1].to_request(), 'Token': ''})}\n".encode()
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data)))
    run = relay(capsys, "validate", "-")
    assert run == Run(1, [f"2: Token: {TOKEN_RULE_TEXT}"], ["2 record(s), 1 invalid"])


@pytest.mark.parametrize("name", ["missing.jsonl", "a-directory"])
def test_validate_an_unreadable_file_exits_2_with_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A file that cannot be read is bad usage: exit 2, one line on stderr, nothing else."""
    (tmp_path / "a-directory").mkdir()
    run = relay(capsys, "validate", str(tmp_path / name))
    assert run.code == 2
    assert run.out == []
    assert len(run.err) == 1
    assert run.err[0].startswith(f"relay: cannot read {tmp_path / name}: ")


# --- send ----------------------------------------------------------------------------------


async def test_send_file_puts_every_record_on_the_queue_verbatim(
    queues: Queues, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """25 records in three shapes are all sent, in batches, byte for byte; nothing else arrives."""
    steps = make_steps(25, seed=1)
    shapes = [lambda s: s.to_body(), event_body, lambda s: sns_body(s.to_body())]
    bodies = [shapes[i % 3](step) for i, step in enumerate(steps)]
    run = await relay_async(
        capsys, "send", "--queue-url", queues.url, "--file", jsonl(tmp_path / "r.jsonl", bodies)
    )
    assert run == Run(0, [f"sent 25 of 25 record(s) to {queues.url}"], [])
    received = await drain(sqs, queues.url)
    assert Counter(m.body for m in received) == Counter(bodies)
    assert await total_depth(sqs, queues.url) == 0
    assert await drain(sqs, queues.dlq_url) == []


async def test_send_splits_records_that_cannot_share_one_request(
    queues: Queues, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three valid 400 KB records exceed 1 MiB together, so they are split and all arrive."""
    bodies = [padded(step.to_body(), 400_000) for step in STEPS[:3]]
    path = jsonl(tmp_path / "big.jsonl", bodies)
    run = await relay_async(capsys, "send", "--queue-url", queues.url, "--file", path)
    assert run == Run(0, [f"sent 3 of 3 record(s) to {queues.url}"], [])
    received = await drain(sqs, queues.url)
    assert Counter(m.body for m in received) == Counter(bodies)


INVALID_LINES = [
    GOOD,
    json.dumps({**STEPS[1].to_request(), "Token": "bad-token"}),
    "not json at all",
    '{"WorkflowId": 5}',
    "[]",
]
INVALID_VERDICTS = [
    f"2: Token: {TOKEN_RULE_TEXT}",
    "3: body: not valid JSON",
    "4: WorkflowId: must be a string, not a number",
    "5: body: must be a JSON object, not an array",
]


async def test_send_no_validate_sends_invalid_records_verbatim(
    queues: Queues, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With --no-validate every record goes as it is, broken ones too (to test dead-lettering)."""
    path = jsonl(tmp_path / "mixed.jsonl", INVALID_LINES)
    run = await relay_async(
        capsys, "send", "--queue-url", queues.url, "--file", path, "--no-validate"
    )
    assert run == Run(0, [f"sent 5 of 5 record(s) to {queues.url}"], [])
    received = await drain(sqs, queues.url)
    assert Counter(m.body for m in received) == Counter(INVALID_LINES)


async def test_send_validates_first_and_sends_nothing_when_any_record_is_invalid(
    queues: Queues, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without --no-validate, bad records are reported by line and not one record is sent."""
    path = jsonl(tmp_path / "mixed.jsonl", INVALID_LINES)
    run = await relay_async(capsys, "send", "--queue-url", queues.url, "--file", path)
    assert run.code == 1
    assert run.out == INVALID_VERDICTS
    assert run.err == ["relay: 4 invalid record(s); nothing sent (--no-validate sends anyway)"]
    assert await total_depth(sqs, queues.url) == 0


async def test_send_no_validate_still_refuses_a_record_that_is_not_text(
    queues: Queues, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQS carries text only, so a non-UTF-8 record is reported and nothing is sent."""
    path = jsonl(tmp_path / "binary.jsonl", [GOOD, b"\xc3\x28"])
    run = await relay_async(
        capsys, "send", "--queue-url", queues.url, "--file", path, "--no-validate"
    )
    assert run.code == 1
    assert run.out == ["2: body: not UTF-8; SQS carries text only"]
    assert len(run.err) == 1
    assert await total_depth(sqs, queues.url) == 0


def flags(step_index: int = 0, **overrides: str) -> list[str]:
    """The four result flags of a known step result."""
    values = {
        "--workflow-id": STEPS[step_index].workflow_id,
        "--execution-id": STEPS[step_index].execution_id,
        "--token": STEPS[step_index].token,
        "--status": STEPS[step_index].status.value,
        **overrides,
    }
    return [part for item in values.items() for part in item]


async def test_send_four_flags_send_one_canonical_message(
    queues: Queues, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """The four flags make exactly one message, in the canonical shape."""
    run = await relay_async(
        capsys, "send", "--queue-url", queues.url, *flags(0, **{"--status": "FAILURE"})
    )
    assert run == Run(0, [f"sent 1 of 1 record(s) to {queues.url}"], [])
    [message] = await drain(sqs, queues.url)
    expected = STEPS[0].to_request() | {"Status": "FAILURE"}
    assert json.loads(message.body) == expected
    assert parse(message.body).status is Status.FAILURE


@pytest.mark.parametrize("token", ["bad-token", ""])
async def test_send_four_flags_with_an_invalid_value_is_bad_usage(
    token: str, queues: Queues, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """A flag value that breaks its rule exits 2 with one line naming the field; nothing sent."""
    run = await relay_async(
        capsys, "send", "--queue-url", queues.url, *flags(0, **{"--token": token})
    )
    assert run == Run(2, [], [f"relay: invalid result: Token: {TOKEN_RULE_TEXT}"])
    assert await total_depth(sqs, queues.url) == 0


async def test_send_four_flags_with_no_validate_send_invalid_values_as_valid_json(
    queues: Queues, sqs: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """--no-validate sends invalid flag values as they are, in well-formed JSON, so the worker
    names the field."""
    token = 'bad "token" \\ é'
    run = await relay_async(
        capsys, "send", "--queue-url", queues.url, "--no-validate", *flags(0, **{"--token": token})
    )
    assert run.code == 0
    [message] = await drain(sqs, queues.url)
    assert json.loads(message.body)["Token"] == token
    with pytest.raises(InvalidMessage) as caught:
        parse(message.body)
    assert caught.value.field == "Token"


async def test_send_to_fifo_groups_by_execution_and_deduplicates_the_same_result(
    sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On FIFO the group is the execution id; the same four fields sent twice leave one message."""
    fifo = await create_queue_pair(sqs, fifo=True)
    first = jsonl(tmp_path / "first.jsonl", [s.to_body() for s in STEPS[:3]])
    # The same result again, in another shape: deduplication is by the four fields.
    again = jsonl(tmp_path / "again.jsonl", [event_body(STEPS[0])])
    runs = [
        await relay_async(capsys, "send", "--queue-url", fifo.url, "--file", first),
        await relay_async(capsys, "send", "--queue-url", fifo.url, "--file", again),
        await relay_async(capsys, "send", "--queue-url", fifo.url, *flags(1)),
    ]
    assert [run.code for run in runs] == [0, 0, 0]
    assert [run.out[-1].split(" to ")[0] for run in runs] == [
        "sent 3 of 3 record(s)",
        "sent 1 of 1 record(s)",
        "sent 1 of 1 record(s)",
    ]
    received = await drain(sqs, fifo.url)
    assert sorted(m.body for m in received) == sorted(s.to_body() for s in STEPS[:3])
    for message in received:
        step = parse(message.body)
        assert message.system["MessageGroupId"] == step.execution_id
        assert message.system["MessageDeduplicationId"] == step.dedup_id()


async def test_send_to_a_missing_queue_exits_1_with_one_line(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A queue that does not exist fails every record for one reason, said once on stderr."""
    url = f"{moto_url}/123456789012/relay-missing-{uuid.uuid4().hex[:8]}"
    path = jsonl(tmp_path / "r.jsonl", [s.to_body() for s in STEPS[:3]])
    run = await relay_async(capsys, "send", "--queue-url", url, "--file", path)
    assert run.code == 1
    assert run.out == []
    assert len(run.err) == 1
    assert run.err[0].startswith(f"relay: none of 3 record(s) sent to {url}: ")
    assert "NonExistentQueue" in run.err[0]


async def test_send_reports_a_record_sqs_rejects_and_sends_the_rest(
    queues: Queues, sqs: SQSClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A body over 1 MiB is refused by SQS and reported by line; the others arrive; exit 1."""
    too_big = padded(STEPS[1].to_body(), MiB + 1)
    bodies = [GOOD, too_big, STEPS[2].to_body(), STEPS[3].to_body()]
    path = jsonl(tmp_path / "r.jsonl", bodies)
    run = await relay_async(capsys, "send", "--queue-url", queues.url, "--file", path)
    assert run.code == 1
    assert run.err == []
    [report, summary] = run.out
    assert report.startswith("2: not sent: ")
    assert summary == f"sent 3 of 4 record(s) to {queues.url}"
    received = await drain(sqs, queues.url)
    assert Counter(m.body for m in received) == Counter(bodies[:1] + bodies[2:])
