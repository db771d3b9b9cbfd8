"""The DLQ tools read what anyone allowed to send to a DLQ wrote: issue 14's measured cases of
markup, dates, destinations, export files read back and written, in process on moto.

Each test reproduces one case as it was measured and ends by accounting for every message.
"""

import json
import os
import stat
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from relay.sqs import BatchedQueue, OutgoingMessage, send_messages
from tests.conftest import Queues, create_queue_pair
from tests.integration.test_replay import (
    FAST,
    account,
    assert_all_visible,
    dead,
    no_relay_settings,  # noqa: F401 (an autouse fixture: the developer's RELAY_* stay out)
    put_dlq,
    relay,
)
from tests.support import SQSClient, drain, make_steps

LINK = "[link=https://evil.example/]click here[/link]"


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wide console, so a table cell is never wrapped across lines in the output checked."""
    monkeypatch.setenv("COLUMNS", "240")


def with_attribute(entry: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """A DLQ entry with one String attribute set (or replaced)."""
    attributes = dict(entry.get("MessageAttributes", {}))
    attributes[name] = {"DataType": "String", "StringValue": value}
    return {**entry, "MessageAttributes": attributes}


# --- markup --------------------------------------------------------------------------------


async def test_markup_in_attributes_prints_as_text_in_stats_and_dry_run(
    sqs: SQSClient,
    queues: Queues,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`[/]` as relay-error-code (it crashed `dlq stats`) and `[link=...]` as relay-reason print
    literally on a colour terminal, and no terminal link is made."""
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal: where rich would draw a link
    steps = make_steps(2, seed=41)
    bodies = [s.to_body() for s in steps]
    await put_dlq(
        sqs,
        queues.dlq_url,
        [
            dead(bodies[0], reason="not_found", code="[/]", source=queues.url),
            dead(bodies[1], reason=LINK, code=":thumbs_up: [bold]", source=queues.url),
        ],
    )
    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, *FAST)
    assert run.code == 0, run.err
    assert "[/]" in run.out
    assert LINK in run.out
    assert ":thumbs_up: [bold]" in run.out
    assert "\x1b]8;" not in run.out + run.err, "a terminal hyperlink was drawn"

    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", *FAST)
    assert run.code == 0, run.err
    assert LINK in run.out
    assert "\x1b]8;" not in run.out + run.err
    await assert_all_visible(sqs, queues.dlq_url, 2)
    await account(sqs, dlq=(queues.dlq_url, Counter(bodies)), source=(queues.url, Counter()))


async def test_markup_reason_prints_after_the_replay_deleted_the_messages(
    sqs: SQSClient, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    """A relay-reason of `[/]` crashed `replay` after it had replayed and deleted: now the
    summary prints it, exit 0, and every message is on the source queue once."""
    bodies = [s.to_body() for s in make_steps(3, seed=42)]
    await put_dlq(sqs, queues.dlq_url, [dead(b, reason="[/]", source=queues.url) for b in bodies])
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, *FAST)
    assert run.code == 0, run.err
    assert "[/]" in run.out
    assert "replayed" in run.out
    await account(sqs, dlq=(queues.dlq_url, Counter()), source=(queues.url, Counter(bodies)))


