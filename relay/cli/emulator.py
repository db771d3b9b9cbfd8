"""`relay emulator`: a local Transfer Family endpoint (DESIGN §7), its faults and its
executions from flags."""

from typing import Any

import click

from relay.cli.options import EXIT_OK
from relay.config import default_of
from relay.emulator.executions import DEFAULT_STEP_TIMEOUT_S
from relay.emulator.faults import Faults
from relay.emulator.protocol import OPERATIONS


def _fault(name: str) -> Any:
    return default_of(Faults, name)


def _pairs(option: str, values: tuple[str, ...], separator: str) -> list[list[str]]:
    """`A=B` (or `A:B:C`) values split, each into the parts it must have."""
    parts = 3 if separator == ":" else 2
    split = [value.split(separator) for value in values]
    for value, pieces in zip(values, split, strict=True):
        if len(pieces) != parts or not all(pieces):
            shape = "WORKFLOW_ID:EXECUTION_ID:TOKEN" if parts == 3 else f"NAME{separator}NUMBER"
            raise click.BadParameter(f"{value!r} is not {shape}", param_hint=option)
    return split


def _seconds(option: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a number", param_hint=option) from None


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0 = a free one, printed).")
@click.option("--accept-any", is_flag=True, help="Accept every well-formed call once.")
@click.option(
    "--latency-ms", default=_fault("latency_ms"), show_default=True, help="Fixed latency."
)
@click.option("--jitter-ms", default=_fault("jitter_ms"), show_default=True, help="Extra, 0..N.")
@click.option(
    "--throttle-rps",
    default=_fault("throttle_rps"),
    show_default=True,
    help="Callbacks/s (0 = off).",
)
@click.option("--throttle-burst", type=int, default=None, help="Token bucket size.")
@click.option("--retry-after", "retry_after_s", type=float, help="Fixed RetryAfterSeconds.")
@click.option("--error-rate", default=_fault("error_rate"), show_default=True, help="P(5xx).")
@click.option("--deny-workflow", multiple=True, help="Answer AccessDenied for it (repeatable).")
@click.option(
    "--deny-operation",
    multiple=True,
    type=click.Choice(OPERATIONS),
    help="Answer AccessDenied to every call of it, as IAM would (repeatable).",
)
@click.option(
    "--throttle-operation",
    multiple=True,
    metavar="OPERATION=RPS",
    help="Give an operation a token bucket of its own (repeatable), e.g. ListExecutions=2.",
)
@click.option(
    "--page-size",
    default=_fault("page_size"),
    show_default=True,
    help="Most executions a ListExecutions page holds, whatever MaxResults asks.",
)
@click.option(
    "--step-timeout",
    default=DEFAULT_STEP_TIMEOUT_S,
    show_default=True,
    help="Seconds a step waits for its callback (every workflow's TimeoutSeconds, 0 to 1800).",
)
@click.option(
    "--workflow-step-timeout",
    multiple=True,
    metavar="WORKFLOW_ID=SECONDS",
    help="One workflow's step timeout (repeatable).",
)
@click.option(
    "--execution",
    multiple=True,
    metavar="WORKFLOW_ID:EXECUTION_ID:TOKEN",
    help="Start an execution whose step waits for this token's callback (repeatable).",
)
@click.option("--seed", type=int, default=None, help="Seed for latency and fault draws.")
def emulator(
    host: str,
    port: int,
    accept_any: bool,
    deny_workflow: tuple[str, ...],
    deny_operation: tuple[str, ...],
    throttle_operation: tuple[str, ...],
    step_timeout: float,
    workflow_step_timeout: tuple[str, ...],
    execution: tuple[str, ...],
    seed: int | None,
    **faults: Any,
) -> int:
    """Serve a local Transfer Family endpoint until SIGINT/SIGTERM: SendWorkflowStepState,
    ListExecutions and DescribeExecution.

    Speaks the real JSON 1.1 protocol; the admin API lives under /_emulator/. An execution is
    in progress from its start (--execution, or the admin API) until its step is answered or
    its step timeout passes; then neither read lists it, and a callback for it is answered as
    for an unknown execution.
    """
    from relay.emulator import EmulatorState, serve

    throttles = {
        name: _seconds("--throttle-operation", rps)
        for name, rps in _pairs("--throttle-operation", throttle_operation, "=")
    }
    settings = Faults(
        **faults,
        deny_workflows=frozenset(deny_workflow),
        deny_operations=frozenset(deny_operation),
        throttle_operations=throttles,
    )
    state = EmulatorState(accept_any=accept_any, faults=settings, seed=seed)
    try:
        state.set_step_timeout(None, step_timeout)
        for workflow_id, seconds in _pairs("--workflow-step-timeout", workflow_step_timeout, "="):
            state.set_step_timeout(workflow_id, _seconds("--workflow-step-timeout", seconds))
        steps = [(w, e, t) for w, e, t in _pairs("--execution", execution, ":")]
        state.register_many(steps)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    serve(host, port, state=state)
    return EXIT_OK
