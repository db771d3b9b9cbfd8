"""DESIGN §11: which DLQ copies can still help, because their execution still waits.

A custom step waits at most its `TimeoutSeconds` (1 to 1800 s); then Transfer Family runs the
workflow's exception steps and no callback can help that execution. Transfer Family says which
executions still wait: `ListExecutions` lists a workflow's executions in progress (paged, up to
1000 a page, a page may hold fewer), and `DescribeExecution` answers only for one in progress.

A copy's execution is, for the DLQ tools:

- `waiting`: listed, or described, as `IN_PROGRESS`;
- `finished`: its workflow was read and the execution is not in progress (not listed,
  `DescribeExecution` answered `ResourceNotFoundException` or another status, or Transfer Family
  does not know the workflow at all);
- `unknown`: it could not be read (the permission refused, throttling past the retry budget, a
  service or connection error), the copy is not a step result (a `validation` copy has no
  execution), or reading was turned off (`--no-executions`).

What it costs, per workflow, for one command's run: `DescribeExecution` for each of its copies'
distinct executions when there are at most `describe_up_to` (3) of them, else one listing of
every page, ceil(in progress / 1000) calls, which cannot be known before the first page. Every
answer is kept for the run, so a copy whose execution was read is answered again for free.
Throttling and 5xx are retried with backoff (`ExecutionReads.retry`). `AccessDeniedException`
makes that workflow `unknown`; any other failure past the retries makes it `unknown` and stops
the reads for the rest of the run (every copy not yet read is then `unknown` without a call):
a throttled or failing API is not asked again and again. Each is said once (logged at WARNING,
and in `notes()`), naming the permission or the error; nothing here ever stops the command.

`decide` and the `from_*` functions are the rules, pure; `ExecutionStates` does the reading.
"""

import asyncio
import contextlib
import functools
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, Protocol, TypeVar

from relay.config.dlq import ExecutionReads
from relay.lifecycle import cancel_and_wait
from relay.message import StepResult
from relay.transfer import CallbackError, ExecutionPage, open_transfer
from relay.transfer.sender import retrying

T = TypeVar("T")

log = logging.getLogger(__name__)

IN_PROGRESS: Final = "IN_PROGRESS"
MAX_RESULTS: Final = 1000
"""`ListExecutions`' largest page, asked for every time: fewest calls."""
MAX_PAGES: Final = 2000
"""Pages read of one workflow's listing at most (2 million executions at full pages): an
endpoint that hands out new tokens without end makes that workflow `unknown`, not a hang."""
NOTE_WORKFLOWS: Final = 5
"""Workflows named in a note; the rest are counted."""


class ExecutionState(StrEnum):
    """A DLQ copy's execution, as the DLQ tools see it (DESIGN §11)."""

    WAITING = "waiting"
    FINISHED = "finished"
    UNKNOWN = "unknown"


class Read(StrEnum):
    """How a workflow's executions are read; the value is the operation."""

    LIST = "ListExecutions"
    DESCRIBE = "DescribeExecution"


class Why(StrEnum):
    """Why a copy's execution is in its state: the words summaries count by."""

    IN_PROGRESS = "in_progress"
    NOT_IN_PROGRESS = "not_in_progress"
    WORKFLOW_NOT_FOUND = "workflow_not_found"
    NOT_A_STEP_RESULT = "not_a_step_result"
    NOT_CHECKED = "not_checked"
    ACCESS_DENIED = "access_denied"
    THROTTLED = "throttled"
    READ_FAILED = "read_failed"
    READS_STOPPED = "reads_stopped"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A copy's execution state, and why."""

    state: ExecutionState
    why: Why


WAITING: Final = Verdict(ExecutionState.WAITING, Why.IN_PROGRESS)
NOT_IN_PROGRESS: Final = Verdict(ExecutionState.FINISHED, Why.NOT_IN_PROGRESS)
WORKFLOW_NOT_FOUND: Final = Verdict(ExecutionState.FINISHED, Why.WORKFLOW_NOT_FOUND)
NOT_A_STEP_RESULT: Final = Verdict(ExecutionState.UNKNOWN, Why.NOT_A_STEP_RESULT)
NOT_CHECKED: Final = Verdict(ExecutionState.UNKNOWN, Why.NOT_CHECKED)
READS_STOPPED: Final = Verdict(ExecutionState.UNKNOWN, Why.READS_STOPPED)


