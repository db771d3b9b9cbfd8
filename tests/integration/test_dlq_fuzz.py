"""The DLQ tools fed what a careless or hostile producer could put in a DLQ, and what a broken
or edited export file could hold (hypothesis, a bounded number of small examples).

Every command ends with exit 0, 1 or 2 and no traceback, in process through `relay.cli.main`,
and every message is accounted for. Examples stay small (a few messages each, a queue pair of
their own): moto's SQS slows down as a queue grows.
"""

import contextlib
import io
import json
import os
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from relay.cli import main
from relay.message import sns_body
from tests.support import make_steps

FAST = ("--receive-wait", "0")
EXAMPLES = settings(max_examples=20, deadline=None)
"""Enough to meet every kind of value below a few times; each example runs six commands."""

SyncSQS = Any


@pytest.fixture(scope="module")
def sync_sqs(aws_environment: dict[str, str]) -> Iterator[SyncSQS]:
    """A botocore SQS client on moto (the examples run synchronously, like the CLI)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith(("RELAY_", "COPILOT_")):
                patch.delenv(name)  # the developer's settings must not reach the commands
        client = botocore.session.get_session().create_client("sqs")
        yield client
        client.close()


@pytest.fixture(scope="module")
def bystander(sync_sqs: SyncSQS) -> str:
    """A queue no DLQ names as its source: nothing may ever be replayed onto it."""
    return str(
        sync_sqs.create_queue(QueueName=f"relay-bystander-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    )


def run(*args: str) -> tuple[int, str, str]:
    """`relay ARGS` in process: (exit code, stdout, stderr); 0, 1 or 2 and never a traceback
    (an exception escaping `main` fails the example). `replay` and `dlq stats` ask Transfer
    Family nothing (`--no-executions`): the fuzzing is about what the DLQ holds."""
    if args[:1] == ("replay",) or args[:2] == ("dlq", "stats"):
        args = (*args, "--no-executions")
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        else:
            raise AssertionError("relay.cli.main returned instead of exiting")
    assert "Traceback" not in out.getvalue() + err.getvalue()
    assert code in (0, 1, 2), (args, code, err.getvalue())
    return code, out.getvalue(), err.getvalue()


def drain_sync(sqs: SyncSQS, queue_url: str) -> Counter[str]:
    """Receives and deletes every visible message (bounded); their bodies."""
    bodies: Counter[str] = Counter()
    for _ in range(20):
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        bodies.update(m["Body"] for m in messages)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
    return bodies


# --- what a producer could put in a DLQ ----------------------------------------------------

SQS_CHARACTER = st.characters(
    min_codepoint=0x20, max_codepoint=0x10FFFF, exclude_categories=("Cs",)
).filter(lambda c: c not in "\ufffe\uffff") | st.sampled_from("\t\n\r")
"""Any character SQS carries."""

HOSTILE = [
    "[/]",
    "[link=https://evil.example/]click[/link]",
    "[bold red]",
    ":thumbs_up:",
    "\u202eevil",
    "\u009b2J\u0085",
    "\r",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "2026-02-30T00:00:00Z",
    "NaN",
    "-1",
    "x" * 300,
    "unannotated",
    "{}",
]

values = st.one_of(
    st.sampled_from(HOSTILE),
    st.text(SQS_CHARACTER, min_size=1, max_size=30),
    st.builds(
        lambda moment, hours: moment.isoformat() + f"{hours:+03d}:00",
        st.datetimes(),
        st.integers(-23, 23),
    ),
)
step_bodies = st.integers(0, 2**32).map(lambda seed: make_steps(1, seed=seed)[0].to_body())
bodies = st.one_of(
    step_bodies,
    step_bodies.map(lambda body: sns_body(body, random.Random(0))),
    step_bodies.map(lambda body: body[:-1] + ',"Status":"FAILURE"}'),
    values,
    st.dictionaries(
        st.sampled_from(["WorkflowId", "ExecutionId", "Token", "Status", "Type", "Message"]),
        values,
    ).map(lambda d: json.dumps(d, ensure_ascii=False)),
)
RELAY_ATTRIBUTES = [
    "relay-reason",
    "relay-error-code",
    "relay-error-message",
    "relay-attempts",
    "relay-source-message-id",
    "relay-dead-lettered-at",
]
dlq_messages = st.fixed_dictionaries(
    {
        "body": bodies,
        "relay": st.dictionaries(st.sampled_from(RELAY_ATTRIBUTES), values, max_size=6),
        "own": st.dictionaries(st.sampled_from(["trace-id", "x.y", "Z_1"]), values, max_size=3),
        # Where it says it came from: its real source, another host for it, a bystander, junk.
        "source": st.one_of(
            st.none(), st.sampled_from(["source", "elsewhere", "bystander"]), values
        ),
    }
)


def create_pair(sqs: SyncSQS) -> tuple[str, str]:
    """A fresh queue and its DLQ, a redrive policy between them: (queue URL, DLQ URL)."""
    name = f"relay-fuzz-{uuid.uuid4().hex[:12]}"
    dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "100"})
    queue = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return str(queue), str(dlq)


def source_of(choice: str | None, queue_url: str, bystander: str) -> str | None:
    """The relay-source-queue a generated message carries."""
    account, name = queue_url.rsplit("/", 2)[-2:]
    named = {
        "source": queue_url,
        "elsewhere": f"https://sqs.evil.example/{account}/{name}",
        "bystander": bystander,
    }
    return named.get(choice, choice) if choice is not None else None


@EXAMPLES
@given(messages=st.lists(dlq_messages, min_size=1, max_size=3))
def test_dlq_tools_survive_whatever_a_dlq_holds(
    sync_sqs: SyncSQS, bystander: str, messages: list[dict[str, Any]]
) -> None:
    """`dlq stats` (table and JSON), `dlq export` and the file read back, `replay --dry-run` and
    `replay` all end 0 or 1 without a traceback; what was replayed went only to the DLQ's
    source queue and every body is in the DLQ or there."""
    queue_url, dlq_url = create_pair(sync_sqs)
    try:
        entries = []
        for i, message in enumerate(messages):
            attributes = {**message["own"], **message["relay"]}
            source = source_of(message["source"], queue_url, bystander)
            if source is not None:
                attributes["relay-source-queue"] = source
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": message["body"]}
            if attributes:
                entry["MessageAttributes"] = {
                    k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()
                }
            entries.append(entry)
        response = sync_sqs.send_message_batch(QueueUrl=dlq_url, Entries=entries)
        assert not response.get("Failed"), response.get("Failed")
        sent = Counter(m["body"] for m in messages)

        code, out, _ = run("dlq", "stats", "--dlq-url", dlq_url, "--json", *FAST)
        assert (code, json.loads(out)["messages"]) == (0, len(messages))
        assert run("dlq", "stats", "--dlq-url", dlq_url, *FAST)[0] == 0
        with tempfile.TemporaryDirectory() as directory:
            export = str(Path(directory) / "dlq.jsonl")
            assert run("dlq", "export", "--dlq-url", dlq_url, "--out", export, *FAST)[0] == 0
            # What export writes, replay reads back, whatever the DLQ held.
            code, out, err = run("replay", "--from-file", export, "--dry-run", "--json")
            assert code == 0, err
            assert json.loads(out)["selected"] == len(messages)
        assert run("replay", "--dlq-url", dlq_url, "--dry-run", *FAST)[0] == 0
        code, out, _ = run("replay", "--dlq-url", dlq_url, "--json", *FAST)
        summary = json.loads(out)
        assert code == (0 if summary["ok"] else 1)

        replayed = drain_sync(sync_sqs, queue_url)
        assert replayed.total() == summary["replayed"]
        assert replayed + drain_sync(sync_sqs, dlq_url) == sent
        assert drain_sync(sync_sqs, bystander) == Counter(), "replayed where a message said"
    finally:
        for url in (queue_url, dlq_url):
            sync_sqs.delete_queue(QueueUrl=url)


# --- what an export file could hold --------------------------------------------------------

ANY_CHARACTER = st.characters(exclude_categories=())
"""Lone surrogates included: a file's JSON escapes can spell them."""

