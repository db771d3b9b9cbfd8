"""Commands and options only: parse, build config, call one function, map errors to exit codes.

Exit codes (DESIGN §5): 0 success; 1 the job ran and found failures; 2 bad usage or
configuration, with a one-line reason on stderr and no traceback. The DLQ tools' commands
(`relay dlq ...`, `relay replay`) are `relay.cli.dlq`'s.
"""

import asyncio
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from relay import DISTRIBUTION
from relay.cli.dlq import dlq, replay
from relay.cli.emulator import emulator
from relay.cli.options import EXIT_FAILURES, EXIT_OK, EXIT_USAGE
from relay.cli.options import config_options as _options
from relay.config import DemoConfig, RunConfig
from relay.errors import ConfigError, RelayError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name=DISTRIBUTION, prog_name="relay")
def cli() -> None:
    """relay: deliver AWS Transfer Family workflow step results from SQS.

    Step processors put one message per step result on a queue; `relay run` sends the
    SendWorkflowStepState callbacks, retries what is transient and dead-letters the rest.
    """


# --- validate ------------------------------------------------------------------------------


@cli.command()
@click.argument("file", metavar="FILE")
def validate(file: str) -> int:
    """Check a JSON Lines file of messages offline ('-' reads stdin).

    Prints `LINE: FIELD: what is wrong` for each bad record and a count at the end.
    Exit 0 when every record is valid, 1 when any is bad, 2 when the file cannot be read.
    """
    from relay.records import read_lines, validate_lines

    bad, total = validate_lines(read_lines(file), lambda line: click.echo(line))
    click.echo(f"{total} record(s), {bad} invalid", err=bad > 0)
    return EXIT_FAILURES if bad else EXIT_OK


# --- send ----------------------------------------------------------------------------------


@cli.command()
@click.option("--queue-url", envvar="RELAY_QUEUE_URL", required=True, help="Target queue.")
@click.option("--file", "file", metavar="F.jsonl", help="JSON Lines of messages ('-' = stdin).")
@click.option("--workflow-id", help="One result: the workflow id (w-...).")
@click.option("--execution-id", help="One result: the execution id (a UUID).")
@click.option("--token", help="One result: the callback token.")
@click.option("--status", type=click.Choice(["SUCCESS", "FAILURE"]), help="One result: status.")
@click.option(
    "--no-validate",
    is_flag=True,
    help="Send records as they are, even invalid ones (to test dead-lettering).",
)
def send(
    queue_url: str,
    file: str | None,
    workflow_id: str | None,
    execution_id: str | None,
    token: str | None,
    status: str | None,
    no_validate: bool,
) -> int:
    """Put step results on a queue: one from flags, or many from a JSON Lines file.

    Records are validated first (nothing is sent if any is bad), then sent with relay.producer's
    publisher: SendMessageBatch (at most 10 entries and 1 MiB per request), entries SQS fails
    retried. Exit 1 if any was not sent.
    """
    flags = (workflow_id, execution_id, token, status)
    if file is not None and any(flag is not None for flag in flags):
        raise click.UsageError("give either --file or the four result flags, not both")
    if file is None and any(flag is None for flag in flags):
        raise click.UsageError(
            "give --file, or all of --workflow-id, --execution-id, --token and --status"
        )
    # Imported after the usage checks: the AWS SDK takes a second to load.
    from relay.records import read_lines, send_records, step_from_flags

    if file is None:
        bodies = [step_from_flags(*flags, validate=not no_validate)]  # type: ignore[arg-type]
    else:
        bodies = read_lines(file)
    sent, failed = send_records(queue_url, bodies, validate=not no_validate, echo=click.echo)
    click.echo(f"sent {sent} of {sent + failed} record(s) to {queue_url}")
    return EXIT_FAILURES if failed else EXIT_OK