# --- the rules -----------------------------------------------------------------------------------


def decide(executions: int, describe_up_to: int) -> Read:
    """How to read a workflow whose copies name this many distinct executions: describing each
    costs that many calls, a listing at least one (one per 1000 in progress)."""
    return Read.DESCRIBE if executions <= describe_up_to else Read.LIST


def from_status(status: str) -> Verdict:
    """An execution's status as Transfer Family gives it: only `IN_PROGRESS` still waits (one
    `HANDLING_EXCEPTION` is running its exception steps: its step has timed out or failed)."""
    return WAITING if status == IN_PROGRESS else NOT_IN_PROGRESS


def from_listing(in_progress: Mapping[str, str], execution_id: str) -> Verdict:
    """An execution against its workflow's whole listing (execution id to status)."""
    status = in_progress.get(execution_id)
    return NOT_IN_PROGRESS if status is None else from_status(status)


def from_failure(read: Read, code: str) -> Verdict:
    """A read that failed with this code after its retries."""
    if code == "ResourceNotFoundException":
        # Listing: the workflow does not exist (so nothing of it runs); describing: the
        # execution is not in progress. Either way no callback can help.
        return WORKFLOW_NOT_FOUND if read is Read.LIST else NOT_IN_PROGRESS
    if code == "AccessDeniedException":
        return Verdict(ExecutionState.UNKNOWN, Why.ACCESS_DENIED)
    if code == "ThrottlingException":
        return Verdict(ExecutionState.UNKNOWN, Why.THROTTLED)
    return Verdict(ExecutionState.UNKNOWN, Why.READ_FAILED)


def stops_reads(verdict: Verdict) -> bool:
    """Whether a failure is about the service rather than one workflow: reading stops."""
    return verdict.why in (Why.THROTTLED, Why.READ_FAILED)


# --- the reading ---------------------------------------------------------------------------------


class ExecutionReader(Protocol):
    """What the reading needs of a client (`relay.transfer.AioTransferClient`): both raise
    `CallbackError` on any failure."""

    async def list_executions(
        self, *, workflow_id: str, next_token: str | None = None, max_results: int = MAX_RESULTS
    ) -> ExecutionPage:
        """One page of the workflow's executions in progress."""

    async def describe_execution(self, *, workflow_id: str, execution_id: str) -> str:
        """The execution's status."""


