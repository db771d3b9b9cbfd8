"""The machine, the table, the targets of issue 7, and the JSON files in bench/results/."""

import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.endpoints import REPO, Endpoints
from relay import DISTRIBUTION

RESULTS_DIR: Final = REPO / "bench" / "results"
NOISE_NOTE: Final = (
    "2-core machine shared with other engineers' test suites running concurrently: "
    "numbers are noisy; compare contenders within one run, not across runs"
)
PACKAGES: Final = (
    "aiobotocore",
    "botocore",
    "aiohttp",
    "boto3",
    "moto",
    "opentelemetry-sdk",
    "opentelemetry-exporter-otlp-proto-http",
    DISTRIBUTION,
)
TABLE_ENDPOINT: Final = (
    "moto's DynamoDB server in its own process (python -m bench.dynamodb_server)"
)
OTLP_ENDPOINT: Final = (
    "an OTLP/HTTP receiver counting spans, in its own process (python -m bench.otlp_server)"
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine(endpoints: Endpoints, *, table: bool = False, otlp: bool = False) -> dict[str, Any]:
    """What ran where: cores, CPU, Python, library versions, the endpoints, the commit."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "cores": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": versions,
        "node": endpoints.node_version,
        "fauxqs": endpoints.fauxqs_version,
        "sqs_endpoint": f"fauxqs {endpoints.fauxqs_version} on Node {endpoints.node_version}",
        "transfer_endpoint": "relay emulator (python -m relay emulator)",
        "table_endpoint": TABLE_ENDPOINT if table else None,
        "otlp_endpoint": OTLP_ENDPOINT if otlp else None,
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "load_average": list(os.getloadavg()),
        "note": NOISE_NOTE,
    }


# --- aggregation -------------------------------------------------------------------------------

MEDIAN_FIELDS: Final = (
    "messages",
    "delivered",
    "rate_per_s",
    "window_s",
    "successes",
    "e2e_p50_s",
    "e2e_p99_s",
    "cpu_per_1k_active_s",
    "cpu_per_1k_total_s",
    "cpu_util",
    "peak_rss_mb",
    "calls",
    "throttled",
    "throttled_share",
    "calls_per_delivered",
    "duplicates",
    "dlq",
    "discarded",
    "wall_s",
    "drained_s",
    "sqs_server_cpu_util",
    "emulator_cpu_util",
    "steps",
    "copies",
    "calls_per_step",
    "successes_per_step",
    "invalid_request",
    "relay_delivered",
    "relay_duplicates",
    "relay_released",
    "relay_dlq_invalid_request",
    "table_writes",
    "table_writes_per_delivered",
    "table_server_cpu_s",
    "table_server_cpu_per_1k_active_s",
    "table_server_cpu_util",
    "table_server_cpu_per_call_ms",
    "spans",
    "spans_per_delivered",
)


def summarize(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (workload, contender), medians over rounds, in first-run order."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["workload"], run["contender"]), []).append(run)
    rows = []
    for (workload, contender), group in groups.items():
        row: dict[str, Any] = {"workload": workload, "contender": contender, "rounds": len(group)}
        for name in MEDIAN_FIELDS:
            values = [r[name] for r in group if r.get(name) is not None]
            row[name] = statistics.median(values) if values else None
        row["accounted"] = all(r["accounted"] for r in group)
        row["timed_out"] = any(r["timed_out"] for r in group)
        row["failed"] = any(any(r["exit_codes"]) for r in group)
        rows.append(row)
    return rows


def _row(rows: Sequence[dict[str, Any]], workload: str, contender: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["workload"] == workload and r["contender"] == contender), None
    )


# --- targets -----------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def targets(
    rows: Sequence[dict[str, Any]], throttles: dict[str, tuple[float, int]]
) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the value reached in this run (None: not run).

    `throttles` maps a workload to its bucket (rate per second, burst). W2's goodput is the
    share of what the bucket allowed inside the window: successes / (burst + rate * window),
    so a short run is not flattered by the initial burst.
    """
    found: list[dict[str, Any]] = []

    def add(name: str, value: float | None, threshold: float, higher_is_better: bool) -> None:
        reached = None
        if value is not None:
            reached = value >= threshold if higher_is_better else value <= threshold
        found.append(
            {
                "target": name,
                "value": None if value is None else round(value, 3),
                "threshold": threshold,
                "reached": reached,
            }
        )

    def rate(workload: str, contender: str) -> float | None:
        row = _row(rows, workload, contender)
        return None if row is None else row["rate_per_s"]

    def field(workload: str, contender: str, name: str) -> float | None:
        row = _row(rows, workload, contender)
        return None if row is None else row.get(name)

    add("W1 relay / naive (cb/s) >= 20", _ratio(rate("W1", "relay"), rate("W1", "naive")), 20, True)
    add(
        "W1 relay / threadpool (cb/s) >= 2",
        _ratio(rate("W1", "relay"), rate("W1", "threadpool")),
        2,
        True,
    )
    add(
        "W1 relay / floor (cb/s) >= 0.7",
        _ratio(rate("W1", "relay"), rate("W1", "floor")),
        0.7,
        True,
    )
    add(
        "W1 relay CPU/msg / floor CPU/call <= 1.5 (active window)",
        _ratio(
            field("W1", "relay", "cpu_per_1k_active_s"), field("W1", "floor", "cpu_per_1k_active_s")
        ),
        1.5,
        False,
    )
    add(
        "W1 relay (lean sender) CPU/msg / lean floor CPU/call <= 2 (active window)",
        _ratio(
            field("W1", "relay", "cpu_per_1k_active_s"),
            field("W1", "floor-lean", "cpu_per_1k_active_s"),
        ),
        2,
        False,
    )
    add(
        "W1 lean sender: aiobotocore floor CPU/call / lean floor CPU/call >= 2",
        _ratio(
            field("W1", "floor", "cpu_per_1k_active_s"),
            field("W1", "floor-lean", "cpu_per_1k_active_s"),
        ),
        2,
        True,
    )
    add(
        "W1 relay / fair floor (msgs/s) >= 0.9",
        _ratio(rate("W1", "relay"), rate("W1", "floor-fair")),
        0.9,
        True,
    )
    add(
        "W1 relay CPU/msg / fair floor CPU/msg <= 1.5 (active window)",
        _ratio(
            field("W1", "relay", "cpu_per_1k_active_s"),
            field("W1", "floor-fair", "cpu_per_1k_active_s"),
        ),
        1.5,
        False,
    )
    bucket = throttles.get("W2")
    successes, window = field("W2", "relay", "successes"), field("W2", "relay", "window_s")
    allowed = None
    if bucket is not None and window is not None:
        allowed = bucket[1] + bucket[0] * window
    add(
        "W2 relay goodput / allowed (burst + rate * window) >= 0.95",
        _ratio(successes, allowed),
        0.95,
        True,
    )
    add(
        "W2 relay throttled share of calls <= 0.05",
        field("W2", "relay", "throttled_share"),
        0.05,
        False,
    )
    w3 = _row(rows, "W3", "relay")
    add(
        "W3 relay every message accounted (delivered + DLQ == sent)",
        None if w3 is None else float(bool(w3["accounted"])),
        1.0,
        True,
    )
    add(
        "W3 relay / W1 relay (cb/s) >= 0.85",
        _ratio(rate("W3", "relay"), rate("W1", "relay")),
        0.85,
        True,
    )
    add(
        "W4 two relays / one (cb/s) >= 1.6",
        _ratio(rate("W4", "relay-x2"), rate("W4", "relay")),
        1.6,
        True,
    )
    add(
        "W4d relay --dedupe-table CPU/step / without the table <= 1.4 (moto's CPU apart)",
        _ratio(
            field("W4d", "relay-table", "cpu_per_1k_active_s"),
            field("W4d", "relay", "cpu_per_1k_active_s"),
        ),
        1.4,
        False,
    )
    add(
        "W4d relay --dedupe-table CPU/step / relay-paced (no table, same rate) <= 1.4",
        _ratio(
            field("W4d", "relay-table", "cpu_per_1k_active_s"),
            field("W4d", "relay-paced", "cpu_per_1k_active_s"),
        ),
        1.4,
        False,
    )
    add(
        "M peak RSS at 5N / at N <= 1.10",
        _ratio(field("M", "relay-5x", "peak_rss_mb"), field("M", "relay-1x", "peak_rss_mb")),
        1.10,
        False,
    )
    return found


# --- output ------------------------------------------------------------------------------------

COLUMNS: Final = (
    ("contender", "contender", "{}"),
    ("msgs", "messages", "{:.0f}"),
    ("deliv", "delivered", "{:.0f}"),
    ("cb/s", "rate_per_s", "{:.1f}"),
    ("e2e p50 s", "e2e_p50_s", "{:.2f}"),
    ("e2e p99 s", "e2e_p99_s", "{:.2f}"),
    ("CPU s/1k", "cpu_per_1k_active_s", "{:.2f}"),
    ("CPU s/1k tot", "cpu_per_1k_total_s", "{:.2f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("throttled", "throttled", "{:.0f}"),
    ("calls/deliv", "calls_per_delivered", "{:.2f}"),
    ("dup", "duplicates", "{:.0f}"),
    ("DLQ", "dlq", "{:.0f}"),
    ("acct", "accounted", "{}"),
    ("wall s", "wall_s", "{:.1f}"),
    ("SQS cpu", "sqs_server_cpu_util", "{:.2f}"),
    ("emu cpu", "emulator_cpu_util", "{:.2f}"),
)


COPIES_COLUMNS: Final = (
    ("contender", "contender", "{}"),
    ("steps", "steps", "{:.0f}"),
    ("msgs", "messages", "{:.0f}"),
    ("calls/step", "calls_per_step", "{:.2f}"),
    ("200s/step", "successes_per_step", "{:.2f}"),
    ("InvalidRequest", "invalid_request", "{:.0f}"),
    ("DLQ", "dlq", "{:.0f}"),
    ("deliv", "delivered", "{:.0f}"),
    ("relay deliv", "relay_delivered", "{:.0f}"),
    ("relay dup", "relay_duplicates", "{:.0f}"),
    ("released", "relay_released", "{:.0f}"),
    ("cb/s", "rate_per_s", "{:.1f}"),
    ("relay CPU ms/step", "cpu_per_1k_active_s", "{:.2f}"),
    ("tot", "cpu_per_1k_total_s", "{:.2f}"),
    ("writes/step", "table_writes_per_delivered", "{:.2f}"),
    ("moto CPU ms/step", "table_server_cpu_per_1k_active_s", "{:.2f}"),
    ("moto cpu", "table_server_cpu_util", "{:.2f}"),
    ("acct", "accounted", "{}"),
)
"""Workloads with copies: what the copies cost, per step (a step is delivered once)."""

TRACING_COLUMNS: Final = (
    ("contender", "contender", "{}"),
    ("msgs", "messages", "{:.0f}"),
    ("deliv", "delivered", "{:.0f}"),
    ("cb/s", "rate_per_s", "{:.1f}"),
    ("CPU ms/msg", "cpu_per_1k_active_s", "{:.2f}"),
    ("tot", "cpu_per_1k_total_s", "{:.2f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("spans", "spans", "{:.0f}"),
    ("spans/msg", "spans_per_delivered", "{:.2f}"),
    ("acct", "accounted", "{}"),
)
"""relay with tracing off and on, side by side (the untraced relay's spans are `-`)."""


def _cell(value: Any, pattern: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "ok" if value else "NO"
    return pattern.format(value)


def table(
    rows: Sequence[dict[str, Any]],
    titles: dict[str, str],
    markdown: bool = False,
    columns: Sequence[tuple[str, str, str]] = COLUMNS,
) -> str:
    """The rows as a text (or Markdown) table per workload."""
    out: list[str] = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == workload]
        cells = [[_cell(r.get(key), fmt) for _, key, fmt in columns] for r in group]
        for line, r in zip(cells, group, strict=True):
            if r["timed_out"]:
                line[0] += " (timeout)"
            elif r["failed"]:
                line[0] += " (exit!=0)"
        heads = [head for head, _, _ in columns]
        out.append(f"{workload}: {titles.get(workload, '')}")
        if markdown:
            out.append("")
            out.append("| " + " | ".join(heads) + " |")
            out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(heads))) + "|")
            out.extend("| " + " | ".join(line) + " |" for line in cells)
        else:
            widths = [max(len(h), *(len(line[i]) for line in cells)) for i, h in enumerate(heads)]
            out.append(
                "  ".join(
                    h.rjust(w) if i else h.ljust(w)
                    for i, (h, w) in enumerate(zip(heads, widths, strict=True))
                )
            )
            for line in cells:
                out.append(
                    "  ".join(
                        c.rjust(w) if i else c.ljust(w)
                        for i, (c, w) in enumerate(zip(line, widths, strict=True))
                    )
                )
        out.append("")
    return "\n".join(out)


