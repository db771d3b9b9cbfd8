"""DLQ stats, export, import and replay (`relay dlq stats`, `relay dlq export`, `relay replay`).

Reading a DLQ changes nothing by itself. Each message read is held invisible while the scan
runs, so it is read once, and a heartbeat renews the lease while the command still needs it;
then it is either deleted, only after its replay succeeded, or made visible again at once.
Killed outright, the command loses nothing: held messages come back when their lease lapses,
and one re-enqueued but not yet deleted is at worst replayed twice (the worker absorbs that).
"""

import asyncio
import contextlib
import hashlib
import json
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Protocol

from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from relay.config import UNANNOTATED, ExportConfig, ReplayConfig, ScanConfig, StatsConfig
from relay.errors import ConfigError
from relay.limits import TokenBucket
from relay.message import InvalidMessage, StepResult, parse
from relay.outcomes import Action
from relay.sqs import (
    Coalescer,
    EntryFailed,
    OutgoingMessage,
    QueueOps,
    ReceivedMessage,
    error_code,
    is_fifo,
    iso_utc,
    open_sqs,
    receive_messages,
    send_messages,
)
from relay.transfer import CallbackFailed, RetryPolicy, TransferSender, open_transfer

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient
else:
    SQSClient = Any

RELAY_PREFIX: Final = "relay-"
RECEIVERS: Final = 4
"""Concurrent receives while scanning: one 10-message receive at a time is slow on real SQS."""
PENDING_BYTES_LIMIT: Final = 64 * 1024 * 1024
"""Bodies waiting for their replay; past it, reading waits for the replays to catch up."""
PLAIN_PROGRESS_EVERY_S: Final = 2.0

SQS_ERRORS: Final = (EntryFailed, ClientError, BotoCoreError, OSError)


# --- what a DLQ message says -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadMessage:
    """A DLQ message as replay sees it, read from the queue or from an export file."""

    message_id: str
    body: str
    attributes: Mapping[str, str]
    sent_at_ms: int
    group_id: str | None = None

    @classmethod
    def from_received(cls, message: ReceivedMessage) -> "DeadMessage":
        """From a message received from the DLQ."""
        return cls(
            message_id=message.message_id,
            body=message.body,
            attributes=dict(message.attributes),
            sent_at_ms=round(message.sent_at * 1000),
            group_id=message.group_id,
        )

    @property
    def reason(self) -> str:
        """`relay-reason`, or `unannotated` for a message SQS's own redrive moved."""
        return self.attributes.get("relay-reason") or UNANNOTATED

    @property
    def error_code(self) -> str | None:
        """`relay-error-code`, when relay dead-lettered it."""
        return self.attributes.get("relay-error-code")

    @property
    def source_queue(self) -> str | None:
        """`relay-source-queue`: where the worker read it."""
        return self.attributes.get("relay-source-queue") or None

    @property
    def dead_lettered_at(self) -> float | None:
        """Unix seconds of `relay-dead-lettered-at`; None when absent or unreadable."""
        return parse_time(self.attributes.get("relay-dead-lettered-at"))

    def age_s(self, now: float) -> float:
        """Seconds since it was dead-lettered (since it was sent, when that is unknown)."""
        moment = self.dead_lettered_at
        return now - (moment if moment is not None else self.sent_at_ms / 1000)

    def forwarded_attributes(self) -> dict[str, str]:
        """The attributes a replayed copy keeps: all but relay's own."""
        return {k: v for k, v in self.attributes.items() if not k.startswith(RELAY_PREFIX)}

    def to_record(self) -> dict[str, Any]:
        """One line of an export file."""
        record: dict[str, Any] = {
            "message_id": self.message_id,
            "sent_timestamp": self.sent_at_ms,
            "attributes": dict(self.attributes),
        }
        if self.group_id is not None:
            record["group_id"] = self.group_id
        record["body"] = self.body  # last, so the facts lead each line
        return record

    @classmethod
    def from_record(cls, record: Any, where: str) -> "DeadMessage":
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
        return cls(
            message_id=message_id,
            body=body,
            attributes=attributes,
            sent_at_ms=sent,
            group_id=group_id if isinstance(group_id, str) else None,
        )


def parse_time(text: str | None) -> float | None:
    """ISO 8601 (`...Z` or with an offset; naive means UTC) → Unix seconds; None if unreadable."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def step_of(body: str) -> StepResult | None:
    """The step result a body carries, or None when it is not one."""
    try:
        return parse(body)
    except InvalidMessage:
        return None


def selects(
    config: ReplayConfig, message: DeadMessage, workflow_id: str | None, now: float
) -> bool:
    """Whether the filters select this message: each given filter must match."""
    filters = config.filters
    if filters.reasons and message.reason not in filters.reasons:
        return False
    if filters.error_codes and message.error_code not in filters.error_codes:
        return False
    if filters.workflow_ids and workflow_id not in filters.workflow_ids:
        return False
    age = message.age_s(now)
    if filters.older_than_s is not None and age < filters.older_than_s:
        return False
    return filters.newer_than_s is None or age <= filters.newer_than_s


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
        messages.append(DeadMessage.from_record(record, where))
    return messages


# --- stopping ------------------------------------------------------------------------------


class Stopper:
    """SIGINT/SIGTERM: the first drains, a second abandons what is still in flight at once."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.abandon = asyncio.Event()
        self.reason = ""

    def __call__(self, reason: str = "stop") -> None:
        if self.stop.is_set():
            self.abandon.set()
            return
        self.reason = reason
        self.stop.set()