@dataclass(slots=True)
class _Workflow:
    """What is known of one workflow's copies and how it is read."""

    workflow_id: str
    executions: set[str] = field(default_factory=set)
    decided: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once it is known how it is read: listed (`listing`) or described per execution."""
    listing: "asyncio.Task[dict[str, str] | Verdict] | None" = None
    failure: Verdict | None = None
    """Set when a read of it failed as `unknown`: its other copies get it without a call."""


class ExecutionStates:
    """Answers "is this copy's execution still waiting?" for one command's run, with a bounded
    number of calls (the module's rule), each answer kept for the run.

    A caller that sees every copy before asking (`dlq stats`, an export file) says so with
    `expect(steps, complete=True)`, and each workflow is read the cheaper way at once. A caller
    reading a DLQ as a stream just asks: a workflow's first `describe_up_to` executions wait in
    `state` until a next one comes (then the workflow is listed) or the caller says
    `all_known()` (then they are described), so the calls are those the counts call for. Such a
    caller asks from a task of its own per copy, never from its reading loop, and says
    `all_known()` once reading ends. With no reader, every copy is `unknown` (`not_checked`).
    """

    def __init__(self, reader: ExecutionReader | None, reads: ExecutionReads) -> None:
        self._reader = reader
        self._reads = reads
        self._workflows: dict[str, _Workflow] = {}
        self._described: dict[tuple[str, str], asyncio.Task[Verdict]] = {}
        self._all_known = False
        self._stopped: str | None = None
        self._semaphore = asyncio.Semaphore(reads.concurrency)
        self._tasks: set[asyncio.Task[object]] = set()
        self._refused: dict[tuple[str, str], list[str]] = {}
        self._not_found: list[str] = []
        self.calls: Counter[str] = Counter()
        """Calls made, by operation (every attempt, retries included)."""
        self.throttled: Counter[str] = Counter()
        """Of those, the ones answered ThrottlingException."""

    @property
    def checking(self) -> bool:
        """Whether Transfer Family is asked at all."""
        return self._reader is not None

    def expect(self, steps: Iterable[StepResult], *, complete: bool) -> None:
        """Copies that will be asked about; `complete`: no others will be."""
        if self._reader is None:
            return
        for step in steps:
            self._workflow(step.workflow_id).executions.add(step.execution_id)
        if complete:
            self.all_known()
        else:
            for workflow in self._workflows.values():
                self._maybe_decide(workflow)

    def all_known(self) -> None:
        """No copy of a new execution will be asked about: read the undecided workflows."""
        self._all_known = True
        self.decide_now()

    def decide_now(self) -> None:
        """Read the workflows still undecided as their counts so far say (a caller holding too
        many copies waiting cannot wait for the end of its reading)."""
        for workflow in list(self._workflows.values()):
            self._maybe_decide(workflow, now=True)

    async def state(self, step: StepResult | None) -> Verdict:
        """The state of this copy's execution (None: the copy is not a step result)."""
        if self._reader is None:
            return NOT_CHECKED
        if step is None:
            return NOT_A_STEP_RESULT
        workflow = self._workflow(step.workflow_id)
        workflow.executions.add(step.execution_id)
        self._maybe_decide(workflow)
        await workflow.decided.wait()
        if workflow.listing is not None:
            # Shielded: a caller cancelled must not cancel a read other copies wait on.
            listing = await asyncio.shield(workflow.listing)
            return (
                listing
                if isinstance(listing, Verdict)
                else from_listing(listing, step.execution_id)
            )
        key = (step.workflow_id, step.execution_id)
        described = self._described.get(key)
        if described is None:
            described = self._described[key] = self._spawn(self._describe(*key))
        return await asyncio.shield(described)

    def notes(self) -> list[str]:
        """What kept copies from being read, or made them finished unexpectedly: one line each."""
        lines = []
        for (operation, code), workflows in self._refused.items():
            lines.append(
                f"transfer:{operation} was refused ({code}) for {_named(workflows)}: their "
                f"copies count as unknown; grant transfer:{operation} on them to check"
            )
        if self._not_found:
            lines.append(
                f"Transfer Family knows no {_named(self._not_found)}: their copies count as "
                "finished (check the region and account if that is unexpected)"
            )
        if self._stopped is not None:
            lines.append(self._stopped)
        return lines

    async def aclose(self) -> None:
        """Cancels any read still running."""
        await cancel_and_wait(self._tasks)

    # --- how ---------------------------------------------------------------------------------

    def _workflow(self, workflow_id: str) -> _Workflow:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            workflow = self._workflows[workflow_id] = _Workflow(workflow_id)
        return workflow

    def _maybe_decide(self, workflow: _Workflow, *, now: bool = False) -> None:
        if workflow.decided.is_set():
            return
        read = decide(len(workflow.executions), self._reads.describe_up_to)
        if read is Read.DESCRIBE and not (now or self._all_known):
            return  # a next copy may still call for a listing
        if read is Read.LIST:
            workflow.listing = self._spawn(self._list(workflow.workflow_id))
        workflow.decided.set()

    def _spawn(self, work: Awaitable[T]) -> "asyncio.Task[T]":
        task: asyncio.Task[T] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _list(self, workflow_id: str) -> dict[str, str] | Verdict:
        """Every page of the workflow's listing: execution id to status, or the failure."""
        reader = self._reader
        assert reader is not None
        in_progress: dict[str, str] = {}
        seen: set[str] = set()
        token: str | None = None
        async with self._semaphore:
            # Bounded: each pass reads one page; a token handed out twice, or more than
            # MAX_PAGES pages, ends it.
            for _ in range(MAX_PAGES):
                if self._stopped is not None:
                    return READS_STOPPED
                try:
                    page = await self._retried(
                        Read.LIST,
                        functools.partial(
                            reader.list_executions,
                            workflow_id=workflow_id,
                            next_token=token,
                            max_results=MAX_RESULTS,
                        ),
                    )
                except CallbackError as error:
                    return self._failed(Read.LIST, workflow_id, error)
                in_progress.update(page.executions)
                token = page.next_token
                if token is None:
                    return in_progress
                if token in seen:
                    return self._failed(
                        Read.LIST,
                        workflow_id,
                        CallbackError("RepeatedNextToken", "the listing handed out a token twice"),
                    )
                seen.add(token)
            return self._failed(
                Read.LIST,
                workflow_id,
                CallbackError("ListingTooLong", f"the listing went on past {MAX_PAGES} pages"),
            )

    async def _describe(self, workflow_id: str, execution_id: str) -> Verdict:
        reader = self._reader
        assert reader is not None
        async with self._semaphore:
            failure = self._workflows[workflow_id].failure
            if failure is not None:
                return failure
            if self._stopped is not None:
                return READS_STOPPED
            try:
                status = await self._retried(
                    Read.DESCRIBE,
                    lambda: reader.describe_execution(
                        workflow_id=workflow_id, execution_id=execution_id
                    ),
                )
            except CallbackError as error:
                verdict = self._failed(Read.DESCRIBE, workflow_id, error)
                if verdict.state is ExecutionState.UNKNOWN:
                    self._workflows[workflow_id].failure = verdict
                return verdict
            return from_status(status)

    async def _retried(self, read: Read, call: Callable[[], Awaitable[T]]) -> T:
        """The call with the retries `ExecutionReads.retry` allows; counted."""
        async for attempt in retrying(self._reads.retry):
            with attempt:
                self.calls[read.value] += 1
                try:
                    return await call()
                except CallbackError as error:
                    if error.code == "ThrottlingException":
                        self.throttled[read.value] += 1
                    raise
        raise AssertionError("tenacity neither returned nor raised")  # pragma: no cover

    def _failed(self, read: Read, workflow_id: str, error: CallbackError) -> Verdict:
        """The verdict of a failed read, said once for its kind."""
        verdict = from_failure(read, error.code)
        if verdict.why is Why.WORKFLOW_NOT_FOUND:
            self._not_found.append(workflow_id)
        elif verdict.why is Why.ACCESS_DENIED:
            refused = self._refused.setdefault((read.value, error.code), [])
            if not refused:
                log.warning(
                    "transfer:%s refused (%s) for %s: its copies count as unknown",
                    read.value,
                    error.code,
                    workflow_id,
                )
            refused.append(workflow_id)
        elif stops_reads(verdict) and self._stopped is None:
            self._stopped = (
                f"{read.value} of {workflow_id} failed ({error}); no more executions were "
                "read: copies not read by then count as unknown"
            )
            log.warning("%s", self._stopped)
        return verdict


def _named(workflows: list[str]) -> str:
    shown = ", ".join(workflows[:NOTE_WORKFLOWS])
    more = len(workflows) - NOTE_WORKFLOWS
    return f"{len(workflows)} workflow(s) ({shown}{f', {more} more' if more > 0 else ''})"


@contextlib.asynccontextmanager
async def open_execution_states(
    reads: ExecutionReads, *, enabled: bool = True
) -> AsyncIterator[ExecutionStates]:
    """The reading for one command's run, on an aiobotocore Transfer client of its own
    (retries off: relay retries); disabled, it makes no call and every copy is `unknown`."""
    if not enabled:
        yield ExecutionStates(None, reads)
        return
    async with open_transfer(
        max_pool_connections=reads.concurrency, call_timeout_s=reads.call_timeout_s
    ) as client:
        states = ExecutionStates(client, reads)
        try:
            yield states
        finally:
            await states.aclose()