def tracing_table(
    rows: Sequence[dict[str, Any]], titles: dict[str, str], markdown: bool = False
) -> str:
    """relay's rows of the workloads where a traced relay ran, in `TRACING_COLUMNS`; empty when
    none did."""
    traced = {r["workload"] for r in rows if r.get("spans") is not None}
    chosen = [
        r for r in rows if r["workload"] in traced and str(r["contender"]).startswith("relay")
    ]
    if not chosen:
        return ""
    return table(chosen, titles, markdown=markdown, columns=TRACING_COLUMNS)


def copies_table(
    rows: Sequence[dict[str, Any]], titles: dict[str, str], markdown: bool = False
) -> str:
    """The workloads with copies again, in `COPIES_COLUMNS`; empty when there are none."""
    with_copies = [r for r in rows if r.get("copies")]
    if not with_copies:
        return ""
    titles = {name: f"{title} — copies" for name, title in titles.items()}
    return table(with_copies, titles, markdown=markdown, columns=COPIES_COLUMNS)


def targets_text(found: Sequence[dict[str, Any]], markdown: bool = False) -> str:
    """The targets as lines (or a Markdown list)."""
    lines = []
    for target in found:
        if target["reached"] is None:
            verdict = "not run"
        else:
            verdict = "reached" if target["reached"] else "MISSED"
        value = "-" if target["value"] is None else f"{target['value']:g}"
        prefix = "- " if markdown else "  "
        lines.append(f"{prefix}{target['target']}: {value} → {verdict}")
    return "\n".join(lines)


