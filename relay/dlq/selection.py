"""What the DLQ commands share in choosing copies: the filters (`selects`), finding each copy's
execution state without holding up the reading (`Judging`), and counting copies by that state
(`ExecutionTally`, DESIGN §11)."""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from relay.config.dlq import ReplayFilters
from relay.dead_letter import DlqMessage
from relay.executions import ExecutionState, ExecutionStates, Verdict
from relay.lifecycle import cancel_and_wait, wait_any
from relay.message import StepResult

log = logging.getLogger(__name__)

STEP_TIMEOUT_MAX_S: Final = 1800.0
"""The longest a custom step waits (its `TimeoutSeconds`): a copy dead-lettered this long ago
cannot help its step any more, whatever its execution still does."""
NOT_A_STEP_RESULT: Final = "-"
"""The workflow key of copies that are not step results (a `validation` copy)."""
JUDGING_MAX_COPIES: Final = 1000
JUDGING_MAX_BYTES: Final = 64 * 1024 * 1024
"""Copies (and their bodies) waiting for their execution's state at most; past either, the
workflows still undecided are read as their counts so far say, and reading waits."""


def selects(
    filters: ReplayFilters, message: DlqMessage, workflow_id: str | None, now: float
) -> bool:
    """Whether the filters other than `--execution-state` select this message: each given
    filter must match."""
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


def in_states(states: frozenset[str], verdict: Verdict) -> bool:
    """Whether `--execution-state` (none given: any) selects a copy in this state."""
    return not states or verdict.state.value in states


class Judging:
    """Finds each copy's execution state in a task of its own, so that the reading goes on
    while a workflow's read is under way or undecided (`ExecutionStates.state` may wait for the
    reading to end); `finish` says the reading ended and waits for every copy's `then`.

    Bounded: at most `JUDGING_MAX_COPIES` copies and `JUDGING_MAX_BYTES` of their bodies wait;
    past that, `judge` has the undecided workflows read now and waits for room.
    """

    def __init__(self, states: ExecutionStates) -> None:
        self.states = states
        self._tasks: set[asyncio.Task[None]] = set()
        self._bytes = 0
        self._room = asyncio.Event()
        self._room.set()
        self.cancelled = 0
        """Copies whose `then` never ran: the command was stopped first."""
        self._errors: list[BaseException] = []

    async def judge(
        self, step: StepResult | None, size: int, then: Callable[[Verdict], Awaitable[None]]
    ) -> None:
        """Finds the copy's state, then runs `then` with it, in a task of its own."""
        # Bounded: each pass decides what is undecided and waits for a copy to be done.
        while len(self._tasks) >= JUDGING_MAX_COPIES or self._bytes >= JUDGING_MAX_BYTES:
            self.states.decide_now()
            self._room.clear()
            await self._room.wait()
        self._bytes += size
        task = asyncio.create_task(self._run(step, size, then), name="judge")
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _run(
        self, step: StepResult | None, size: int, then: Callable[[Verdict], Awaitable[None]]
    ) -> None:
        try:
            await then(await self.states.state(step))
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        except Exception as exc:  # a bug must not strand the copies behind it
            log.exception("judging a copy failed")
            self._errors.append(exc)
        finally:
            self._bytes -= size

    def _done(self, task: "asyncio.Task[None]") -> None:
        self._tasks.discard(task)
        self._room.set()

    async def finish(self, stop: asyncio.Event | None = None) -> None:
        """The reading ended: every undecided workflow is read; waits for every copy, or until
        `stop` (then the rest are cancelled: their messages stay as they are)."""
        self.states.all_known()
        pending = list(self._tasks)
        if pending:
            everything = asyncio.ensure_future(asyncio.wait(pending))
            finished = asyncio.Event()
            everything.add_done_callback(lambda _: finished.set())
            await wait_any(finished, *([stop] if stop is not None else []))
            everything.cancel()
            await cancel_and_wait(pending)
        if self._errors:
            raise self._errors[0]

    async def cancel(self) -> None:
        """Gives up on the copies still being judged (their `then` never runs; their messages
        stay as the reading left them), for a command ending on an error."""
        await cancel_and_wait(self._tasks)