# --- run -----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--queue-url",
    envvar="RELAY_QUEUE_URL",
    show_envvar=True,
    help="Queue of step results (also COPILOT_QUEUE_URI).",
)
@click.option(
    "--dlq-url",
    envvar="RELAY_DLQ_URL",
    show_envvar=True,
    help="Dead-letter queue  [default: the queue's RedrivePolicy target]",
)
@click.option(
    "--exit-when-empty",
    is_flag=True,
    envvar="RELAY_EXIT_WHEN_EMPTY",
    show_envvar=True,
    help="Drain job: stop once the queue holds nothing visible, in flight or delayed.",
)
@_options(RunConfig, env=True)
def run(**options: Any) -> int:
    """Run the worker: receive step results, send callbacks, finish every message once.

    SIGTERM and SIGINT drain (in-flight callbacks get --shutdown-grace seconds, the rest go
    back to the queue at once) and exit 0; a second signal abandons at once. With --tracing (or
    OTEL_TRACES_EXPORTER) each message is traced with OpenTelemetry, continuing the trace it
    carries (the otel extra; exit 2 without it).
    """
    config = RunConfig.build(options, os.environ)  # before the heavy imports: errors are quick
    from relay.tracing import start_tracing

    # OpenTelemetry is imported here only if tracing is asked for; without the extra that is
    # exit 2 before anything starts.
    tracing = start_tracing(os.environ, flag=config.tracing)
    try:
        from relay.observability import configure_logging
        from relay.worker import run_worker

        configure_logging(config.log_format, config.log_level, trace_fields=tracing.log_processor)
        asyncio.run(run_worker(config, tracing=tracing))
    finally:
        tracing.shutdown()  # exports the spans still buffered
    return EXIT_OK


# --- healthcheck ---------------------------------------------------------------------------


@cli.command()
@click.option(
    "--url",
    default=None,
    help="Health URL  [default: http://127.0.0.1:$RELAY_HTTP_PORT/healthz]",
)
@click.option("--timeout", default=3.0, show_default=True, help="Seconds to wait.")
def healthcheck(url: str | None, timeout: float) -> int:
    """Probe the worker's /healthz: exit 0 when healthy, 1 otherwise (ECS health check)."""
    import urllib.error
    import urllib.request

    port = os.environ.get("RELAY_HTTP_PORT", "8080")
    url = url or f"http://127.0.0.1:{port}/healthz"
    # No proxies: the probe is for this task's own port, and a task behind an egress proxy
    # (HTTP_PROXY, HTTPS_PROXY) would otherwise ask the proxy and fail its health check.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        return EXIT_FAILURES
    click.echo("healthy" if healthy else "unhealthy")
    return EXIT_OK if healthy else EXIT_FAILURES


# --- demo ----------------------------------------------------------------------------------


@cli.command()
@_options(DemoConfig)
@click.option("--seed", type=int, default=None, help="Repeat the same mix and faults.")
def demo(**options: Any) -> int:
    """The whole pipeline on this machine, no AWS account: moto's SQS, the emulator, the worker.

    Sends a realistic mix (three shapes, malformed ones, unknown executions) while the worker
    consumes it against a throttling, sometimes failing emulator; ends with outcomes by reason,
    the DLQ by reason and an accounting line. Then the bulk replay: some unknown executions
    were fixed meanwhile and some timed out; `dlq stats` shows which copies can still help,
    `replay --to transfer` answers those and leaves the rest, and the accounting is drawn
    again. Exit 0 when every message sent is accounted for both times, 1 otherwise.
    """
    config = DemoConfig(**options)
    from relay.demo import run_demo

    return run_demo(config)


cli.add_command(dlq)
cli.add_command(replay)
cli.add_command(emulator)

__all__ = ["cli", "dlq", "emulator", "main", "replay"]


# --- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: runs a command and exits with its code; usage errors are one line."""
    from relay.aws import aws_errors

    try:
        with aws_errors():
            code = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "relay"
        _fail(f"{command}: {exc.format_message()}")
    except (click.Abort, KeyboardInterrupt):
        sys.exit(130)
    except ConfigError as exc:
        _fail(f"relay: {exc}")
    except RelayError as exc:
        # Any other failure relay reports on purpose: the job ran and failed.
        _fail(f"relay: {exc}", EXIT_FAILURES)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(message.replace("\n", " "), err=True)
    sys.exit(code)