def write_results(
    *,
    started_at: datetime,
    command: str,
    machine_info: dict[str, Any],
    workloads: Sequence[dict[str, Any]],
    runs: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    found: Sequence[dict[str, Any]],
    wall_s: float,
    directory: Path = RESULTS_DIR,
) -> list[Path]:
    """One JSON file per workload (`<timestamp>-<workload>.json`) and `latest.json` with all."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = started_at.strftime("%Y%m%dT%H%M%SZ")
    common = {
        "started_at": started_at.isoformat().replace("+00:00", "Z"),
        "finished_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "wall_s": round(wall_s, 1),
        "command": command,
        "machine": machine_info,
    }
    written = []
    for workload in workloads:
        name = workload["name"]
        document = {
            **common,
            "workload": workload,
            "summary": [r for r in rows if r["workload"] == name],
            "runs": [r for r in runs if r["workload"] == name],
        }
        path = directory / f"{stamp}-{name}.json"
        _write_json(path, document)
        written.append(path)
    latest = directory / "latest.json"
    _write_json(
        latest,
        {
            **common,
            "workloads": list(workloads),
            "summary": list(rows),
            "targets": list(found),
            "runs": list(runs),
        },
    )
    written.append(latest)
    return written


def _write_json(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")
    temporary.replace(path)


def render_markdown(path: Path) -> str:
    """A results file as the README shows it: machine, command, tables, targets."""
    document = json.loads(path.read_text())
    info = document["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    titles = {w["name"]: w["title"] for w in document.get("workloads", [])}
    if "workload" in document:
        titles[document["workload"]["name"]] = document["workload"]["title"]
    lines = [
        f"Run {document['started_at']}, {document['wall_s']:.0f} s, commit "
        f"{info['git_commit']}{' (with uncommitted changes)' if info['git_dirty'] else ''}.",
        "",
        f"- command: `{document['command']}`",
        f"- machine: {info['cores']} cores, {info['cpu_model']}, {info['memory_gib']} GiB, "
        f"Linux {info['kernel']}, Python {info['python']}; {packages}",
        f"- SQS: {info['sqs_endpoint']}; Transfer Family: {info['transfer_endpoint']}"
        + (f"; DynamoDB: {info['table_endpoint']}" if info.get("table_endpoint") else "")
        + (f"; OTLP: {info['otlp_endpoint']}" if info.get("otlp_endpoint") else ""),
        f"- load average {info['load_average'][0]:.1f} at the start, "
        f"{info.get('load_average_end', [0.0])[0]:.1f} at the end; {info['note']}",
        "",
        table(document["summary"], titles, markdown=True),
        copies_table(document["summary"], titles, markdown=True),
        tracing_table(document["summary"], titles, markdown=True),
    ]
    if document.get("targets"):
        lines += ["Targets:", "", targets_text(document["targets"], markdown=True)]
    return "\n".join(lines)
