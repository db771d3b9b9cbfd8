"""`relay dlq export` and the export file format `relay replay --from-file` reads back.

Each line is one JSON object, ASCII only (every line splitter agrees where a line ends):
`message_id`, `sent_timestamp` (milliseconds), `attributes` (String message attributes),
`group_id` on FIFO queues, `trace_header` when the message carried an X-Ray `AWSTraceHeader`
(DESIGN §12), and `body`, byte for byte.

A file read back may have been edited, truncated or written by something else: `read_export`
checks every line before anything is sent, against what SQS would accept, so a bad line is
one `FILE:LINE: what is wrong` (exit 2) rather than a failed send halfway through.

Writing one holds whole callback tokens: it goes to a temporary file beside the target (mode
0600), renamed over the target only when the DLQ was read to the end.
"""

import contextlib
import functools
import hashlib
import json
import os
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

from relay.config.dlq import ExportConfig
from relay.dead_letter import RELAY_PREFIX, DlqMessage
from relay.dlq.scan import ReadEnd, read_through
from relay.dlq.selection import ExecutionTally, Judging, in_states
from relay.errors import ConfigError, RelayError
from relay.executions import Verdict, open_execution_states
from relay.message import step_or_none
from relay.progress import ProgressView, Snapshot, no_progress
from relay.sqs.outgoing import text_problem
from relay.sqs.sizes import MAX_MESSAGE_BYTES, payload_size
from relay.tracing.context import usable_header

MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z, the last millisecond a date can show."""

MAX_ATTRIBUTES: Final = 10
"""SQS's limit of message attributes on one message."""

MAX_MESSAGE_ID_CHARS: Final = 256

_ATTRIBUTE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,256}")
_GROUP_ID = re.compile(r"[A-Za-z0-9!-/:-@\[-`{-~]{1,128}")
"""SQS's MessageGroupId: 1 to 128 alphanumerics and punctuation."""


class ExportWriteFailed(RelayError):
    """The export file could not be written (exit 1); an existing file is left as it was."""


def to_record(message: DlqMessage) -> dict[str, Any]:
    """One line of an export file."""
    record: dict[str, Any] = {
        "message_id": message.message_id,
        "sent_timestamp": message.sent_at_ms,
        "attributes": dict(message.attributes),
    }
    if message.group_id is not None:
        record["group_id"] = message.group_id
    if message.trace_header is not None:
        record["trace_header"] = message.trace_header
    record["body"] = message.body  # last, so the facts lead each line
    return record


def from_record(record: Any, where: str) -> DlqMessage:
    """Reads one export line back; ConfigError names the line and what is wrong.

    Everything a replay sends or reads is checked: what SQS would refuse, what a date or an id
    could not hold. The error texts name fields, never repeat their values.
    """
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: not a JSON object")
    body = record.get("body")
    if not isinstance(body, str) or not body:
        raise ConfigError(f"{where}: body must be a non-empty string")
    _check_text(body, "body", where)
    attributes = record.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ConfigError(f"{where}: attributes must map names to strings")
    if len(attributes) > MAX_ATTRIBUTES:
        raise ConfigError(f"{where}: attributes: {len(attributes)}, SQS allows {MAX_ATTRIBUTES}")
    for name, value in attributes.items():
        problem = _attribute_name_problem(name)
        if problem is not None:
            raise ConfigError(f"{where}: attribute name {_quoted(name)}: {problem}")
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: attribute {_quoted(name)}: must be a non-empty string")
        _check_text(value, f"attribute {_quoted(name)}", where)
    forwarded = {
        name: {"DataType": "String", "StringValue": value}
        for name, value in attributes.items()
        if not name.startswith(RELAY_PREFIX)
    }
    size = payload_size(body, forwarded)
    if size > MAX_MESSAGE_BYTES:
        raise ConfigError(f"{where}: body and attributes: {size} bytes, over SQS's 1 MiB")
    message_id = record.get("message_id")
    if message_id is None:
        # Without an id, the body's hash stands in (FIFO deduplication ids need one).
        message_id = hashlib.sha256(body.encode()).hexdigest()
    elif not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_CHARS:
        raise ConfigError(
            f"{where}: message_id must be a string of 1 to {MAX_MESSAGE_ID_CHARS} characters"
        )
    else:
        _check_text(message_id, "message_id", where)
    sent = record.get("sent_timestamp", 0)
    if not isinstance(sent, int) or isinstance(sent, bool) or not 0 <= sent <= MAX_TIMESTAMP_MS:
        raise ConfigError(
            f"{where}: sent_timestamp must be milliseconds since 1970, "
            f"0 to {MAX_TIMESTAMP_MS} (year 9999)"
        )
    group_id = record.get("group_id")
    if group_id is not None and (
        not isinstance(group_id, str) or not _GROUP_ID.fullmatch(group_id)
    ):
        raise ConfigError(
            f"{where}: group_id must be 1 to 128 letters, digits and punctuation (SQS's rule)"
        )
    trace_header = record.get("trace_header")
    if trace_header is not None and (
        not isinstance(trace_header, str) or usable_header(trace_header) != trace_header.strip()
    ):
        raise ConfigError(
            f"{where}: trace_header must be an X-Ray trace header (Root=1-...;Parent=...;"
            "Sampled=...) of printable ASCII"
        )
    return DlqMessage(
        message_id=message_id,
        body=body,
        attributes=attributes,
        sent_at_ms=sent,
        group_id=group_id,
        trace_header=trace_header.strip() if trace_header is not None else None,
    )


