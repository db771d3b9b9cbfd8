"""Commands and options only: parse, build config, call one function, map errors to exit codes.

Exit codes (DESIGN §5): 0 success; 1 the job ran and found failures; 2 bad usage or
configuration, with a one-line reason on stderr and no traceback.
"""

import asyncio
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

from relay.config import RUN_OPTIONS, RunConfig
from relay.errors import ConfigError, RelayError

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="relay", prog_name="relay")
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

    Records are validated first (nothing is sent if any is bad), then sent with
    SendMessageBatch (at most 10 entries and 1 MiB per request). Exit 1 if any was not sent.
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
    sent, failed = asyncio.run(
        send_records(queue_url, bodies, validate=not no_validate, echo=click.echo)
    )
    click.echo(f"sent {sent} of {sent + failed} record(s) to {queue_url}")
    return EXIT_FAILURES if failed else EXIT_OK


# --- run -----------------------------------------------------------------------------------


def _run_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Adds one flag per `RUN_OPTIONS` entry, each with its RELAY_* variable and default."""
    for spec in reversed(RUN_OPTIONS):
        command = click.option(
            spec.flag,
            spec.field,
            type=spec.type,
            default=spec.default,
            envvar=spec.env,
            show_envvar=True,
            show_default=True,
            help=spec.help,
        )(command)
    return command


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
@_run_options
def run(**options: Any) -> int:
    """Run the worker: receive step results, send callbacks, finish every message once.

    SIGTERM and SIGINT drain (in-flight callbacks get --shutdown-grace seconds, the rest go
    back to the queue at once) and exit 0; a second signal abandons at once.
    """
    config = RunConfig.build(options, os.environ)  # before the heavy imports: errors are quick
    from relay.observability import configure_logging
    from relay.worker import run_worker

    configure_logging(config.log_format, config.log_level)
    asyncio.run(run_worker(config))
    return EXIT_OK


# --- emulator ------------------------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=0, show_default=True, help="Port (0 = a free one, printed).")
@click.option("--accept-any", is_flag=True, help="Accept every well-formed call once.")
@click.option("--latency-ms", default=0.0, show_default=True, help="Fixed latency per call.")
@click.option("--jitter-ms", default=0.0, show_default=True, help="Extra random latency, 0..N.")
@click.option("--throttle-rps", default=0.0, show_default=True, help="Allowed calls/s (0 = off).")
@click.option("--throttle-burst", type=int, default=None, help="Token bucket size.")
@click.option("--retry-after", type=float, default=None, help="Fixed RetryAfterSeconds.")
@click.option("--error-rate", default=0.0, show_default=True, help="Probability of a 5xx.")
@click.option("--deny-workflow", multiple=True, help="Answer AccessDenied for it (repeatable).")
@click.option("--seed", type=int, default=None, help="Seed for latency and fault draws.")
def emulator(
    host: str,
    port: int,
    accept_any: bool,
    latency_ms: float,
    jitter_ms: float,
    throttle_rps: float,
    throttle_burst: int | None,
    retry_after: float | None,
    error_rate: float,
    deny_workflow: tuple[str, ...],
    seed: int | None,
) -> int:
    """Serve a local Transfer Family endpoint (SendWorkflowStepState) until SIGINT/SIGTERM.

    Speaks the real JSON 1.1 protocol; the admin API lives under /_emulator/.
    """
    from relay.emulator import Faults, serve

    faults = Faults(
        latency_ms=latency_ms,
        jitter_ms=jitter_ms,
        throttle_rps=throttle_rps,
        throttle_burst=throttle_burst,
        retry_after_s=retry_after,
        error_rate=error_rate,
        deny_workflows=frozenset(deny_workflow),
    )
    serve(host, port, accept_any, faults, seed=seed)
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
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"unhealthy: {exc}", err=True)
        return EXIT_FAILURES
    click.echo("healthy" if healthy else "unhealthy")
    return EXIT_OK if healthy else EXIT_FAILURES


# --- demo ----------------------------------------------------------------------------------


@cli.command()
@click.option("--messages", default=2000, show_default=True, help="Step results to send.")
@click.option(
    "--rate", default=150.0, show_default=True, help="Offered messages per second (in bursts)."
)
@click.option(
    "--throttle-rps",
    default=120.0,
    show_default=True,
    help="Calls per second the emulator allows (0 = no throttling).",
)
@click.option("--latency-ms", default=5.0, show_default=True, help="Emulator latency (+ jitter).")
@click.option("--seed", type=int, default=None, help="Repeat the same mix and faults.")
@click.option(
    "--keep-running",
    is_flag=True,
    help="Afterwards, keep the endpoints up and print their settings until Ctrl-C.",
)
def demo(
    messages: int,
    rate: float,
    throttle_rps: float,
    latency_ms: float,
    seed: int | None,
    keep_running: bool,
) -> int:
    """The whole pipeline on this machine, no AWS account: moto's SQS, the emulator, the worker.

    Sends a realistic mix (three shapes, malformed ones, unknown executions) while the worker
    consumes it against a throttling, sometimes failing emulator; ends with outcomes by reason,
    the DLQ by reason and an accounting line. Exit 0 when every message is accounted for.
    """
    from relay.demo import DemoConfig, run_demo

    config = DemoConfig(
        messages=messages,
        rate_per_s=rate,
        throttle_rps=throttle_rps,
        latency_ms=latency_ms,
        seed=seed,
        keep_running=keep_running,
    )
    return run_demo(config)


# --- entry point ---------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: runs a command and exits with its code; usage errors are one line."""
    try:
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
    except NoRegionError:
        _fail("relay: no AWS region: set AWS_REGION")
    except NoCredentialsError:
        _fail("relay: no AWS credentials found in the standard chain")
    except ClientError as exc:
        _fail(f"relay: {exc}", EXIT_FAILURES)
    except BotoCoreError as exc:
        _fail(f"relay: {exc}", EXIT_FAILURES)
    sys.exit(code if isinstance(code, int) else EXIT_OK)


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(message.replace("\n", " "), err=True)
    sys.exit(code)