async def test_control_characters_from_an_export_file_are_escaped(
    sqs: SQSClient, queues: Queues, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An escape sequence in a file (SQS refuses it, a file need not) is refused as SQS would;
    characters SQS carries but a terminal acts on (C1 controls, a carriage return, a
    right-to-left override) print escaped, never raw."""
    reason = "\x1b]8;;https://evil.example/\x1b\\x\x1b]8;;\x1b\\\r\u202eevil"
    record = {
        "message_id": "m-1",
        "sent_timestamp": 0,
        "attributes": {"relay-reason": "not_found"},
        "body": make_steps(1, seed=43)[0].to_body(),
    }
    path = tmp_path / "dlq.jsonl"
    path.write_text(json.dumps(record) + "\n")
    run = await relay(
        capsys, "replay", "--from-file", str(path), "--reason", "not_found", "--dry-run"
    )
    assert run.code == 0, run.err
    record["attributes"] = {"relay-reason": reason}
    path.write_text(json.dumps(record) + "\n")
    run = await relay(capsys, "replay", "--from-file", str(path), "--dry-run")
    assert (run.code, run.out) == (2, ""), "a character SQS refuses is not replayed from a file"
    assert f"{path}:1: attribute 'relay-reason': character U+001B at 0" in run.err

    # Characters SQS carries but a terminal acts on: C1 controls and bidirectional overrides.
    record["attributes"] = {"relay-reason": "\u009b2J\u202eevil\u0085\r"}
    path.write_text(json.dumps(record) + "\n")
    run = await relay(capsys, "replay", "--from-file", str(path), "--dry-run")
    assert run.code == 0, run.err
    assert "\\x9b2J\\u202eevil\\x85\\r" in run.out
    assert not {"\u009b", "\u202e", "\u0085", "\r"} & set(run.out)
    await account(sqs, dlq=(queues.dlq_url, Counter()), source=(queues.url, Counter()))


# --- dates ---------------------------------------------------------------------------------

UNREADABLE_DATES = ["9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "yesterday", "[/]"]


async def test_unreadable_dates_are_unknown_and_counted(
    sqs: SQSClient, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    """`relay-dead-lettered-at: 9999-12-31T23:59:59-01:00` (it crashed `dlq stats`, with or
    without --json) and other unreadable dates count as unknown in stats and replay."""
    steps = make_steps(len(UNREADABLE_DATES) + 1, seed=44)
    bodies = [s.to_body() for s in steps]
    entries = [dead(bodies[0], reason="not_found", source=queues.url, age_s=3_600)]
    entries += [
        with_attribute(
            dead(body, reason="not_found", source=queues.url), "relay-dead-lettered-at", at
        )
        for body, at in zip(bodies[1:], UNREADABLE_DATES, strict=True)
    ]
    await put_dlq(sqs, queues.dlq_url, entries)

    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, "--json", *FAST)
    assert run.code == 0, run.err
    stats = run.json()
    assert stats["unreadable_dates"] == len(UNREADABLE_DATES)
    assert stats["oldest_dead_lettered_at"] == stats["newest_dead_lettered_at"] is not None
    run = await relay(capsys, "dlq", "stats", "--dlq-url", queues.dlq_url, *FAST)
    assert run.code == 0, run.err
    assert f"{len(UNREADABLE_DATES)} message(s) with a relay-dead-lettered-at" in run.out

    # Unknown dates age from when the message was sent (just now): not older than 30 minutes.
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--older-than", "30m", "--dry-run",
        "--json", *FAST,
    )  # fmt: skip
    assert run.code == 0, run.err
    summary = run.json()
    assert (summary["selected"], summary["unreadable_dates"]) == (1, len(UNREADABLE_DATES))
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", *FAST)
    assert run.code == 0, run.err
    assert "not a readable time" in run.out
    await account(sqs, dlq=(queues.dlq_url, Counter(bodies)), source=(queues.url, Counter()))


# --- destinations --------------------------------------------------------------------------


async def test_replay_sends_only_to_the_dlqs_source_queues(
    sqs: SQSClient, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DLQ message naming an unrelated queue (it was delivered there) fails as
    destination_not_allowed and stays; one naming the source queue goes there; --queue-url
    names the unrelated queue and then it goes."""
    bystander = await create_queue_pair(sqs)
    home, away = (s.to_body() for s in make_steps(2, seed=45))
    await put_dlq(
        sqs,
        queues.dlq_url,
        [
            dead(home, reason="not_found", source=queues.url),
            dead(away, reason="not_found", source=bystander.url),
        ],
    )
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--dry-run", "--json", *FAST)
    assert run.code == 0, run.err
    summary = run.json()
    assert summary["would_fail_by_reason"] == {"destination_not_allowed": 1}
    assert summary["destinations"] == [
        {"queue_url": queues.url, "messages": 1, "allowed_by": "dead_letter_source"}
    ]
    await assert_all_visible(sqs, queues.dlq_url, 2)

    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--json", *FAST)
    assert run.code == 1
    summary = run.json()
    assert (summary["replayed"], summary["failed_by_reason"]) == (
        1,
        {"destination_not_allowed": 1},
    )
    assert bystander.url in summary["failure_details"]["destination_not_allowed"]
    await assert_all_visible(sqs, queues.dlq_url, 1)
    assert await drain(sqs, bystander.url) == [], "sent where a message said"

    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--queue-url", bystander.url, "--json",
        *FAST,
    )  # fmt: skip
    assert run.code == 0, run.err
    assert run.json()["destinations"] == [
        {"queue_url": bystander.url, "messages": 1, "allowed_by": "queue_url"}
    ]
    await account(
        sqs,
        dlq=(queues.dlq_url, Counter()),
        source=(queues.url, Counter([home])),
        bystander=(bystander.url, Counter([away])),
    )