def _check_text(text: str, what: str, where: str) -> None:
    problem = text_problem(text)
    if problem is not None:
        raise ConfigError(f"{where}: {what}: {problem}")


def _attribute_name_problem(name: str) -> str | None:
    """What SQS would refuse in a message attribute's name, or None."""
    if _ATTRIBUTE_NAME.fullmatch(name) is None:
        return "must be 1 to 256 letters, digits, '_', '-' or '.'"
    if name.lower().startswith(("aws.", "amazon.")):
        return "'AWS.' and 'Amazon.' are reserved"
    if name.startswith(".") or name.endswith(".") or ".." in name:
        return "must not start or end with '.' or hold '..'"
    return None


def _quoted(text: str) -> str:
    """A name from the file, short and in ASCII (it goes into a one-line error)."""
    return ascii(text[:60])


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object hook refusing repeated keys: readers disagree on which one wins."""
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return document


def read_export(path: str) -> list[DlqMessage]:
    """Reads an export file (JSON Lines), checking every line before returning any; a line that
    is not a record is bad usage (exit 2)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None
    messages: list[DlqMessage] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line, object_pairs_hook=_unique_keys)
        except _DuplicateKey as exc:
            raise ConfigError(f"{where}: duplicate key {_quoted(exc.key)}") from None
        except (ValueError, RecursionError):
            # ValueError covers bytes that are not UTF-8 and integers past the digit limit.
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
    write_error: str | None = None
    """Why writing the temporary file failed (the rest was read, not written)."""
    saved: bool = False
    """The file at `out` is this export (renamed into place); False leaves what was there."""
    skipped_by_execution_state: int = 0
    """Messages read but not written: their execution is not in a state asked for."""
    executions: ExecutionTally | None = None
    """With `--execution-state`: every copy read, by its execution's state."""
    not_judged: int = 0
    """Copies whose execution was still being read when the command stopped (not written)."""

    @property
    def complete(self) -> bool:
        """Read to the end (or a limit the user set) and written, with no error or interruption."""
        return self.end.complete and self.write_error is None and not self.not_judged

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (`--json`)."""
        return {
            "dlq_url": self.dlq_url,
            "out": self.out,
            "written": self.written,
            "saved": self.saved,
            "complete": self.complete,
            "stopped_by": self.end.stopped_by,
            "read_error": self.end.read_error,
            "write_error": self.write_error,
            "by_reason": dict(self.by_reason.most_common()),
            "skipped_by_execution_state": self.skipped_by_execution_state,
            "executions": None if self.executions is None else self.executions.to_json(10),
            "release_errors": self.end.release_errors,
        }


class ExportFile:
    """An export being written: a temporary file beside the target, which `open_export` renames
    over the target on the way out if `keep` was set, and removes otherwise."""

    def __init__(self, path: Path, temporary: Path, file: IO[str]) -> None:
        self.path = path
        self.temporary = temporary
        self.file = file
        self.keep = False
        """Set when the export is whole: only then does it replace the target."""
        self.saved = False
        """The target is now this export."""

    def save(self) -> None:
        """Puts the whole export in place of the target, on disk before the rename and the
        rename on disk before this returns (`relay dlq purge` deletes only after it);
        `ExportWriteFailed` when it cannot, leaving an existing file as it was."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            # rename(2) replaces a symbolic link put there meanwhile; it never follows it.
            os.replace(self.temporary, self.path)
        except OSError as exc:
            raise ExportWriteFailed(
                f"cannot write {self.path}: {exc.strerror or exc}; "
                "an existing file is left as it was"
            ) from None
        self.saved = True
        with contextlib.suppress(OSError):  # the directory entry too, where the system allows
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)


