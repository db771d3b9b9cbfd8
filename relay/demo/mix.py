"""What the demo's producer sends: step results in the three shapes, with malformed ones and
unknown executions mixed in, the way real producers get them wrong."""

import collections
import json
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from relay.config import DemoConfig
from relay.message import Status, StepResult, event_body, sns_body

_ALNUM: Final = "abcdefghijklmnopqrstuvwxyz0123456789"
_TOKEN_CHARS: Final = _ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ_"


@dataclass(frozen=True, slots=True)
class Mix:
    """The bodies to send, in order, the steps the emulator is told to wait for, and those of
    executions it does not know (yet: the bulk replay registers some late)."""

    bodies: list[str]
    waiting: list[tuple[str, str, str]]
    kinds: collections.Counter[str]
    unknown: list[tuple[str, str, str]]


def build_mix(config: DemoConfig) -> Mix:
    """Step results in the three shapes, with malformed ones and unknown executions mixed in."""
    rng = random.Random(config.seed)
    workflows = [_workflow_id(rng) for _ in range(config.workflows)]
    malformed = round(config.messages * config.malformed_share)
    unknown = round(config.messages * config.unknown_share)
    kinds = ["malformed"] * malformed + ["unknown"] * unknown
    kinds += ["valid"] * (config.messages - len(kinds))
    rng.shuffle(kinds)
    bodies: list[str] = []
    waiting: list[tuple[str, str, str]] = []
    unknown_steps: list[tuple[str, str, str]] = []
    counted: collections.Counter[str] = collections.Counter()
    for kind in kinds:
        if kind == "malformed":
            bodies.append(_malformed_body(rng, workflows))
            counted["malformed"] += 1
            continue
        step = _step(rng, rng.choice(workflows))
        if kind == "valid":
            waiting.append(step.step_key)
        else:
            unknown_steps.append(step.step_key)
        shape, body = _shaped_body(rng, step)
        bodies.append(body)
        counted[kind if kind == "unknown" else shape] += 1
    return Mix(bodies=bodies, waiting=waiting, kinds=counted, unknown=unknown_steps)


def _workflow_id(rng: random.Random) -> str:
    return "w-" + "".join(rng.choices(_ALNUM, k=17))


def _step(rng: random.Random, workflow_id: str) -> StepResult:
    # About one step in ten reports a failure, as a file-processing pipeline might.
    status = Status.FAILURE if rng.random() < 0.1 else Status.SUCCESS
    execution_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    return StepResult(workflow_id, execution_id, "".join(rng.choices(_TOKEN_CHARS, k=48)), status)


def _shaped_body(rng: random.Random, step: StepResult) -> tuple[str, str]:
    """Half canonical, three in ten the custom-step event, two in ten an SNS envelope."""
    draw = rng.random()
    if draw < 0.5:
        return "canonical", step.to_body()
    if draw < 0.8:
        return "event", event_body(step)
    inner = step.to_body() if rng.random() < 0.5 else event_body(step)
    return "sns", sns_body(inner, rng)


def _malformed_body(rng: random.Random, workflows: list[str]) -> str:
    """One of the mistakes producers make; each is dead-lettered with reason validation."""
    good = json.loads(_step(rng, rng.choice(workflows)).to_body())
    mistakes: list[Callable[[], object]] = [
        lambda: "step finished OK",
        lambda: json.dumps(good)[:-9],
        lambda: [good],
        lambda: {k: v for k, v in good.items() if k != "Token"},
        lambda: {**good, "WorkflowId": "wf-" + good["WorkflowId"][2:]},
        lambda: {**good, "Status": "DONE"},
        lambda: {**good, "ExecutionId": good["ExecutionId"][:-4]},
        lambda: {**good, "Token": good["Token"] + "-retry"},
        lambda: {"Type": "Notification", "Message": "step finished"},
        lambda: {"token": good["Token"], "status": "SUCCESS"},
    ]
    made = rng.choice(mistakes)()
    return made if isinstance(made, str) else json.dumps(made)
