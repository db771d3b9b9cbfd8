"""JSON Lines files of step results: reading, offline validation, and sending to a queue
(`relay validate`, `relay send`)."""

import codecs
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from relay.errors import ConfigError, RelayError
from relay.message import InvalidMessage, Status, StepResult, parse
from relay.producer import PublishError, StepResultPublisher, message_for


class SendFailed(RelayError):
    """Nothing could be sent, for one reason shared by every record (exit 1)."""


@dataclass(frozen=True, slots=True)
class Record:
    """One non-blank line of a JSON Lines file, with its 1-based line number."""

    line: int
    body: bytes


def read_lines(path: str) -> list[Record]:
    """Reads a JSON Lines file ('-' = stdin); blank lines are skipped, not counted."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    # Some Windows editors start UTF-8 files with a byte order mark; it is not part of line 1.
    data = data.removeprefix(codecs.BOM_UTF8)
    return [
        Record(number, line.rstrip(b"\r"))
        for number, line in enumerate(data.split(b"\n"), start=1)
        if line.strip()
    ]


def validate_lines(records: Sequence[Record], echo: Callable[[str], None]) -> tuple[int, int]:
    """Prints `LINE: FIELD: rule` per bad record; returns (bad, total)."""
    bad = 0
    for record in records:
        verdict = _verdict(record.body)
        if verdict is not None:
            bad += 1
            echo(f"{record.line}: {verdict}")
    return bad, len(records)


def step_from_flags(
    workflow_id: str, execution_id: str, token: str, status: str, *, validate: bool
) -> Record:
    """One record from `relay send`'s four flags."""
    if validate:
        try:
            step = StepResult(workflow_id, execution_id, token, Status(status))
            return Record(0, step.to_body().encode())
        except InvalidMessage as exc:
            raise ConfigError(f"invalid result: {exc}") from None
    # Invalid values still make valid JSON, so the worker names the field that is wrong.
    fields = {"WorkflowId": workflow_id, "ExecutionId": execution_id, "Token": token}
    body = json.dumps({**fields, "Status": status}, separators=(",", ":"))
    return Record(0, body.encode())


def send_records(
    queue_url: str,
    records: Sequence[Record],
    *,
    validate: bool,
    echo: Callable[[str], None],
) -> tuple[int, int]:
    """Validates (unless told not to), then sends with the producer's publisher; returns
    (sent, failed)."""
    bodies: list[str] = []
    bad = 0
    for record in records:
        # Checked here rather than by the publisher, so that every bad line is reported.
        verdict = _verdict(record.body) if validate else None
        if verdict is None and not _is_text(record.body):
            verdict = "body: not UTF-8; SQS carries text only"
        if verdict is not None:
            bad += 1
            echo(f"{record.line}: {verdict}")
            continue
        bodies.append(record.body.decode("utf-8"))
    if bad:
        # The job ran and found failures (exit 1), unlike bad usage (exit 2).
        raise RelayError(f"{bad} invalid record(s); nothing sent (--no-validate sends anyway)")
    with StepResultPublisher(queue_url) as publisher:
        messages = [message_for(body, fifo=publisher.fifo) for body in bodies]
        try:
            publisher.send(messages)
        except PublishError as exc:
            failures = exc.failures
        else:
            failures = []
    if len(failures) == len(messages) > 0 and len({(f.code, f.message) for f in failures}) == 1:
        # The queue itself refused (missing, not allowed, unreachable): say so once, not per record.
        raise SendFailed(
            f"none of {len(messages)} record(s) sent to {queue_url}: "
            f"{failures[0].code}: {failures[0].message}"
        )
    for failure in failures:
        echo(f"{records[failure.index].line}: not sent: {failure.code}: {failure.message}")
    return len(messages) - len(failures), len(failures)


def _verdict(body: bytes) -> str | None:
    try:
        parse(body)
    except InvalidMessage as exc:
        return f"{exc.field}: {exc.rule}"
    return None


def _is_text(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
