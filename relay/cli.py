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

from relay import DISTRIBUTION
from relay.config import (
    DemoConfig,
    ExportConfig,
    ReplayConfig,
    ReplayFilters,
    RunConfig,
    ScanConfig,
    StatsConfig,
    default_of,
    options_of,
    parse_duration,
)
from relay.errors import ConfigError, RelayError

Command = Callable[..., Any]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_USAGE = 2


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


def _options(
    cls: type, *, env: bool = False, skip: tuple[str, ...] = ()
) -> Callable[[Command], Command]:
    """One click option per option field of a config dataclass, with its default (and, for
    `relay run`, its RELAY_* variable): the defaults live on the dataclass alone."""

    def decorate(command: Command) -> Command:
        for spec in reversed([s for s in options_of(cls) if s.name not in skip]):
            settings: dict[str, Any] = {"default": spec.default, "help": spec.help}
            declarations = [spec.flag, spec.name]
            if spec.type is bool and spec.default:
                # --name/--no-name switches; the variable takes true/false, 1/0.
                declarations[0] = f"{spec.flag}/--no-{spec.flag[2:]}"
            elif spec.type is bool:
                settings["is_flag"] = True
            else:
                settings["type"] = click.Choice(spec.choices) if spec.choices else spec.type
            if not settings.get("is_flag"):
                settings["show_default"] = True
            if env:
                settings.update(envvar=spec.env, show_envvar=True)
            command = click.option(*declarations, **settings)(command)
        return command

    return decorate


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


# --- emulator ------------------------------------------------------------------------------


def _fault(name: str) -> Any:
    from relay.emulator.faults import Faults

    return default_of(Faults, name)