@contextlib.contextmanager
def handling_signals(stopper: Stopper) -> Iterator[None]:
    """SIGINT and SIGTERM call the stopper while open; the handlers are removed on the way out."""
    # Only the main thread may install handlers; a command run in a thread (tests) goes without.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopper, sig.name)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def wait_any(*events: asyncio.Event, timeout_s: float | None = None) -> None:
    """Waits until one of the events is set or the timeout passes."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def check_queue(sqs: SQSClient, queue_url: str, what: str) -> None:
    """ConfigError (exit 2) unless the queue exists and answers."""
    try:
        await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    except ClientError as exc:
        raise ConfigError(f"{what} {queue_url}: {error_code(exc)}") from None
    except BotoCoreError as exc:
        raise ConfigError(f"cannot reach SQS for {queue_url}: {exc}") from None


# --- reading a DLQ once through ----------------------------------------------------------------


@dataclass(slots=True)
class Lease:
    """A DLQ message this command holds invisible: its newest receipt handle, when renewed."""

    receipt_handle: str
    leased_at: float
    parked: bool = False
    """Done with, but held until the scan ends so it is not read again."""


class DlqReader:
    """Reads a DLQ once through and holds what it read until each is deleted or given back."""

    def __init__(self, sqs: SQSClient, config: ScanConfig, stopper: Stopper) -> None:
        self.sqs = sqs
        self.config = config
        self.stopper = stopper
        self.ops = QueueOps(sqs, config.dlq_url)
        self.scanning = False
        self.read = 0
        self.stopped_by = ""
        self.read_error: str | None = None
        self.release_errors = 0
        self.delete_errors = 0
        self._leases: dict[str, Lease] = {}
        self._seen: set[str] = set()
        self._budget = config.max_messages
        self._timed_out = False
        self._not_renewing = asyncio.Event()
        self._not_renewing.set()

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator["DlqReader"]:
        """Renews leases while open; on the way out gives back, visible at once, all still held."""
        heartbeat = asyncio.create_task(self._heartbeat(), name="dlq-heartbeat")
        try:
            yield self
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self.ops.drain()  # renewals already sent must land before the releases
            await self._release(list(self._leases))
            await self.ops.drain()

    async def scan(
        self,
        take: Callable[[DeadMessage], Awaitable[None]],
        *,
        more: Callable[[], bool] = lambda: True,
    ) -> None:
        """Reads until the DLQ looks empty, `max_messages` were read, `more()` says enough, the
        time bound passes or a stop; then gives back every message parked meanwhile."""
        self.scanning = True
        deadline = time.monotonic() + self.config.scan_timeout_s
        done = asyncio.Event()
        try:
            await asyncio.gather(
                *(self._receive_loop(take, more, deadline, done) for _ in range(RECEIVERS))
            )
        finally:
            self.scanning = False
            self.stopped_by = self._why_stopped(more)
            await self._release([mid for mid, lease in self._leases.items() if lease.parked])

    def _why_stopped(self, more: Callable[[], bool]) -> str:
        if self.stopper.stop.is_set():
            return f"signal ({self.stopper.reason})"
        if self.read_error is not None:
            return "receive error"
        if self._timed_out:
            return "scan timeout"
        if self.read >= self.config.max_messages or not more():
            return "max messages"
        return "empty"

    async def _receive_loop(
        self,
        take: Callable[[DeadMessage], Awaitable[None]],
        more: Callable[[], bool],
        deadline: float,
        done: asyncio.Event,
    ) -> None:
        # Bounded: every pass reads at least one message of a budget of `max_messages`, or ends
        # the loop; the deadline bounds it in time.
        while not (done.is_set() or self.stopper.stop.is_set()) and more():
            if time.monotonic() >= deadline:
                self._timed_out = True
                done.set()
                return
            want = min(10, self._budget)
            if want <= 0:
                return  # the others hold the rest of the budget; one of them carries on
            self._budget -= want
            try:
                messages = await receive_messages(
                    self.sqs,
                    self.config.dlq_url,
                    max_messages=want,
                    wait_s=self.config.receive_wait_s,
                    visibility_timeout_s=self.config.visibility_timeout_s,
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                self._budget += want
                self.read_error = f"{error_code(exc)}: {str(exc)[:300]}"
                done.set()
                return
            self._budget += want - len(messages)
            if not messages:
                # An empty long poll asked every SQS server: nothing visible is left.
                done.set()
                return
            now = time.monotonic()
            for message in messages:
                dead = self._hold(message, now)
                if dead is None:
                    continue
                if self.stopper.stop.is_set():
                    self._leases[message.message_id].parked = True  # read after the stop
                    continue
                await take(dead)

    def _hold(self, message: ReceivedMessage, now: float) -> DeadMessage | None:
        """Records the lease of a message read; returns it unless it was read before."""
        lease = self._leases.get(message.message_id)
        if lease is not None:
            # Read again: its lease lapsed (a missed renewal); only the newest handle works now.
            lease.receipt_handle = message.receipt_handle
            lease.leased_at = now
            return None
        self._leases[message.message_id] = Lease(message.receipt_handle, now)
        if message.message_id in self._seen:
            # Deleted already, and SQS (at least once) handed it out again: give it back.
            self._leases[message.message_id].parked = True
            return None
        self._seen.add(message.message_id)
        self.read += 1
        return DeadMessage.from_received(message)

    async def give_back(self, message_id: str) -> None:
        """Done with it, unchanged: visible again at once, or when the scan ends if it still runs
        (so the scan does not read it twice)."""
        lease = self._leases.get(message_id)
        if lease is None:
            return
        if self.scanning:
            lease.parked = True
        else:
            await self._release([message_id])

    async def delete(self, message_id: str) -> bool:
        """Deletes a message this command holds; False (and given back) when SQS did not."""
        lease = self._leases.pop(message_id, None)
        if lease is None:
            return False
        try:
            await self.ops.delete(lease.receipt_handle)
        except SQS_ERRORS:
            self.delete_errors += 1
            self._leases[message_id] = lease
            await self.give_back(message_id)
            return False
        return True

    async def _release(self, message_ids: Sequence[str]) -> None:
        """Visible again at once; a failure means the message comes back when its lease lapses."""
        # A renewal in flight could land after the release and hide the message again.
        await self._not_renewing.wait()
        leases = [lease for mid in message_ids if (lease := self._leases.pop(mid, None))]
        results = await asyncio.gather(
            *(self.ops.change_visibility(lease.receipt_handle, 0) for lease in leases),
            return_exceptions=True,
        )
        self.release_errors += sum(isinstance(r, BaseException) for r in results)

    async def _heartbeat(self) -> None:
        """Renews the lease of every held message well before it lapses."""
        timeout_s = self.config.visibility_timeout_s
        interval_s = timeout_s / 3
        # Runs as long as the command holds messages; `holding` cancels it on the way out.
        while True:
            await asyncio.sleep(min(interval_s, 5.0))
            now = time.monotonic()
            self._not_renewing.clear()
            try:
                due = [
                    lease for lease in self._leases.values() if now - lease.leased_at >= interval_s
                ]
                results = await asyncio.gather(
                    *(self.ops.change_visibility(lease.receipt_handle, timeout_s) for lease in due),
                    return_exceptions=True,
                )
            finally:
                self._not_renewing.set()
            for lease, result in zip(due, results, strict=True):
                if not isinstance(result, BaseException):
                    lease.leased_at = now


# --- progress ------------------------------------------------------------------------------

Snapshot = tuple[int, int | None, str]
"""(done, total or None, a line of counts) for the progress display."""


class Reporter:
    """Progress on stderr: a live bar on a terminal, otherwise a plain line every few seconds."""

    def __init__(self, label: str, snapshot: Callable[[], Snapshot]) -> None:
        self.label = label
        self.snapshot = snapshot
        self.console = Console(stderr=True, highlight=False)
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Reporter":
        show = self._live if self.console.is_terminal else self._plain
        self._task = asyncio.create_task(show(), name="progress")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if not self.console.is_terminal:
            self.console.print(f"{self.label}: {self.snapshot()[2]}", soft_wrap=True)

    async def _plain(self) -> None:
        last = ""
        # Runs until the command ends (`__aexit__` cancels it).
        while True:
            await asyncio.sleep(PLAIN_PROGRESS_EVERY_S)
            line = self.snapshot()[2]
            if line != last:
                self.console.print(f"{self.label}: {line}", soft_wrap=True)
                last = line

    async def _live(self) -> None:
        columns = (
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task(self.label, total=None, detail="")
            # Runs until the command ends (`__aexit__` cancels it).
            while True:
                done, total, detail = self.snapshot()
                progress.update(task, completed=done, total=total, detail=detail)
                await asyncio.sleep(0.1)


def _print_json(document: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def _time_text(moment: float | None) -> str | None:
    return None if moment is None else iso_utc(datetime.fromtimestamp(moment, UTC))


# --- dlq stats -----------------------------------------------------------------------------


@dataclass(slots=True)
class DlqStats:
    """What a DLQ holds, by reason, error code and workflow."""

    dlq_url: str
    messages: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    by_error_code: Counter[tuple[str, str]] = field(default_factory=Counter)
    by_workflow: Counter[str] = field(default_factory=Counter)
    without_workflow: int = 0
    oldest_dead_lettered_at: float | None = None
    newest_dead_lettered_at: float | None = None
    stopped_by: str = ""
    read_error: str | None = None
    release_errors: int = 0

    def add(self, message: DeadMessage) -> None:
        """Counts one message."""
        self.messages += 1
        self.by_reason[message.reason] += 1
        self.by_error_code[(message.reason, message.error_code or "-")] += 1
        step = step_of(message.body)
        if step is None:
            self.without_workflow += 1
        else:
            self.by_workflow[step.workflow_id] += 1
        moment = message.dead_lettered_at
        if moment is not None:
            oldest, newest = self.oldest_dead_lettered_at, self.newest_dead_lettered_at
            self.oldest_dead_lettered_at = moment if oldest is None else min(oldest, moment)
            self.newest_dead_lettered_at = moment if newest is None else max(newest, moment)

    @property
    def complete(self) -> bool:
        """Read to the end (or to a limit the user set), with no error or interruption."""
        return self.read_error is None and not self.stopped_by.startswith("signal")

    def to_json(self, top: int) -> dict[str, Any]:
        """The machine-readable form (`--json`)."""
        return {
            "dlq_url": self.dlq_url,
            "messages": self.messages,
            "complete": self.complete,
            "stopped_by": self.stopped_by,
            "read_error": self.read_error,
            "by_reason": dict(self.by_reason.most_common()),
            "by_error_code": [
                {"reason": reason, "error_code": None if code == "-" else code, "messages": n}
                for (reason, code), n in self.by_error_code.most_common()
            ],
            "workflows": len(self.by_workflow),
            "top_workflows": [
                {"workflow_id": workflow, "messages": n}
                for workflow, n in self.by_workflow.most_common(top)
            ],
            "without_workflow": self.without_workflow,
            "oldest_dead_lettered_at": _time_text(self.oldest_dead_lettered_at),
            "newest_dead_lettered_at": _time_text(self.newest_dead_lettered_at),
            "release_errors": self.release_errors,
        }


def dlq_stats(config: StatsConfig) -> DlqStats:
    """`relay dlq stats`: reads the whole DLQ, gives every message back, prints the counts."""
    stats = asyncio.run(_dlq_stats(config))
    if config.json_output:
        _print_json(stats.to_json(config.top))
    else:
        _print_stats(stats, config.top)
    return stats


async def _dlq_stats(config: StatsConfig) -> DlqStats:
    stats = DlqStats(dlq_url=config.scan.dlq_url)

    async def take(message: DeadMessage) -> None:
        stats.add(message)

    def snapshot() -> Snapshot:
        return stats.messages, None, f"{stats.messages} read"

    reader = await _read_through(config.scan, "dlq stats", take, snapshot)
    _take_ending(stats, reader)
    return stats


class _Ending(Protocol):
    stopped_by: str
    read_error: str | None
    release_errors: int


def _take_ending(summary: _Ending, reader: "DlqReader") -> None:
    """How the read ended, onto a summary (stats, export and replay report it alike)."""
    summary.stopped_by = reader.stopped_by
    summary.read_error = reader.read_error
    summary.release_errors = reader.release_errors


async def _read_through(
    scan: ScanConfig,
    label: str,
    take: Callable[[DeadMessage], Awaitable[None]],
    snapshot: Callable[[], Snapshot],
) -> "DlqReader":
    """Reads the whole DLQ once, hands each message to `take`, then makes it visible again:
    what `dlq stats` and `dlq export` share (neither changes the DLQ)."""
    stopper = Stopper()
    async with open_sqs(max_pool_connections=RECEIVERS + 16) as sqs:
        await check_queue(sqs, scan.dlq_url, "DLQ")
        with handling_signals(stopper):
            reader = DlqReader(sqs, scan, stopper)

            async def take_and_give_back(message: DeadMessage) -> None:
                await take(message)
                await reader.give_back(message.message_id)

            async with reader.holding(), Reporter(label, snapshot):
                await reader.scan(take_and_give_back)
    return reader


def _print_stats(stats: DlqStats, top: int) -> None:
    console = Console(highlight=False)
    console.print(f"DLQ {stats.dlq_url}: {stats.messages} message(s)", soft_wrap=True)
    table = Table()
    table.add_column("reason")
    table.add_column("error code")
    table.add_column("messages", justify="right")
    for (reason, code), count in sorted(
        stats.by_error_code.items(), key=lambda item: (-stats.by_reason[item[0][0]], item[0])
    ):
        table.add_row(reason, code, str(count))
    table.add_section()
    table.add_row("total", "", str(stats.messages))
    console.print(table)
    if stats.by_workflow or stats.without_workflow:
        workflows = Table(
            title=f"Top workflows ({len(stats.by_workflow)} in all)", title_justify="left"
        )
        workflows.add_column("workflow id")
        workflows.add_column("messages", justify="right")
        for workflow, count in stats.by_workflow.most_common(top):
            workflows.add_row(workflow, str(count))
        if stats.without_workflow:
            workflows.add_row("(not a step result)", str(stats.without_workflow))
        console.print(workflows)
    oldest = _time_text(stats.oldest_dead_lettered_at) or "-"
    newest = _time_text(stats.newest_dead_lettered_at) or "-"
    console.print(f"dead-lettered from {oldest} to {newest} (unannotated: unknown)", soft_wrap=True)
    console.print(_ending(stats.stopped_by, stats.read_error, stats.release_errors), soft_wrap=True)


def _ending(stopped_by: str, read_error: str | None, release_errors: int) -> str:
    text = f"read until: {stopped_by}"
    if read_error:
        text += f"; receive failed: {read_error}"
    if release_errors:
        text += (
            f"; {release_errors} message(s) could not be made visible at once "
            "(back after their visibility timeout)"
        )
    return text


# --- dlq export ----------------------------------------------------------------------------


@dataclass(slots=True)
class ExportSummary:
    """How an export went."""

    dlq_url: str
    out: str
    written: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    stopped_by: str = ""
    read_error: str | None = None
    release_errors: int = 0

    @property
    def complete(self) -> bool:
        """Read to the end (or a limit the user set), with no error or interruption."""
        return self.read_error is None and not self.stopped_by.startswith("signal")

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (`--json`)."""
        return {
            "dlq_url": self.dlq_url,
            "out": self.out,
            "written": self.written,
            "complete": self.complete,
            "stopped_by": self.stopped_by,
            "read_error": self.read_error,
            "by_reason": dict(self.by_reason.most_common()),
            "release_errors": self.release_errors,
        }