async def test_a_source_queue_named_with_another_host_goes_to_the_url_sqs_lists(
    sqs: SQSClient, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    """The message picks which listed source queue, never the host: the same account and name
    under another host is sent to the URL SQS lists; a URL that is no queue URL is refused."""
    account_id, name = queues.url.rsplit("/", 2)[-2:]
    elsewhere = f"https://sqs.evil.example/{account_id}/{name}"
    good, bad = (s.to_body() for s in make_steps(2, seed=46))
    await put_dlq(
        sqs,
        queues.dlq_url,
        [
            dead(good, reason="not_found", source=elsewhere),
            dead(bad, reason="not_found", source=f"{queues.url}?Action=SendMessage"),
        ],
    )
    run = await relay(capsys, "replay", "--dlq-url", queues.dlq_url, "--json", *FAST)
    assert run.code == 1
    summary = run.json()
    assert summary["replayed"] == 1
    assert summary["failed_by_reason"] == {"destination_not_allowed": 1}
    assert summary["destinations"] == [
        {"queue_url": queues.url, "messages": 1, "allowed_by": "dead_letter_source"}
    ]
    await account(sqs, dlq=(queues.dlq_url, Counter([bad])), source=(queues.url, Counter([good])))


async def test_a_dlq_without_sources_replays_to_annotated_queues_and_lists_them(
    sqs: SQSClient, queues: Queues, capsys: pytest.CaptureFixture[str]
) -> None:
    """A DLQ no redrive policy names: SQS lists no source, so copies go to each annotated
    queue, every one listed as unchecked in the dry run and the summary (table and JSON)."""
    lonely = (await sqs.create_queue(QueueName=f"relay-lonely-{uuid.uuid4().hex[:12]}"))["QueueUrl"]
    other = await create_queue_pair(sqs)
    first, second = (s.to_body() for s in make_steps(2, seed=47))
    await put_dlq(
        sqs,
        lonely,
        [
            dead(first, reason="not_found", source=queues.url),
            dead(second, reason="not_found", source=other.url),
        ],
    )
    run = await relay(capsys, "replay", "--dlq-url", lonely, "--dry-run", *FAST)
    assert run.code == 0, run.err
    assert "UNCHECKED destinations (2)" in run.out
    assert queues.url in run.out
    assert other.url in run.out
    run = await relay(capsys, "replay", "--dlq-url", lonely, "--dry-run", "--json", *FAST)
    summary = run.json()
    assert sorted(summary["unchecked_destinations"]) == sorted([queues.url, other.url])
    assert "SQS lists no queue" in summary["unchecked_why"]
    await assert_all_visible(sqs, lonely, 2)

    run = await relay(capsys, "replay", "--dlq-url", lonely, "--json", *FAST)
    assert run.code == 0, run.err
    summary = run.json()
    assert summary["replayed"] == 2
    assert sorted((d["queue_url"], d["allowed_by"]) for d in summary["destinations"]) == sorted(
        [(queues.url, "unchecked"), (other.url, "unchecked")]
    )
    await account(
        sqs,
        dlq=(lonely, Counter()),
        source=(queues.url, Counter([first])),
        other=(other.url, Counter([second])),
    )


# --- export files read back ----------------------------------------------------------------

GOOD_BODY = make_steps(1, seed=48)[0].to_body()


def record(**fields: Any) -> dict[str, Any]:
    """An export line: a good one, with `fields` replacing (or, as None, removing) its own."""
    line: dict[str, Any] = {
        "message_id": "m-1",
        "sent_timestamp": 1_700_000_000_000,
        "attributes": {"relay-reason": "not_found"},
        "body": GOOD_BODY,
    }
    for key, value in fields.items():
        if value is None:
            line.pop(key)
        else:
            line[key] = value
    return line


SURROGATE = '{"note": "\ud800"}'  # json.loads accepts the escape; UTF-8 cannot encode it

BAD_LINES: list[tuple[str, str]] = [
    (json.dumps(record(body=SURROGATE)), "body: character U+D800 at 10 is a lone surrogate"),
    (json.dumps(record(body=SURROGATE, message_id=None)), "body: character U+D800"),
    (json.dumps(record(body="a\u0000b")), "body: character U+0000 at 1 is refused by SQS"),
    (json.dumps(record(body="")), "body must be a non-empty string"),
    (json.dumps(record(sent_timestamp=10**400)), "sent_timestamp must be milliseconds"),
    (json.dumps(record(sent_timestamp=-1)), "sent_timestamp must be milliseconds"),
    (json.dumps(record(sent_timestamp=1.5)), "sent_timestamp must be milliseconds"),
    (json.dumps(record(sent_timestamp=True)), "sent_timestamp must be milliseconds"),
    (json.dumps(record(message_id=7)), "message_id must be a string"),
    (json.dumps(record(message_id="\udfff")), "message_id: character U+DFFF"),
    (json.dumps(record(group_id=7)), "group_id must be"),
    (json.dumps(record(group_id="")), "group_id must be"),
    (json.dumps(record(group_id="a b")), "group_id must be"),
    (json.dumps(record(attributes={"AWS.trace": "x"})), "'AWS.' and 'Amazon.' are reserved"),
    (json.dumps(record(attributes={"a b": "x"})), "attribute name 'a b': must be"),
    (json.dumps(record(attributes={"a..b": "x"})), "must not start or end with '.'"),
    (json.dumps(record(attributes={"trace": ""})), "attribute 'trace': must be a non-empty"),
    (json.dumps(record(attributes={"trace": 5})), "attribute 'trace': must be a non-empty"),
    (json.dumps(record(attributes={"trace": "\ud800"})), "attribute 'trace': character U+D800"),
    (json.dumps(record(attributes={f"a{i}": "x" for i in range(11)})), "SQS allows 10"),
    (json.dumps(record(attributes=["x"])), "attributes must map names to strings"),
    (json.dumps(record(body="x" * 1_048_577)), "over SQS's 1 MiB"),
    ('{"body": "a", "body": "b"}', "duplicate key 'body'"),
    ("[1]", "not a JSON object"),
    ("{nope", "not valid JSON"),
]


async def test_a_bad_export_line_is_named_and_nothing_is_sent(
    sqs: SQSClient, queues: Queues, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each bad line (a lone surrogate gave a silently stopped batch; a 400-digit timestamp or
    such a body without message_id, a traceback) is exit 2 with `FILE:LINE: what`, and not even
    the good line before it is sent."""
    path = tmp_path / "dlq.jsonl"
    for line, says in BAD_LINES:
        path.write_text(json.dumps(record()) + "\n" + line + "\n", encoding="ascii")
        for dry_run in ((), ("--dry-run",)):
            run = await relay(
                capsys, "replay", "--from-file", str(path), "--queue-url", queues.url, *dry_run
            )
            assert (run.code, run.out) == (2, ""), line[:80]
            assert len(run.err.strip().splitlines()) == 1, line[:80]
            assert f"relay: {path}:2: " in run.err, line[:80]
            assert says in run.err, (line[:80], run.err)
            assert len(run.err) < 400, "the error repeats the input"
    path.write_text(json.dumps(record()) + "\n")
    run = await relay(capsys, "replay", "--from-file", str(path), "--queue-url", queues.url)
    assert run.code == 0, run.err
    await account(sqs, dlq=(queues.dlq_url, Counter()), source=(queues.url, Counter([GOOD_BODY])))


async def test_one_unencodable_message_fails_alone_in_its_batch(
    sqs: SQSClient, queues: Queues
) -> None:
    """The send path: a body with a lone surrogate among ten fails alone, at once, as the
    sender's fault; the nine others are sent (it used to fail the batch without a word)."""
    bodies = [s.to_body() for s in make_steps(10, seed=49)]
    messages = [OutgoingMessage(body=b) for b in bodies]
    messages[3] = OutgoingMessage(body=SURROGATE)
    failures = await send_messages(sqs, queues.url, messages, backoff_s=0.0)
    assert [(f.index, f.code, f.sender_fault) for f in failures] == [
        (3, "InvalidMessageContents", True)
    ]
    assert "lone surrogate" in failures[0].message
    await account(
        sqs,
        dlq=(queues.dlq_url, Counter()),
        source=(queues.url, Counter(bodies) - Counter([bodies[3]])),
    )


# --- export files written ------------------------------------------------------------------


def directory_listing(path: Path) -> dict[str, bytes]:
    """Every entry of a directory with its bytes (a link: its target's name; a directory: -)."""
    return {
        p.name: os.readlink(p).encode()
        if p.is_symlink()
        else (b"-" if p.is_dir() else p.read_bytes())
        for p in sorted(path.iterdir())
    }


async def test_export_is_created_0600_and_replaces_a_file_only_when_whole(
    sqs: SQSClient, queues: Queues, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong DLQ URL (it truncated the existing export to 0 bytes) leaves the file and its
    directory exactly as they were; a good export replaces it with a file of mode 0600 (it was
    0644) and leaves no temporary file."""
    bodies = [s.to_body() for s in make_steps(2, seed=50)]
    await put_dlq(
        sqs, queues.dlq_url, [dead(b, reason="not_found", source=queues.url) for b in bodies]
    )
    out = tmp_path / "dlq.jsonl"
    out.write_text("the export of last week\n")
    out.chmod(0o644)
    before = directory_listing(tmp_path)
    missing = queues.dlq_url.rsplit("/", 1)[0] + "/no-such-queue"
    run = await relay(capsys, "dlq", "export", "--dlq-url", missing, "--out", str(out), *FAST)
    assert (run.code, run.out) == (2, "")
    assert "NonExistentQueue" in run.err
    assert directory_listing(tmp_path) == before

    old_umask = os.umask(0o022)
    try:
        run = await relay(
            capsys, "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out), "--json",
            *FAST,
        )  # fmt: skip
    finally:
        os.umask(old_umask)
    assert run.code == 0, run.err
    assert (run.json()["written"], run.json()["saved"]) == (2, True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert list(directory_listing(tmp_path)) == ["dlq.jsonl"], "a temporary file was left"
    assert sorted(json.loads(line)["body"] for line in out.read_text().splitlines()) == sorted(
        bodies
    )
    await account(sqs, dlq=(queues.dlq_url, Counter(bodies)))


async def test_export_refuses_a_symbolic_link_and_a_directory(
    sqs: SQSClient, queues: Queues, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A symbolic link at --out (it wrote through it) or a directory: exit 2, one line, nothing
    read, the link and the file it points to unchanged."""
    await put_dlq(sqs, queues.dlq_url, [dead(GOOD_BODY, reason="not_found", source=queues.url)])
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "dlq.jsonl"
    link.symlink_to(victim)
    (tmp_path / "folder").mkdir()
    before = directory_listing(tmp_path)
    for out, says in ((link, "is a symbolic link"), (tmp_path / "folder", "not a regular file")):
        run = await relay(
            capsys, "dlq", "export", "--dlq-url", queues.dlq_url, "--out", str(out), *FAST
        )
        assert (run.code, run.out) == (2, ""), out
        assert len(run.err.strip().splitlines()) == 1
        assert says in run.err
    assert directory_listing(tmp_path) == before
    assert link.is_symlink()
    await account(sqs, dlq=(queues.dlq_url, Counter([GOOD_BODY])))


async def test_a_replay_that_raises_fails_alone_and_the_rest_go_on(
    sqs: SQSClient,
    queues: Queues,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One replay raising something unforeseen (it stopped its replayer, and every message
    queued behind it was reported "not tried") fails alone as unexpected_error and stays; with
    one replayer, every other message is still replayed."""
    bodies = [s.to_body() for s in make_steps(6, seed=51)]
    await put_dlq(
        sqs, queues.dlq_url, [dead(b, reason="not_found", source=queues.url) for b in bodies]
    )
    send = BatchedQueue.send

    async def send_but_one(self: BatchedQueue, message: OutgoingMessage) -> None:
        if message.body == bodies[2]:
            raise RuntimeError("a bug on the way")
        await send(self, message)

    monkeypatch.setattr(BatchedQueue, "send", send_but_one)
    run = await relay(
        capsys, "replay", "--dlq-url", queues.dlq_url, "--concurrency", "1", "--json", *FAST
    )
    assert run.code == 1
    summary = run.json()
    assert (summary["replayed"], summary["abandoned"]) == (5, 0)
    assert summary["failed_by_reason"] == {"unexpected_error": 1}
    assert "RuntimeError: a bug on the way" in summary["failure_details"]["unexpected_error"]
    await account(
        sqs,
        dlq=(queues.dlq_url, Counter([bodies[2]])),
        source=(queues.url, Counter(bodies) - Counter([bodies[2]])),
    )