@dataclass(slots=True)
class ExecutionTally:
    """Copies by their execution's state (DESIGN §11): in all, by workflow, why unknown, the age
    of each workflow's oldest waiting copy; the reads it took and what kept copies from being
    read. `checked` False: no read was made (`--no-executions`)."""

    checked: bool = True
    by_state: Counter[str] = field(default_factory=Counter)
    by_workflow: dict[str, Counter[str]] = field(default_factory=dict)
    unknown_why: Counter[str] = field(default_factory=Counter)
    oldest_waiting_s: dict[str, float] = field(default_factory=dict)
    """By workflow, how long ago its oldest waiting copy was dead-lettered."""
    notes: list[str] = field(default_factory=list)
    reads: Counter[str] = field(default_factory=Counter)
    throttled: Counter[str] = field(default_factory=Counter)

    def add(self, workflow_id: str | None, verdict: Verdict, age_s: float) -> None:
        """Counts one copy."""
        workflow = workflow_id or NOT_A_STEP_RESULT
        state = verdict.state.value
        self.by_state[state] += 1
        self.by_workflow.setdefault(workflow, Counter())[state] += 1
        if verdict.state is ExecutionState.UNKNOWN:
            self.unknown_why[verdict.why.value] += 1
        if verdict.state is ExecutionState.WAITING:
            oldest = self.oldest_waiting_s.get(workflow, 0.0)
            self.oldest_waiting_s[workflow] = max(oldest, age_s)

    def read_from(self, states: ExecutionStates) -> None:
        """Takes the reads made and the notes from the command's `ExecutionStates`."""
        self.checked = states.checking
        self.notes = states.notes()
        self.reads = Counter(states.calls)
        self.throttled = Counter(states.throttled)

    @property
    def oldest_waiting_age_s(self) -> float | None:
        """How long ago the oldest waiting copy was dead-lettered; None if none waits."""
        return max(self.oldest_waiting_s.values(), default=None)

    def workflows(self, top: int) -> list[tuple[str, Counter[str]]]:
        """The workflows with most copies first (copies that are not step results last)."""
        ranked = sorted(
            ((w, c) for w, c in self.by_workflow.items() if w != NOT_A_STEP_RESULT),
            key=lambda item: (-item[1].total(), item[0]),
        )[:top]
        if NOT_A_STEP_RESULT in self.by_workflow:
            ranked.append((NOT_A_STEP_RESULT, self.by_workflow[NOT_A_STEP_RESULT]))
        return ranked

    def to_json(self, top: int) -> dict[str, Any]:
        """The machine-readable form."""
        oldest = self.oldest_waiting_age_s
        return {
            "checked": self.checked,
            "by_state": {state.value: self.by_state[state.value] for state in ExecutionState},
            "unknown_why": dict(self.unknown_why.most_common()),
            "oldest_waiting_age_s": None if oldest is None else round(oldest, 3),
            "oldest_waiting_at_most_left_s": None if oldest is None else time_left_s(oldest),
            "workflows": [
                {
                    "workflow_id": None if workflow == NOT_A_STEP_RESULT else workflow,
                    **{state.value: counts[state.value] for state in ExecutionState},
                    "oldest_waiting_age_s": (
                        round(self.oldest_waiting_s[workflow], 3)
                        if workflow in self.oldest_waiting_s
                        else None
                    ),
                }
                for workflow, counts in self.workflows(top)
            ],
            "notes": self.notes,
            "reads": dict(self.reads),
            "throttled": dict(self.throttled),
        }


def time_left_s(age_s: float) -> float:
    """The most a step can have left whose copy was dead-lettered `age_s` ago."""
    return round(max(0.0, STEP_TIMEOUT_MAX_S - age_s), 3)