def dlq_export(config: ExportConfig) -> ExportSummary:
    """`relay dlq export`: one JSON line per DLQ message; every message is given back."""
    try:
        out = Path(config.out).open("w", encoding="utf-8", newline="\n")  # noqa: SIM115
    except OSError as exc:
        raise ConfigError(f"cannot write {config.out}: {exc.strerror or exc}") from None
    with out:
        summary = asyncio.run(_dlq_export(config, out))
    if config.json_output:
        _print_json(summary.to_json())
    else:
        console = Console(highlight=False)
        reasons = ", ".join(f"{r} {n}" for r, n in summary.by_reason.most_common()) or "none"
        console.print(
            f"exported {summary.written} message(s) to {summary.out} ({reasons})", soft_wrap=True
        )
        console.print(
            _ending(summary.stopped_by, summary.read_error, summary.release_errors),
            soft_wrap=True,
        )
    return summary


async def _dlq_export(config: ExportConfig, out: IO[str]) -> ExportSummary:
    summary = ExportSummary(dlq_url=config.scan.dlq_url, out=config.out)

    async def take(message: DeadMessage) -> None:
        # ASCII only: every line splitter agrees where a line ends (some split at U+2028).
        out.write(json.dumps(message.to_record()) + "\n")
        summary.written += 1
        summary.by_reason[message.reason] += 1

    def snapshot() -> Snapshot:
        return summary.written, None, f"{summary.written} written"

    reader = await _read_through(config.scan, "dlq export", take, snapshot)
    _take_ending(summary, reader)
    return summary


