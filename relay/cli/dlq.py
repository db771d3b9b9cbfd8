"""The DLQ tools' commands: `relay dlq stats|export|purge` and `relay replay`.

Each builds its settings (`relay.config.dlq`), runs one function of `relay.dlq` and prints its
summary with `relay.terminal`; exit 0 ok, 1 the job found failures, 2 bad usage.
"""

import asyncio
import os
from collections.abc import Callable
from typing import Any

import click

from relay.cli.options import EXIT_FAILURES, EXIT_OK, Command, config_options
from relay.config import options_of
from relay.config.dlq import (
    EXECUTION_STATES,
    ExportConfig,
    PurgeConfig,
    ReplayConfig,
    ReplayFilters,
    ScanConfig,
    StatsConfig,
    parse_duration,
)


def _scan_config(options: dict[str, Any], *, skip: tuple[str, ...] = ()) -> ScanConfig | None:
    """The ScanConfig the scan options and --dlq-url describe (None without a DLQ); pops them,
    but those named in `skip` (the command's own option of that name)."""
    names = [
        spec.name
        for spec in options_of(ScanConfig)
        if spec.name in options and spec.name not in skip
    ]
    settings = {name: options.pop(name) for name in names}
    dlq_url = options.pop("dlq_url")
    return ScanConfig(dlq_url=dlq_url, **settings) if dlq_url else None


_DLQ_URL = click.option(
    "--dlq-url", envvar="RELAY_DLQ_URL", show_envvar=True, required=True, help="The DLQ."
)
_EXECUTION_STATE = click.option(
    "--execution-state",
    multiple=True,
    type=click.Choice(EXECUTION_STATES),
    help="Only copies whose execution is in this state (repeatable): waiting (Transfer Family "
    "lists it in progress), finished (its workflow was read, it is not in progress), unknown "
    "(it could not be read, or the copy is not a step result).",
)


def _filter_options(command: Command) -> Command:
    """The filters `relay replay` and `relay dlq purge` share."""
    decorators: list[Callable[[Command], Command]] = [
        click.option(
            "--reason",
            multiple=True,
            help="Only this relay-reason (repeatable; `unannotated` = without relay-* attributes).",
        ),
        click.option(
            "--error-code", multiple=True, help="Only this relay-error-code (repeatable)."
        ),
        click.option("--workflow-id", multiple=True, help="Only this workflow (repeatable)."),
        click.option(
            "--older-than",
            metavar="DURATION",
            help="Only messages dead-lettered at least this long ago: 90s, 30m, 2h, 1d.",
        ),
        click.option(
            "--newer-than",
            metavar="DURATION",
            help="Only messages dead-lettered at most this long ago.",
        ),
        _EXECUTION_STATE,
    ]
    for decorate in reversed(decorators):
        command = decorate(command)
    return command


def _filters(options: dict[str, Any]) -> ReplayFilters:
    """The filters the shared options describe; pops them."""
    older, newer = options.pop("older_than"), options.pop("newer_than")
    return ReplayFilters(
        reasons=frozenset(options.pop("reason")),
        error_codes=frozenset(options.pop("error_code")),
        workflow_ids=frozenset(options.pop("workflow_id")),
        older_than_s=parse_duration(older) if older is not None else None,
        newer_than_s=parse_duration(newer) if newer is not None else None,
        execution_states=frozenset(options.pop("execution_state")),
    )


@click.group()
def dlq() -> None:
    """Look at a dead-letter queue: counts, a copy in a file; purge what no one can use."""


@dlq.command("stats")
@_DLQ_URL
@_EXECUTION_STATE
@config_options(StatsConfig)
@config_options(ScanConfig)
def dlq_stats_command(**options: Any) -> int:
    """Counts by reason and error code, top workflows, oldest and newest dead-letter time, and
    which copies can still help: by workflow, how many copies' executions still wait (waiting),
    have ended (finished) or could not be read (unknown), and how long the oldest waiting copy
    has been in the DLQ (its step waits 30 minutes at most).

    Changes nothing: every message read is made visible again as soon as reading ends.
    Messages SQS's own redrive moved (no relay-* attributes) count as `unannotated`.
    """
    scan = _scan_config(options)
    assert scan is not None  # --dlq-url is required
    states = frozenset(options.pop("execution_state"))
    config = StatsConfig(scan=scan, execution_states=states, **options)
    from relay.dlq.stats import dlq_stats
    from relay.terminal import print_json, print_stats, show_progress

    stats = asyncio.run(dlq_stats(config, show_progress))
    if config.json_output:
        print_json(stats.to_json(config.top))
    else:
        print_stats(stats, config.top)
    return EXIT_OK if stats.complete else EXIT_FAILURES


