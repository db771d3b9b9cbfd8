"""`relay dlq export` and the export file format `relay replay --from-file` reads back.

Each line is one JSON object, ASCII only (every line splitter agrees where a line ends):
`message_id`, `sent_timestamp` (milliseconds), `attributes` (String message attributes),
`group_id` on FIFO queues, and `body`, byte for byte.
"""

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from relay.config import ExportConfig
from relay.dead_letter import DeadMessage
from relay.dlq.scan import ReadEnd, read_through
from relay.errors import ConfigError
from relay.terminal import ProgressView, Snapshot, no_progress


def to_record(message: DeadMessage) -> dict[str, Any]:
    """One line of an export file."""
    record: dict[str, Any] = {
        "message_id": message.message_id,
        "sent_timestamp": message.sent_at_ms,
        "attributes": dict(message.attributes),
    }
    if message.group_id is not None:
        record["group_id"] = message.group_id
    record["body"] = message.body  # last, so the facts lead each line
    return record


def from_record(record: Any, where: str) -> DeadMessage:
    """Reads one export line back; ConfigError names the line and what is wrong."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: not a JSON object")
    body = record.get("body")
    if not isinstance(body, str):
        raise ConfigError(f"{where}: body must be a string")
    attributes = record.get("attributes", {})
    if not isinstance(attributes, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()
    ):
        raise ConfigError(f"{where}: attributes must map names to strings")
    message_id = record.get("message_id")
    if not isinstance(message_id, str) or not message_id:
        # Without an id, the body's hash stands in (FIFO deduplication ids need one).
        message_id = hashlib.sha256(body.encode()).hexdigest()
    sent = record.get("sent_timestamp", 0)
    if not isinstance(sent, int) or isinstance(sent, bool):
        raise ConfigError(f"{where}: sent_timestamp must be milliseconds since 1970")
    group_id = record.get("group_id")
    return DeadMessage(
        message_id=message_id,
        body=body,
        attributes=attributes,
        sent_at_ms=sent,
        group_id=group_id if isinstance(group_id, str) else None,
    )


def read_export(path: str) -> list[DeadMessage]:
    """Reads an export file (JSON Lines); a line that is not a record is bad usage (exit 2)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    messages: list[DeadMessage] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):
            raise ConfigError(f"{where}: not valid JSON") from None
        messages.append(from_record(record, where))
    return messages


@dataclass(slots=True)
class ExportSummary:
    """How an export went."""

    dlq_url: str
    out: str
    written: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    end: ReadEnd = field(default_factory=ReadEnd)

    @property
    def complete(self) -> bool:
        """Read to the end (or a limit the user set), with no error or interruption."""
        return self.end.complete

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (`--json`)."""
        return {
            "dlq_url": self.dlq_url,
            "out": self.out,
            "written": self.written,
            "complete": self.complete,
            "stopped_by": self.end.stopped_by,
            "read_error": self.end.read_error,
            "by_reason": dict(self.by_reason.most_common()),
            "release_errors": self.end.release_errors,
        }


def open_export(path: str) -> IO[str]:
    """The export file, opened for writing (replaced); ConfigError when it cannot be."""
    try:
        return Path(path).open("w", encoding="utf-8", newline="\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


async def dlq_export(
    config: ExportConfig, out: IO[str], progress: ProgressView = no_progress
) -> ExportSummary:
    """One JSON line per DLQ message into `out`; every message is given back."""
    summary = ExportSummary(dlq_url=config.scan.dlq_url, out=config.out)

    async def take(message: DeadMessage) -> None:
        out.write(json.dumps(to_record(message)) + "\n")
        summary.written += 1
        summary.by_reason[message.reason] += 1

    def snapshot() -> Snapshot:
        return summary.written, None, f"{summary.written} written"

    summary.end = await read_through(config.scan, "dlq export", take, snapshot, progress)
    return summary
