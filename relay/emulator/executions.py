"""What the emulated service knows about executions: which steps wait, since when, and for how
long a workflow's step may wait (DESIGN §7, §11).

An execution is in progress from its start until its last waiting step is answered or its
step's timeout passes (the workflow's `TimeoutSeconds`, 1800 s unless set). Once it is not,
`ListExecutions` and `DescribeExecution` forget it, and a callback for it is answered as for an
unknown execution, except a repeat of a token already answered, which keeps DESIGN §7's
"step already completed".

Everything here is pure bookkeeping on an injected clock; `EmulatorState` decides and answers.
"""

import base64
import binascii
import bisect
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

DEFAULT_STEP_TIMEOUT_S: Final = 1800.0
"""A custom step's longest `TimeoutSeconds`, and Transfer Family's default for it."""
MAX_STEP_TIMEOUT_S: Final = 1800.0
IN_PROGRESS: Final = "IN_PROGRESS"
PAGE_SIZE: Final = 1000
"""`MaxResults`' upper bound, and what a page holds when the caller gives none."""


@dataclass(slots=True)
class Execution:
    """One workflow execution: its steps waiting for a callback and those answered."""

    workflow_id: str
    execution_id: str
    sequence: int
    """Its place in the workflow's listing, fixed at its first start (pages stay stable)."""
    started_at: float
    """When its waiting step started, on the emulator's clock."""
    waiting: set[str] = field(default_factory=set)
    answered: dict[str, str] = field(default_factory=dict)

    @property
    def user_name(self) -> str:
        """The (made-up) user whose upload started it."""
        return "emulator-user"

    @property
    def server_id(self) -> str:
        """The (made-up) server it runs on: the same for every execution of a workflow."""
        return "s-" + hashlib.sha256(self.workflow_id.encode()).hexdigest()[:17]

    @property
    def session_id(self) -> str:
        """The (made-up) session of the upload."""
        return hashlib.sha256(self.execution_id.encode()).hexdigest()[:16]

    @property
    def file_key(self) -> str:
        """The object whose upload started it."""
        return f"uploads/{self.execution_id}.csv"


class ExecutionBook:
    """Executions by workflow, and each workflow's step timeout; on the emulator's clock."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.default_timeout_s = DEFAULT_STEP_TIMEOUT_S
        self._timeouts: dict[str, float] = {}
        self._executions: dict[tuple[str, str], Execution] = {}
        self._by_workflow: dict[str, list[Execution]] = {}
        self._sequence = 0

    def __len__(self) -> int:
        return len(self._executions)

    def clear(self) -> None:
        """Forget every execution and timeout."""
        self._executions.clear()
        self._by_workflow.clear()
        self._timeouts.clear()
        self.default_timeout_s = DEFAULT_STEP_TIMEOUT_S

    def knows(self, workflow_id: str) -> bool:
        """Whether the workflow exists here: it had an execution, or a timeout was set for it."""
        return workflow_id in self._by_workflow or workflow_id in self._timeouts

    def timeout_s(self, workflow_id: str) -> float:
        """How long a step of this workflow waits for its callback."""
        return self._timeouts.get(workflow_id, self.default_timeout_s)

    def set_timeout(self, workflow_id: str | None, timeout_s: float) -> None:
        """Sets a workflow's step timeout (None: every workflow's default); it applies to the
        executions already waiting too, as if their step had been given it."""
        if workflow_id is None:
            self.default_timeout_s = timeout_s
        else:
            self._timeouts[workflow_id] = timeout_s

    def timeouts(self) -> dict[str, float]:
        """The timeouts set per workflow."""
        return dict(self._timeouts)

    def get(self, workflow_id: str, execution_id: str) -> Execution | None:
        """The execution, in progress or not; None if it never started here."""
        return self._executions.get((workflow_id, execution_id))

    def start(
        self, workflow_id: str, execution_id: str, *, started_s_ago: float = 0.0
    ) -> Execution:
        """The execution, started now (or that long ago); one that exists starts its step again
        (its place in the listing stays)."""
        execution = self._executions.get((workflow_id, execution_id))
        started_at = self._clock() - started_s_ago
        if execution is None:
            self._sequence += 1
            execution = Execution(workflow_id, execution_id, self._sequence, started_at)
            self._executions[(workflow_id, execution_id)] = execution
            self._by_workflow.setdefault(workflow_id, []).append(execution)
        else:
            execution.started_at = started_at
        return execution

    def in_progress(self, execution: Execution) -> bool:
        """A step waits, and its timeout has not passed."""
        if not execution.waiting:
            return False
        return self._clock() < execution.started_at + self.timeout_s(execution.workflow_id)

    def in_progress_count(self) -> int:
        """Executions in progress now, all workflows together."""
        return sum(self.in_progress(e) for e in self._executions.values())

    def page(self, workflow_id: str, after: int, limit: int) -> tuple[list[Execution], int | None]:
        """Up to `limit` executions in progress after sequence `after`, in start order, and the
        sequence to go on from (None when no execution in progress is left after them)."""
        listed = self._by_workflow.get(workflow_id, [])
        start = bisect.bisect_right([e.sequence for e in listed], after)
        found: list[Execution] = []
        rest = iter(listed[start:])
        for execution in rest:
            if self.in_progress(execution):
                found.append(execution)
                if len(found) == limit:
                    break
        more = any(self.in_progress(e) for e in rest)
        return found, (found[-1].sequence if found and more else None)

    def __iter__(self) -> Iterator[Execution]:
        return iter(self._executions.values())


def next_token(workflow_id: str, sequence: int) -> str:
    """An opaque `NextToken`: the workflow and where its listing goes on."""
    text = json.dumps({"w": workflow_id, "s": sequence}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode()


def read_next_token(token: str, workflow_id: str) -> int | None:
    """Where a `NextToken` goes on, or None when it is not one of this workflow's listing."""
    try:
        document = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(document, dict) or document.get("w") != workflow_id:
        return None
    sequence = document.get("s")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        return None
    return sequence


def listed(execution: Execution) -> dict[str, object]:
    """A `ListedExecution` as the service model shapes it."""
    return {
        "ExecutionId": execution.execution_id,
        "InitialFileLocation": {
            "S3FileLocation": {"Bucket": "relay-emulator-uploads", "Key": execution.file_key}
        },
        "ServiceMetadata": {
            "UserDetails": {
                "UserName": execution.user_name,
                "ServerId": execution.server_id,
                "SessionId": execution.session_id,
            }
        },
        "Status": IN_PROGRESS,
    }


def described(execution: Execution) -> dict[str, object]:
    """A `DescribedExecution` as the service model shapes it (without step results)."""
    return {
        **listed(execution),
        "ExecutionRole": "arn:aws:iam::123456789012:role/relay-emulator-workflow",
    }