# --- replay --------------------------------------------------------------------------------


@dataclass(slots=True)
class ReplaySummary:
    """What a replay did; `ok` when everything selected was replayed."""

    source: str
    destination: str
    dry_run: bool
    read: int = 0
    selected: int = 0
    replayed: int = 0
    skipped_by_filter: int = 0
    skipped_over_limit: int = 0
    not_deleted: int = 0
    """Replayed, but the DLQ copy could not be deleted: it will be replayed again next time."""
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    failure_details: dict[str, str] = field(default_factory=dict)
    """The first error text seen for each failure reason."""
    selected_by_reason: Counter[str] = field(default_factory=Counter)
    selected_by_workflow: Counter[str] = field(default_factory=Counter)
    replayed_by_reason: Counter[str] = field(default_factory=Counter)
    interrupted: bool = False
    stopped_by: str = ""
    read_error: str | None = None
    release_errors: int = 0
    duration_s: float = 0.0

    @property
    def failed(self) -> int:
        """Selected messages whose replay failed (they stay in the DLQ)."""
        return sum(self.failed_by_reason.values())

    @property
    def abandoned(self) -> int:
        """Selected messages not tried because the command was stopped (they stay in the DLQ)."""
        return 0 if self.dry_run else self.selected - self.replayed - self.failed

    @property
    def ok(self) -> bool:
        """Everything selected was replayed and taken off the DLQ."""
        return not (self.failed or self.abandoned or self.not_deleted or self.read_error)

    def fail(self, reason: str, detail: str) -> None:
        """Counts one failed replay."""
        self.failed_by_reason[reason] += 1
        self.failure_details.setdefault(reason, detail[:300])

    def progress(self) -> Snapshot:
        """For the progress display."""
        done = self.replayed + self.failed
        line = (
            f"{self.read} read, {self.selected} selected, {self.replayed} replayed, "
            f"{self.failed} failed, {self.skipped_by_filter} skipped"
        )
        if self.dry_run:
            return self.selected, None, line
        return done, self.selected or None, line

    def to_json(self) -> dict[str, Any]:
        """The machine-readable form (`--json`): one object."""
        return {
            "source": self.source,
            "destination": self.destination,
            "dry_run": self.dry_run,
            "ok": self.ok,
            "read": self.read,
            "selected": self.selected,
            "replayed": self.replayed,
            "skipped_by_filter": self.skipped_by_filter,
            "skipped_over_limit": self.skipped_over_limit,
            "failed": self.failed,
            "failed_by_reason": dict(self.failed_by_reason.most_common()),
            "failure_details": self.failure_details,
            "abandoned": self.abandoned,
            "not_deleted": self.not_deleted,
            "selected_by_reason": dict(self.selected_by_reason.most_common()),
            "selected_by_workflow": dict(self.selected_by_workflow.most_common()),
            "replayed_by_reason": dict(self.replayed_by_reason.most_common()),
            "interrupted": self.interrupted,
            "stopped_by": self.stopped_by,
            "read_error": self.read_error,
            "release_errors": self.release_errors,
            "duration_s": round(self.duration_s, 3),
        }