any_text = st.text(ANY_CHARACTER, max_size=12)
records = st.fixed_dictionaries(
    {},
    optional={
        "message_id": st.one_of(any_text, st.integers(), st.none()),
        "sent_timestamp": st.one_of(
            st.integers(-(10**20), 10**20),
            st.just(10**400),
            st.floats(allow_nan=False),
            st.booleans(),
            any_text,
        ),
        "attributes": st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from(["relay-reason", "trace-id", "AWS.x"]), any_text),
                st.one_of(any_text, st.integers()),
                max_size=3,
            ),
            st.lists(st.integers(), max_size=2),
        ),
        "group_id": st.one_of(any_text, st.integers(), st.none()),
        "body": st.one_of(step_bodies, any_text, st.integers(), st.none()),
    },
)
good_records = st.fixed_dictionaries(
    {"body": step_bodies},
    optional={
        "message_id": st.text(SQS_CHARACTER, min_size=1, max_size=12),
        "sent_timestamp": st.integers(0, 253_402_300_799_999),
        "attributes": st.dictionaries(
            st.sampled_from(["relay-reason", "relay-dead-lettered-at", "trace-id"]),
            values,
            max_size=3,
        ),
        "group_id": st.sampled_from(["g-1", "exec!#$%&'()*+,-./:;<=>?@[]^_`{|}~"]),
    },
)
lines = st.one_of(
    good_records.map(json.dumps),
    good_records.map(lambda r: json.dumps(r, ensure_ascii=False)),
    records.map(json.dumps),
    records.map(lambda r: json.dumps(r, ensure_ascii=False)),
    st.text(ANY_CHARACTER, max_size=20),
    st.just('{"body": "{}", "body": "[]"}'),
)


@settings(max_examples=50, deadline=None)
@given(file_lines=st.lists(lines, min_size=1, max_size=4))
def test_replay_from_file_checks_every_line_before_sending(
    sync_sqs: SyncSQS, bystander: str, file_lines: list[str]
) -> None:
    """`replay --from-file` of any file: exit 2 with `FILE:LINE:` and nothing sent, or the whole
    file replayed (exit 0), never a traceback nor a part of the file."""
    queue_url, dlq_url = create_pair(sync_sqs)
    try:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "dlq.jsonl"
            path.write_bytes("\n".join(file_lines).encode("utf-8", errors="surrogatepass"))
            code, _, err = run(
                "replay", "--from-file", str(path), "--dry-run", "--queue-url", queue_url
            )
            again, out, _ = run(
                "replay", "--from-file", str(path), "--queue-url", queue_url, "--json"
            )
            assert again == code
            event(f"exit {code}")
            if code == 2:
                assert err.startswith(f"relay: {path}:")
                assert err.count("\n") == 1
                assert drain_sync(sync_sqs, queue_url) == Counter(), "sent part of a bad file"
            else:
                summary = json.loads(out)
                assert (code, summary["failed"]) == (0, 0)
                assert drain_sync(sync_sqs, queue_url).total() == summary["replayed"]
        assert drain_sync(sync_sqs, bystander) == Counter()
    finally:
        for url in (queue_url, dlq_url):
            sync_sqs.delete_queue(QueueUrl=url)