@cli.command()
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
    the DLQ by reason and an accounting line. Exit 0 when every message sent is accounted
    for, 1 otherwise.
    """
    config = DemoConfig(**options)
    from relay.demo import run_demo

    return run_demo(config)


# --- dlq stats, dlq export, replay --------------------------------------------------------


def _scan_config(options: dict[str, Any]) -> ScanConfig | None:
    """The ScanConfig the scan options and --dlq-url describe (None without a DLQ); pops them."""
    names = [spec.name for spec in options_of(ScanConfig) if spec.name in options]
    settings = {name: options.pop(name) for name in names}
    dlq_url = options.pop("dlq_url")
    return ScanConfig(dlq_url=dlq_url, **settings) if dlq_url else None


_DLQ_URL = click.option(
    "--dlq-url", envvar="RELAY_DLQ_URL", show_envvar=True, required=True, help="The DLQ."
)


@cli.group()
def dlq() -> None:
    """Look at a dead-letter queue without changing it: counts, or a copy in a file."""


@dlq.command("stats")
@_DLQ_URL
@_options(StatsConfig)
@_options(ScanConfig)
def dlq_stats_command(**options: Any) -> int:
    """Counts by reason and error code, top workflows, oldest and newest dead-letter time.

    Changes nothing: every message read is made visible again as soon as reading ends.
    Messages SQS's own redrive moved (no relay-* attributes) count as `unannotated`.
    """
    scan = _scan_config(options)
    assert scan is not None  # --dlq-url is required
    config = StatsConfig(scan=scan, **options)
    from relay.dlq.stats import dlq_stats
    from relay.terminal import print_json, print_stats, show_progress

    stats = asyncio.run(dlq_stats(config, show_progress))
    if config.json_output:
        print_json(stats.to_json(config.top))
    else:
        print_stats(stats, config.top)
    return EXIT_OK if stats.complete else EXIT_FAILURES


@dlq.command("export")
@_DLQ_URL
@click.option(
    "--out",
    required=True,
    metavar="F.jsonl",
    help="File to write (mode 0600), replaced only when the whole DLQ was read.",
)
@_options(ExportConfig)
@_options(ScanConfig)
def dlq_export_command(**options: Any) -> int:
    """Copy the DLQ to a JSON Lines file (for audit, or `relay replay --from-file`).

    One object per message: message_id, sent_timestamp (ms), attributes, trace_header (an
    X-Ray AWSTraceHeader, when it had one), body. Changes
    nothing: every message read is made visible again as soon as reading ends. The file holds
    whole callback tokens: it is created 0600, never through a symbolic link, and an existing
    one is replaced only when the export is whole (exit 1 and left as it was otherwise).
    """
    scan = _scan_config(options)
    assert scan is not None  # --dlq-url is required
    config = ExportConfig(scan=scan, **options)
    from relay.dlq.export import dlq_export, open_export
    from relay.terminal import print_export, print_json, show_progress

    # Checked (a symbolic link, a directory) before the DLQ is read; the target is replaced
    # only by a whole export and is left as it was by anything less.
    with open_export(config.out) as export:
        summary = asyncio.run(dlq_export(config, export.file, show_progress))
        export.keep = summary.complete
    summary.saved = export.saved
    if config.json_output:
        print_json(summary.to_json())
    else:
        print_export(summary)
    return EXIT_OK if summary.complete else EXIT_FAILURES


@cli.command()
@click.option("--dlq-url", envvar="RELAY_DLQ_URL", show_envvar=True, help="Replay from this DLQ.")
@click.option(
    "--from-file",
    metavar="F.jsonl",
    help="Replay a `relay dlq export` file instead (every line checked before anything is sent).",
)
@click.option(
    "--queue-url",
    help="Destination queue for every message  [default: each message's relay-source-queue, "
    "only if SQS lists it as a source of the DLQ; needed for unannotated ones]",
)
@click.option(
    "--reason",
    multiple=True,
    help="Only this relay-reason (repeatable; `unannotated` = without relay-* attributes).",
)
@click.option("--error-code", multiple=True, help="Only this relay-error-code (repeatable).")
@click.option("--workflow-id", multiple=True, help="Only this workflow (repeatable).")
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Only messages dead-lettered at least this long ago: 90s, 30m, 2h, 1d.",
)
@click.option(
    "--newer-than", metavar="DURATION", help="Only messages dead-lettered at most this long ago."
)
@_options(ReplayConfig)
@_options(ScanConfig, skip=("max_messages",))
def replay(**options: Any) -> int:
    """Replay failed callbacks from the DLQ (or an export file), filtered.

    A DLQ message is deleted only after its replay succeeded: accepted by the destination
    queue (body verbatim, relay-* attributes dropped), or answered 200 by Transfer Family
    (with the worker's retry policy). Failures and unselected messages stay in the DLQ,
    visible at once. What a DLQ or a file holds is data: it is shown escaped, and a copy goes
    only to --queue-url or to a queue SQS lists as a source of the DLQ (destination_not_allowed
    otherwise; a DLQ without sources, or a file, sends to each annotated queue and lists it).
    SIGINT/SIGTERM stop reading, let replays in progress finish within --shutdown-grace and
    give the rest back. With --tracing (or OTEL_TRACES_EXPORTER) each replay continues the
    trace its copy carries. Exit 0 when everything selected was replayed, 1 when some was not.
    """
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source("dlq_url")
    if options["from_file"] is not None and source is ParameterSource.ENVIRONMENT:
        options["dlq_url"] = None  # RELAY_DLQ_URL is a default, not a second source
    older, newer = options.pop("older_than"), options.pop("newer_than")
    filters = ReplayFilters(
        reasons=frozenset(options.pop("reason")),
        error_codes=frozenset(options.pop("error_code")),
        workflow_ids=frozenset(options.pop("workflow_id")),
        older_than_s=parse_duration(older) if older is not None else None,
        newer_than_s=parse_duration(newer) if newer is not None else None,
    )
    scan = _scan_config(options)
    config = ReplayConfig(scan=scan, filters=filters, **options)
    from relay.dlq.export import read_export
    from relay.dlq.replay import replay as run_replay
    from relay.terminal import print_json, print_replay, show_progress
    from relay.tracing import start_tracing

    # A bad export file is bad usage: said before anything is read or sent.
    records = read_export(config.from_file) if config.from_file is not None else None
    tracing = start_tracing(os.environ, flag=config.tracing)
    try:
        summary = asyncio.run(run_replay(config, records, show_progress, tracing=tracing))
    finally:
        tracing.shutdown()
    if config.json_output:
        print_json(summary.to_json())
    else:
        print_replay(summary, config.top)
    return EXIT_OK if summary.ok else EXIT_FAILURES


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