class Replayer:
    """Replays selected messages with bounded concurrency and rate; finishes each one once.

    A DLQ message is deleted only after its replay succeeded: accepted by the destination
    queue, or answered 200 by Transfer Family. Any other end gives it back, visible at once.
    """

    def __init__(
        self,
        config: ReplayConfig,
        summary: ReplaySummary,
        stopper: Stopper,
        *,
        sqs: SQSClient,
        sender: TransferSender | None,
        reader: DlqReader | None,
    ) -> None:
        self.config = config
        self.summary = summary
        self.stopper = stopper
        self.sqs = sqs
        self.sender = sender
        self.reader = reader
        self.bucket = TokenBucket(config.rate, burst=1)
        self.started_at = time.time()
        """Ages are measured from the command's start, so one run applies one cut-off."""
        self._queue: asyncio.Queue[DeadMessage | None] = asyncio.Queue()
        self._pending_bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self._senders: dict[str, Coalescer[OutgoingMessage]] = {}
        self._denied: set[str] = set()

    def wants_more(self) -> bool:
        """Whether reading should go on: fewer than `--max-messages` selected so far."""
        return self.summary.selected < self.config.max_messages

    async def run(self, read: Callable[[], Awaitable[None]]) -> None:
        """Reads (offering each message), replays what was selected, drains on a stop."""
        workers = [
            asyncio.create_task(self._work(), name=f"replay-{i}")
            for i in range(0 if self.config.dry_run else self.config.concurrency)
        ]
        try:
            await read()
        finally:
            for _ in workers:
                self._queue.put_nowait(None)  # one end marker each
            await self._finish(workers)

    async def _finish(self, workers: list[asyncio.Task[None]]) -> None:
        """Waits for the replays; after a stop, in-flight ones get the grace, a second signal
        or the grace's end cancels them (their messages are given back)."""
        if workers:
            finished = asyncio.ensure_future(asyncio.wait(workers))
            stopped = asyncio.ensure_future(self.stopper.stop.wait())
            await asyncio.wait([finished, stopped], return_when=asyncio.FIRST_COMPLETED)
            if not finished.done():
                abandon = asyncio.ensure_future(self.stopper.abandon.wait())
                await asyncio.wait(
                    [finished, abandon],
                    timeout=self.config.shutdown_grace_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                abandon.cancel()
            stopped.cancel()
            for worker in workers:
                worker.cancel()
            await asyncio.gather(finished, stopped, *workers, return_exceptions=True)
        await asyncio.gather(*(sender.drain() for sender in self._senders.values()))

    async def offer(self, message: DeadMessage) -> None:
        """Takes one message read: a selected one queues for replay, the rest go back."""
        summary = self.summary
        summary.read += 1
        step = step_of(message.body)
        workflow_id = step.workflow_id if step is not None else None
        if not selects(self.config, message, workflow_id, self.started_at):
            summary.skipped_by_filter += 1
            await self._give_back(message)
            return
        if not self.wants_more():
            summary.skipped_over_limit += 1
            await self._give_back(message)
            return
        summary.selected += 1
        summary.selected_by_reason[message.reason] += 1
        summary.selected_by_workflow[workflow_id or "-"] += 1
        if self.config.dry_run:
            await self._give_back(message)
            return
        # Bodies wait in memory; past a bound, reading waits for the replays to catch up.
        # Bounded: each pass waits for room or a stop, and the workers keep making room.
        while self._pending_bytes > PENDING_BYTES_LIMIT and not self.stopper.stop.is_set():
            self._room.clear()
            await wait_any(self._room, self.stopper.stop)
        self._pending_bytes += len(message.body)
        self._queue.put_nowait(message)

    async def _work(self) -> None:
        """One of `--concurrency` replayers: takes queued messages until its end marker."""
        # Bounded: the queue holds what was read (at most `--max-messages` selected) and ends
        # with one marker per worker.
        while (message := await self._queue.get()) is not None:
            self._pending_bytes -= len(message.body)
            if self._pending_bytes <= PENDING_BYTES_LIMIT:
                self._room.set()
            # After a stop, nothing new starts: the rest goes back at once.
            if self.stopper.stop.is_set() or not await self._token():
                await self._give_back(message)
                continue
            failure = await self._replay(message)
            if failure is None:
                self.summary.replayed += 1
                self.summary.replayed_by_reason[message.reason] += 1
                if self.reader is not None and not await self.reader.delete(message.message_id):
                    self.summary.not_deleted += 1
            else:
                self.summary.fail(*failure)
                await self._give_back(message)

    async def _token(self) -> bool:
        """Waits for the rate limit's next token; False when a stop comes first."""
        # Bounded: each pass takes a token or sleeps exactly until the next one is due.
        while (wait_s := self.bucket.try_take()) > 0:
            await wait_any(self.stopper.stop, timeout_s=wait_s)
            if self.stopper.stop.is_set():
                return False
        return True

    async def _give_back(self, message: DeadMessage) -> None:
        if self.reader is not None:
            await self.reader.give_back(message.message_id)

    async def _replay(self, message: DeadMessage) -> tuple[str, str] | None:
        """Replays one message; None when it succeeded, else (reason, detail)."""
        if self.sender is not None:
            return await self._to_transfer(message, self.sender)
        return await self._to_queue(message)

    async def _to_queue(self, message: DeadMessage) -> tuple[str, str] | None:
        queue_url = self.config.queue_url or message.source_queue
        if queue_url is None:
            return "no_destination", "no relay-source-queue attribute: pass --queue-url"
        try:
            await self._sender(queue_url).submit(_requeued(message, queue_url))
        except EntryFailed as exc:
            return "send_failed", f"{queue_url}: {exc}"
        except (ClientError, BotoCoreError, OSError) as exc:
            return "send_failed", f"{queue_url}: {error_code(exc)}: {exc}"
        return None

    def _sender(self, queue_url: str) -> Coalescer[OutgoingMessage]:
        """Sends to one destination queue, batched like the worker's dead-letter copies."""
        sender = self._senders.get(queue_url)
        if sender is None:

            async def send(
                entries: list[tuple[str, OutgoingMessage]],
            ) -> dict[str, tuple[str, str]]:
                failures = await send_messages(self.sqs, queue_url, [m for _, m in entries])
                return {entries[f.index][0]: (f.code, f.message) for f in failures}

            sender = self._senders[queue_url] = Coalescer("replay", send)
        return sender

    async def _to_transfer(
        self, message: DeadMessage, sender: TransferSender
    ) -> tuple[str, str] | None:
        try:
            step = parse(message.body)
        except InvalidMessage as exc:
            return "validation", str(exc)
        if step.workflow_id in self._denied:
            # One AccessDenied is an IAM mistake: the workflow's other messages wait for the fix.
            return "access_denied", f"workflow {step.workflow_id} answered AccessDeniedException"
        try:
            await sender.send(step)
        except CallbackFailed as failed:
            error = failed.error
            detail = f"{error.code}: {error.message}"
            if error.rule.action is Action.CIRCUIT:
                self._denied.add(step.workflow_id)
                return "access_denied", detail
            if error.rule.action is Action.DEAD_LETTER and error.rule.reason is not None:
                return error.rule.reason.value, detail
            return "retries_exhausted", f"{detail} after {failed.attempts} attempt(s)"
        return None


def _requeued(message: DeadMessage, queue_url: str) -> OutgoingMessage:
    """The copy put back on a queue: the body verbatim, without relay's attributes."""
    attributes = message.forwarded_attributes()
    if not is_fifo(queue_url):
        return OutgoingMessage(body=message.body, attributes=attributes)
    step = step_of(message.body)
    group_id = message.group_id or (step.execution_id if step is not None else None) or "relay"
    # One id per DLQ message, the same on every run: a re-run after an interruption is
    # deduplicated. Not the producer's id (a hash of the four fields), which would make SQS
    # drop a replay sent within 5 minutes of the original.
    dedup = "replay-" + hashlib.sha256(message.message_id.encode()).hexdigest()
    return OutgoingMessage(
        body=message.body, attributes=attributes, group_id=group_id, deduplication_id=dedup
    )


def run_replay(config: ReplayConfig) -> ReplaySummary:
    """`relay replay`: runs to the end or a signal, shows progress, prints the summary."""
    # A bad export file is bad usage: said before anything is read or sent.
    records = read_export(config.from_file) if config.from_file is not None else None
    summary = asyncio.run(_replay(config, records))
    if config.json_output:
        _print_json(summary.to_json())
    else:
        _print_replay(summary, config.top)
    return summary


async def _replay(config: ReplayConfig, records: list[DeadMessage] | None) -> ReplaySummary:
    started = time.monotonic()
    if config.to == "transfer":
        destination = "transfer"
    else:
        destination = f"queue {config.queue_url or '(each relay-source-queue)'}"
    source = config.from_file if config.scan is None else config.scan.dlq_url
    summary = ReplaySummary(source=str(source), destination=destination, dry_run=config.dry_run)
    stopper = Stopper()
    reader: DlqReader | None = None
    async with contextlib.AsyncExitStack() as stack:
        sqs = await stack.enter_async_context(
            open_sqs(max_pool_connections=RECEIVERS + config.concurrency + 16)
        )
        sender: TransferSender | None = None
        if config.to == "transfer" and not config.dry_run:
            transfer = await stack.enter_async_context(
                open_transfer(
                    max_pool_connections=config.concurrency, call_timeout_s=config.call_timeout_s
                )
            )
            sender = TransferSender(transfer, RetryPolicy())
        if config.queue_url and not config.dry_run:
            await check_queue(sqs, config.queue_url, "destination queue")
        # Signals first: a Ctrl-C while held messages are given back must not cut that short.
        stack.enter_context(handling_signals(stopper))
        if config.scan is not None:
            await check_queue(sqs, config.scan.dlq_url, "DLQ")
            reader = await stack.enter_async_context(DlqReader(sqs, config.scan, stopper).holding())
        replayer = Replayer(config, summary, stopper, sqs=sqs, sender=sender, reader=reader)
        await stack.enter_async_context(Reporter("replay", summary.progress))

        async def read() -> None:
            if reader is not None:
                await reader.scan(replayer.offer, more=replayer.wants_more)
                return
            # Bounded: one pass per record of the file.
            for record in records or []:
                if stopper.stop.is_set() or not replayer.wants_more():
                    break
                await replayer.offer(record)

        await replayer.run(read)
    summary.interrupted = stopper.stop.is_set()
    if reader is not None:
        _take_ending(summary, reader)
    else:
        summary.stopped_by = f"signal ({stopper.reason})" if summary.interrupted else "end of file"
    summary.duration_s = time.monotonic() - started
    return summary


def _print_replay(summary: ReplaySummary, top: int) -> None:
    console = Console(highlight=False)
    title = f"Replay from {summary.source} to {summary.destination}"
    console.print(title + (" (dry run)" if summary.dry_run else ""), soft_wrap=True)
    table = Table()
    table.add_column("")
    table.add_column("messages", justify="right")
    table.add_column("detail")
    table.add_row("read", str(summary.read), "")
    table.add_row("skipped by filter", str(summary.skipped_by_filter), "")
    if summary.skipped_over_limit:
        table.add_row("skipped, over --max-messages", str(summary.skipped_over_limit), "")
    table.add_row("selected", str(summary.selected), "")
    if summary.dry_run:
        table.add_row("would replay", str(summary.selected), "nothing was changed")
    else:
        table.add_row("replayed", str(summary.replayed), "")
        for reason, count in summary.failed_by_reason.most_common():
            table.add_row(f"failed: {reason}", str(count), summary.failure_details.get(reason, ""))
        if summary.abandoned:
            table.add_row("not tried (stopped)", str(summary.abandoned), "left in the DLQ")
        if summary.not_deleted:
            table.add_row("replayed, not deleted", str(summary.not_deleted), "still in the DLQ")
    console.print(table)
    if summary.selected:
        by = Table(
            title="Would replay" if summary.dry_run else "Selected",
            title_justify="left",
        )
        by.add_column("reason / workflow")
        by.add_column("messages", justify="right")
        for reason, count in summary.selected_by_reason.most_common():
            by.add_row(reason, str(count))
        by.add_section()
        for workflow, count in summary.selected_by_workflow.most_common(top):
            by.add_row("(not a step result)" if workflow == "-" else workflow, str(count))
        hidden = len(summary.selected_by_workflow) - top
        if hidden > 0:
            by.add_row(f"… {hidden} more workflow(s)", "")
        console.print(by)
    ending = _ending(summary.stopped_by, summary.read_error, summary.release_errors)
    console.print(ending, soft_wrap=True)