@contextlib.contextmanager
def open_export(path: str) -> Iterator[ExportFile]:
    """The export file for writing, beside `path` (mode 0600, a name of its own, O_EXCL);
    renamed over `path` on the way out when `keep` is set, else removed, so `path` is either
    the whole new export or untouched.

    ConfigError (exit 2) when `path` is a symbolic link, not a regular file, or its directory
    cannot take the file; `ExportWriteFailed` (exit 1) when writing fails later.
    """
    target = Path(path)
    if target.is_symlink():
        raise ConfigError(f"{path} is a symbolic link: not written through; give the real path")
    if target.exists() and not target.is_file():
        raise ConfigError(f"{path} exists and is not a regular file")
    try:
        # mkstemp: O_CREAT|O_EXCL and mode 0600 whatever the umask: the file holds whole tokens.
        fd, temporary = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".partial", dir=target.parent
        )
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    export = ExportFile(target, Path(temporary), os.fdopen(fd, "w", encoding="utf-8", newline="\n"))
    try:
        yield export
        if export.keep and not export.saved:
            export.save()
    finally:
        if not export.saved:
            with contextlib.suppress(OSError):  # the first error is the one to report
                export.file.close()
            export.temporary.unlink(missing_ok=True)


async def dlq_export(
    config: ExportConfig, out: IO[str], progress: ProgressView = no_progress
) -> ExportSummary:
    """One JSON line per DLQ message (of those in the states `--execution-state` asks for) into
    `out`; every message is given back."""
    summary = ExportSummary(dlq_url=config.scan.dlq_url, out=config.out)
    started_at = time.time()

    def write(message: DlqMessage) -> None:
        if summary.write_error is not None:
            return  # the export is lost; reading goes on only to give every message back
        try:
            out.write(json.dumps(to_record(message)) + "\n")
        except OSError as exc:
            summary.write_error = f"{exc.strerror or exc}"
            return
        summary.written += 1
        summary.by_reason[message.reason] += 1

    def snapshot() -> Snapshot:
        return summary.written, None, f"{summary.written} written"

    if not config.execution_states:

        async def take(message: DlqMessage) -> None:
            write(message)

        summary.end = await read_through(config.scan, "dlq export", take, snapshot, progress)
        return summary

    tally = summary.executions = ExecutionTally()
    async with open_execution_states(config.reads) as states:
        judging = Judging(states)

        async def judged(message: DlqMessage, verdict: Verdict) -> None:
            step = step_or_none(message.body)
            tally.add(step.workflow_id if step else None, verdict, message.age_s(started_at))
            if in_states(config.execution_states, verdict):
                write(message)
            else:
                summary.skipped_by_execution_state += 1

        async def take_judged(message: DlqMessage) -> None:
            # The message's copy is in memory: it may be given back before it is judged.
            step = step_or_none(message.body)
            then = functools.partial(judged, message)
            await judging.judge(step, len(message.body), then)

        try:
            summary.end = await read_through(
                config.scan, "dlq export", take_judged, snapshot, progress, then=judging.finish
            )
        finally:
            await judging.cancel()  # only after an error is anything left to cancel
            summary.not_judged = judging.cancelled
        tally.read_from(states)
    return summary
