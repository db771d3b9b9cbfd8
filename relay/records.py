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
from relay.sqs import OutgoingMessage, is_fifo, open_sqs, send_messages


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
        try:
            parse(record.body)
        except InvalidMessage as exc:
            bad += 1
            echo(f"{record.line}: {exc.field}: {exc.rule}")
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


async def send_records(
    queue_url: str,
    records: Sequence[Record],
    *,
    validate: bool,
    echo: Callable[[str], None],
) -> tuple[int, int]:
    """Validates (unless told not to), then sends in batches; returns (sent, failed)."""
    fifo = is_fifo(queue_url)
    messages: list[OutgoingMessage] = []
    bad = 0
    for record in records:
        try:
            body = record.body.decode("utf-8")
        except UnicodeDecodeError:
            body = None
        step: StepResult | None = None
        if validate or fifo:
            try:
                step = parse(record.body)
            except InvalidMessage as exc:
                if validate:
                    bad += 1
                    echo(f"{record.line}: {exc.field}: {exc.rule}")
                    continue
        if body is None:
            bad += 1
            echo(f"{record.line}: body: not UTF-8; SQS carries text only")
            continue
        messages.append(_outgoing(body, step, fifo))
    if bad:
        # The job ran and found failures (exit 1), unlike bad usage (exit 2).
        raise RelayError(f"{bad} invalid record(s); nothing sent (--no-validate sends anyway)")
    async with open_sqs() as client:
        failures = await send_messages(client, queue_url, messages)
    if len(failures) == len(messages) > 0 and len({(f.code, f.message) for f in failures}) == 1:
        # The queue itself refused (missing, not allowed, unreachable): say so once, not per record.
        raise SendFailed(
            f"none of {len(messages)} record(s) sent to {queue_url}: "
            f"{failures[0].code}: {failures[0].message}"
        )
    for failure in failures:
        echo(f"{records[failure.index].line}: not sent: {failure.code}: {failure.message}")
    return len(messages) - len(failures), len(failures)


def _outgoing(body: str, step: StepResult | None, fifo: bool) -> OutgoingMessage:
    if not fifo:
        return OutgoingMessage(body=body)
    if step is None:
        import hashlib

        return OutgoingMessage(
            body=body, group_id="relay", deduplication_id=hashlib.sha256(body.encode()).hexdigest()
        )
    return OutgoingMessage(body=body, group_id=step.execution_id, deduplication_id=step.dedup_id())