_OUT_HELP = "File to write (mode 0600), replaced only when the whole DLQ was read."


@dlq.command("export")
@_DLQ_URL
@click.option("--out", required=True, metavar="F.jsonl", help=_OUT_HELP)
@_EXECUTION_STATE
@config_options(ExportConfig)
@config_options(ScanConfig)
def dlq_export_command(**options: Any) -> int:
    """Copy the DLQ to a JSON Lines file (for audit, or `relay replay --from-file`).

    One object per message: message_id, sent_timestamp (ms), attributes, body. Changes
    nothing: every message read is made visible again as soon as reading ends. The file holds
    whole callback tokens: it is created 0600, never through a symbolic link, and an existing
    one is replaced only when the export is whole (exit 1 and left as it was otherwise).
    With --execution-state, only those copies are written (Transfer Family is asked).
    """
    scan = _scan_config(options)
    assert scan is not None  # --dlq-url is required
    states = frozenset(options.pop("execution_state"))
    config = ExportConfig(scan=scan, execution_states=states, **options)
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


@dlq.command("purge")
@_DLQ_URL
@click.option(
    "--out",
    metavar="F.jsonl",
    help="Export file the selected copies are written to (mode 0600, whole, on disk) before "
    "any is deleted; needed unless --dry-run.",
)
@_filter_options
@config_options(PurgeConfig)
@config_options(ScanConfig, skip=("max_messages",))
def dlq_purge_command(**options: Any) -> int:
    """Delete the copies an operator has given up on, after writing them to an export file.

    Selects like `relay replay` (the same filters; --execution-state finished picks the copies
    no callback can help any more). Reads the DLQ once through holding what it selects, writes
    all of it to --out (as `relay dlq export` does: a temporary file beside it, mode 0600,
    renamed over it only when whole, never through a symbolic link), and only then deletes each
    copy it wrote. Anything interrupted before the file is in place deletes nothing. --dry-run
    writes and deletes nothing. Exit 0 when everything selected was deleted, 1 otherwise.
    """
    filters = _filters(options)
    # --max-messages bounds what is deleted, not what is read (the scan's own limit stays).
    scan = _scan_config(options, skip=("max_messages",))
    assert scan is not None  # --dlq-url is required
    config = PurgeConfig(scan=scan, filters=filters, **options)
    from relay.dlq.purge import dlq_purge
    from relay.terminal import print_json, print_purge, show_progress

    summary = asyncio.run(dlq_purge(config, show_progress))
    if config.json_output:
        print_json(summary.to_json(config.top))
    else:
        print_purge(summary, config.top)
    return EXIT_OK if summary.ok else EXIT_FAILURES


@click.command()
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
@_filter_options
@config_options(ReplayConfig)
@config_options(ScanConfig, skip=("max_messages",))
def replay(**options: Any) -> int:
    """Replay failed callbacks from the DLQ (or an export file), filtered.

    A DLQ message is deleted only after its replay succeeded: accepted by the destination
    queue (body verbatim, relay-* attributes dropped), or answered 200 by Transfer Family
    (with the worker's retry policy). Failures and unselected messages stay in the DLQ,
    visible at once. A copy whose execution has finished (Transfer Family no longer lists it
    in progress) is not replayed: it stays, counted as skipped execution_finished
    (--include-finished replays it); a copy whose execution could not be read is replayed and
    counted as unchecked, with why. What a DLQ or a file holds is data: it is shown escaped,
    and a copy goes only to --queue-url or to a queue SQS lists as a source of the DLQ
    (destination_not_allowed otherwise; a DLQ without sources, or a file, sends to each
    annotated queue and lists it). SIGINT/SIGTERM stop reading, let replays in progress finish
    within --shutdown-grace and give the rest back. With --tracing (or OTEL_TRACES_EXPORTER)
    each replay continues the trace its copy carries. Exit 0 when everything selected was
    replayed, 1 when some was not.
    """
    from click.core import ParameterSource

    source = click.get_current_context().get_parameter_source("dlq_url")
    if options["from_file"] is not None and source is ParameterSource.ENVIRONMENT:
        options["dlq_url"] = None  # RELAY_DLQ_URL is a default, not a second source
    filters = _filters(options)
    # --max-messages bounds what is replayed, not what is read (the scan's own limit stays).
    scan = _scan_config(options, skip=("max_messages",))
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
