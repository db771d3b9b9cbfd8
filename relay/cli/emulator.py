"""`relay emulator`: a local Transfer Family endpoint (DESIGN §7) and its faults from flags."""

from typing import Any

import click

from relay.cli.options import EXIT_OK
from relay.config import default_of


def _fault(name: str) -> Any:
    from relay.emulator.faults import Faults

    return default_of(Faults, name)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0 = a free one, printed).")
@click.option("--accept-any", is_flag=True, help="Accept every well-formed call once.")
@click.option(
    "--latency-ms", default=_fault("latency_ms"), show_default=True, help="Fixed latency."
)
@click.option("--jitter-ms", default=_fault("jitter_ms"), show_default=True, help="Extra, 0..N.")
@click.option(
    "--throttle-rps", default=_fault("throttle_rps"), show_default=True, help="Calls/s (0 = off)."
)
@click.option("--throttle-burst", type=int, default=None, help="Token bucket size.")
@click.option("--retry-after", "retry_after_s", type=float, help="Fixed RetryAfterSeconds.")
@click.option("--error-rate", default=_fault("error_rate"), show_default=True, help="P(5xx).")
@click.option("--deny-workflow", multiple=True, help="Answer AccessDenied for it (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed for latency and fault draws.")
def emulator(
    host: str,
    port: int,
    accept_any: bool,
    deny_workflow: tuple[str, ...],
    seed: int | None,
    **faults: Any,
) -> int:
    """Serve a local Transfer Family endpoint (SendWorkflowStepState) until SIGINT/SIGTERM.

    Speaks the real JSON 1.1 protocol; the admin API lives under /_emulator/.
    """
    from relay.emulator import Faults, serve

    settings = Faults(**faults, deny_workflows=frozenset(deny_workflow))
    serve(host, port, accept_any, settings, seed=seed)
    return EXIT_OK
