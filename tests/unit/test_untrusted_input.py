"""Input relay does not control, read as data: DLQ dates, terminal text, queue URLs, the
parser's repeated keys, export lines and the export file itself (issue 14)."""

import json
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from relay.config.dlq import ReplayConfig, ScanConfig
from relay.dead_letter import DEAD_LETTERED_AT, SOURCE_QUEUE, DlqMessage, iso_utc, parse_time
from relay.dlq.destinations import AllowedBy, Destinations, Route, allowed_destinations
from relay.dlq.export import ExportFile, ExportWriteFailed, open_export
from relay.errors import ConfigError
from relay.message import InvalidMessage, StepResult, parse
from relay.progress import time_text
from relay.sqs import dead_letter_sources, queue_identity
from relay.sqs.outgoing import text_problem
from relay.terminal import shown

STEP = StepResult("w-1234567890abcdefg", "abcd1234-aa11-bb22-cc33-abcdef123456", "tok_1", "SUCCESS")

# --- dates ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59-01:00",  # parses; past year 9999 once in UTC
        "0001-01-01T00:00:00+01:00",  # before year 1 once in UTC
        "2026-02-30T00:00:00Z",
        "yesterday",
        "[/]",
        "",
        "9" * 10_000,
    ],
)
def test_unreadable_dead_letter_times_are_unknown(text: str) -> None:
    """A date that does not parse, or is outside years 1 to 9999 in UTC, is None, not an error,
    and a message carrying it says so."""
    assert parse_time(text) is None
    message = DlqMessage("m", "{}", {DEAD_LETTERED_AT: text}, sent_at_ms=0)
    assert message.dead_lettered_at is None
    assert message.unreadable_date
    assert message.age_s(1_000.0) == 1_000.0, "aged from when it was sent"


def test_readable_times_parse_and_an_absent_one_is_not_unreadable() -> None:
    """ISO 8601 with `Z`, an offset or none (UTC) reads as Unix seconds; no attribute at all
    is unknown without being unreadable."""
    assert parse_time("2026-01-01T00:00:00Z") == parse_time("2026-01-01T01:00:00+01:00")
    assert parse_time("2026-01-01T00:00:00") == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert parse_time("9999-12-31T23:59:59+01:00") is not None
    assert not DlqMessage("m", "{}", {}, sent_at_ms=0).unreadable_date


@settings(max_examples=200, deadline=None)
@given(
    text=st.text(max_size=40)
    | st.datetimes().map(str)
    | st.datetimes().map(lambda d: d.isoformat() + "-23:59")
)
def test_parse_time_never_raises_and_time_text_shows_what_it_reads(text: str) -> None:
    """Whatever the text, parse_time gives None or a time that time_text can show again."""
    moment = parse_time(text)
    if moment is not None:
        shown_again = time_text(moment)
        assert shown_again is not None
        # Shown to the millisecond (truncated), from a float that far from 1970 carries a few
        # microseconds of rounding: within two milliseconds.
        assert parse_time(shown_again) == pytest.approx(moment, abs=0.002)


@pytest.mark.parametrize("moment", [1e300, -1e300, float("inf"), float("nan"), 253402300800.0])
def test_time_text_of_an_impossible_moment_is_none(moment: float) -> None:
    """Seconds no date can show give None, not an error."""
    assert time_text(moment) is None


def test_iso_utc_writes_four_digit_years_and_z() -> None:
    """Early years keep their leading zeros (strftime dropped them); the zone is `Z`."""
    assert iso_utc(datetime(5, 1, 2, 3, 4, 5, 6000, tzinfo=UTC)) == "0005-01-02T03:04:05.006Z"
    assert (
        iso_utc(datetime(2026, 11, 27, 14, 48, 2, 789000, tzinfo=UTC)) == "2026-11-27T14:48:02.789Z"
    )


# --- what reaches the terminal -------------------------------------------------------------


def printed(value: str) -> str:
    """What a summary console prints for one value read from a DLQ."""
    console = Console(
        force_terminal=True, width=400, highlight=False, markup=False, emoji=False, record=True
    )
    with console.capture() as capture:
        console.print(shown(value), soft_wrap=True)
    return capture.get()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("[/]", "[/]"),
        ("[link=https://evil.example/]x[/link]", "[link=https://evil.example/]x[/link]"),
        (":thumbs_up:", ":thumbs_up:"),
        ("\x1b[2J\x1b]8;;https://e/\x1b\\", "\\x1b[2J\\x1b]8;;https://e/\\x1b\\"),
        ("a\rb\nc\td", "a\\rb\\nc\\td"),
        ("\u202eevil\u2028", "\\u202eevil\\u2028"),
        ("\u009b2J\u0085", "\\x9b2J\\x85"),
        ("lone \ud800", "lone \\ud800"),
        ("héllo ✓ 𝄞", "héllo ✓ 𝄞"),
    ],
)
def test_shown_values_print_literally_with_controls_escaped(value: str, expected: str) -> None:
    """Markup and emoji codes print as written; control, format and separator characters print
    as escapes; other text is untouched."""
    assert printed(value).rstrip("\n") == expected


def test_shown_values_are_cut_to_a_readable_length() -> None:
    """A 256 KB attribute is cut in a table (JSON output keeps it whole)."""
    assert printed("x" * 300_000).rstrip("\n") == "x" * 200 + "…"


@settings(max_examples=300, deadline=None)
@given(value=st.text())
def test_any_value_prints_without_an_escape_character(value: str) -> None:
    """Whatever a DLQ holds, printing it neither fails nor emits a control character of its own."""
    out = printed(value)
    assert all(c.isprintable() or c == "\n" for c in out.replace("\x1b[0m", "")), repr(out)


# --- SQS's rules for text ------------------------------------------------------------------


def test_text_problem_names_the_first_character_sqs_refuses() -> None:
    """Characters outside SQS's set are named with their position; a lone surrogate says so."""
    assert text_problem("ok é 𝄞 \t\r\n") is None
    assert text_problem("ab\x00") == "character U+0000 at 2 is refused by SQS"
    assert text_problem("\ufffe") == "character U+FFFE at 0 is refused by SQS"
    problem = text_problem("x\udc80")
    assert problem is not None
    assert problem.startswith("character U+DC80 at 1 is a lone surrogate")


# --- destinations --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "identity"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/results", ("123456789012", "results")),
        ("https://eu-west-1.queue.amazonaws.com/123456789012/r.fifo", ("123456789012", "r.fifo")),
        ("http://127.0.0.1:5000/123456789012/q-1_x", ("123456789012", "q-1_x")),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/results?Action=Send", None),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/results/", None),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/a/b", None),
        ("https://sqs.eu-west-1.amazonaws.com/me/results", None),
        ("https://sqs.eu-west-1.amazonaws.com/１２３/results", None),
        ("file:///123456789012/results", None),
        ("https:///123456789012/results", None),
        ("http://[::1/123/q", None),
        ("[/]", None),
    ],
)
def test_queue_identity_is_account_and_name_of_a_queue_url(
    url: str, identity: tuple[str, str] | None
) -> None:
    """Any host form of a queue URL gives (account, name); anything else gives None."""
    assert queue_identity(url) == identity


SOURCE = "https://sqs.eu-west-1.amazonaws.com/123456789012/results"


def dead_from(source: str | None) -> DlqMessage:
    """A DLQ message whose relay-source-queue is `source`."""
    attributes = {} if source is None else {SOURCE_QUEUE: source}
    return DlqMessage("m", STEP.to_body(), attributes, sent_at_ms=0)


def test_routes_with_sources_listed_go_only_to_those() -> None:
    """A listed source (any host form) goes to SQS's URL for it; an unlisted queue or a URL
    that is not a queue's is destination_not_allowed; no annotation is no_destination."""
    listed = Destinations(sources={("123456789012", "results"): SOURCE})
    legacy = "https://queue.amazonaws.com/123456789012/results"
    assert listed.route(dead_from(legacy)) == Route(SOURCE, AllowedBy.DEAD_LETTER_SOURCE)
    other = listed.route(dead_from("https://sqs.eu-west-1.amazonaws.com/999999999999/results"))
    assert isinstance(other, tuple)
    assert other[0] == "destination_not_allowed"
    refused = listed.route(dead_from("x" * 10_000))
    assert isinstance(refused, tuple)
    assert refused[0] == "destination_not_allowed"
    assert len(refused[1]) < 300
    assert listed.route(dead_from(None)) == (
        "no_destination",
        "no relay-source-queue attribute: pass --queue-url",
    )


def test_routes_without_a_list_take_the_annotation_unchecked_and_queue_url_wins() -> None:
    """With no list, an annotated queue URL is taken as it is (marked unchecked); --queue-url
    sends every message there whatever it says."""
    unchecked = Destinations(unchecked_why="no list")
    assert unchecked.route(dead_from(SOURCE)) == Route(SOURCE, AllowedBy.UNCHECKED)
    assert unchecked.route(dead_from("not a url"))[0] == "destination_not_allowed"  # type: ignore[index]
    fixed = Destinations(queue_url="https://q/1/x")
    assert fixed.route(dead_from(None)) == Route("https://q/1/x", AllowedBy.QUEUE_URL)
    assert fixed.route(dead_from(SOURCE)) == Route("https://q/1/x", AllowedBy.QUEUE_URL)


class PagedSources:
    """ListDeadLetterSourceQueues answering in pages of two (moto answers in one page)."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.requests: list[dict[str, Any]] = []

    async def list_dead_letter_source_queues(self, **request: Any) -> dict[str, Any]:
        self.requests.append(request)
        start = int(request.get("NextToken", "0"))
        page: dict[str, Any] = {"queueUrls": self.urls[start : start + 2]}
        if start + 2 < len(self.urls):
            page["NextToken"] = str(start + 2)
        return page


async def test_dead_letter_sources_reads_every_page() -> None:
    """Every page is read, each request carrying the last NextToken."""
    urls = [f"https://sqs.eu-west-1.amazonaws.com/123456789012/q{i}" for i in range(5)]
    client = PagedSources(urls)
    assert await dead_letter_sources(client, "https://dlq") == urls  # type: ignore[arg-type]
    assert [r.get("NextToken") for r in client.requests] == [None, "2", "4"]


# --- repeated keys -------------------------------------------------------------------------


def canonical_text(*pairs: tuple[str, str]) -> str:
    """A JSON object written pair by pair, so a key can repeat."""
    return "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v)}" for k, v in pairs) + "}"


FIELDS = [
    ("WorkflowId", STEP.workflow_id),
    ("ExecutionId", STEP.execution_id),
    ("Token", STEP.token),
    ("Status", "FAILURE"),
]


def event_text(execution_details: str) -> str:
    """Shape 2 with `executionDetails` given as raw JSON text."""
    return (
        '{"token": "tok_1", "status": "SUCCESS", '
        f'"serviceMetadata": {{"executionDetails": {execution_details}}}}}'
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (canonical_text(*FIELDS, ("Status", "SUCCESS")), "Status"),
        (canonical_text(("Token", "tok_2"), *FIELDS), "Token"),
        (
            event_text(
                '{"workflowId": "w-1234567890abcdefg", "workflowId": "w-0000000000abcdefg", '
                '"executionId": "abcd1234-aa11-bb22-cc33-abcdef123456"}'
            ),
            "serviceMetadata.executionDetails.workflowId",
        ),
        (
            event_text("{}").replace(
                '"status": "SUCCESS"', '"status": "SUCCESS", "status": "FAILURE"'
            ),
            "status",
        ),
        (
            json.dumps(
                {"Type": "Notification", "Message": canonical_text(*FIELDS, ("Status", "SUCCESS"))}
            ),
            "Message.Status",
        ),
        (
            canonical_text(
                ("Type", "Notification"), ("Message", "{}"), ("Message", STEP.to_body())
            ),
            "Message",
        ),
    ],
)
def test_a_repeated_key_relay_reads_is_a_validation_error_naming_it(body: str, field: str) -> None:
    """`"Status": "FAILURE", "Status": "SUCCESS"` (read as SUCCESS before) and its like in
    each shape and level are refused, naming the key."""
    with pytest.raises(InvalidMessage) as raised:
        parse(body)
    assert (raised.value.field, raised.value.rule) == (field, "duplicate key")
    assert str(raised.value) == f"{field}: duplicate key"


def test_a_repeated_key_relay_ignores_is_ignored() -> None:
    """A key relay does not read may repeat, like any unknown key (and is never echoed)."""
    body = canonical_text(*FIELDS, ("note", "a"), ("note", "b"))
    assert parse(body).status.value == "FAILURE"
    deep = STEP.to_body()[:-1] + ', "fileLocation": {"key": "a", "key": "b"}}'
    assert parse(deep) == STEP


# --- the export file -----------------------------------------------------------------------


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """An existing export file in a directory of its own."""
    path = tmp_path / "dlq.jsonl"
    path.write_text("the export of last week\n")
    return path


def export_to(target: Path, then: Callable[[ExportFile], None]) -> ExportFile:
    """Writes a new export to `target`, then does `then` before the export is closed."""
    with open_export(str(target)) as export:
        export.file.write("the new export\n")
        then(export)
    return export


def interrupt(export: ExportFile) -> None:
    """Ctrl-C."""
    raise KeyboardInterrupt


def keep_but_put_a_directory_there(export: ExportFile) -> None:
    """A whole export, but a directory takes the target's place meanwhile."""
    export.keep = True
    export.path.unlink()
    export.path.mkdir()
    (export.path / "inside").write_text("kept\n")


def test_an_export_interrupted_leaves_the_file_and_no_temporary(target: Path) -> None:
    """Ctrl-C while writing (KeyboardInterrupt): the old file as it was, nothing else left."""
    with pytest.raises(KeyboardInterrupt):
        export_to(target, interrupt)
    assert target.read_text() == "the export of last week\n"
    assert [p.name for p in target.parent.iterdir()] == ["dlq.jsonl"]


def test_an_export_not_kept_leaves_the_file(target: Path) -> None:
    """An export that did not read the whole DLQ (keep not set) replaces nothing."""
    with open_export(str(target)) as export:
        export.file.write("part of an export\n")
        # Written beside the target, 0600, while it is being written.
        assert export.temporary.parent == target.parent
        assert stat.S_IMODE(export.temporary.stat().st_mode) == 0o600
    assert not export.saved
    assert target.read_text() == "the export of last week\n"
    assert [p.name for p in target.parent.iterdir()] == ["dlq.jsonl"]


def test_a_kept_export_replaces_the_file_with_mode_0600(target: Path) -> None:
    """A whole export is renamed over the target: its content, mode 0600 whatever the umask."""
    target.chmod(0o644)
    old_umask = os.umask(0)
    try:
        with open_export(str(target)) as export:
            export.file.write("the new export\n")
            export.keep = True
    finally:
        os.umask(old_umask)
    assert export.saved
    assert target.read_text() == "the new export\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert [p.name for p in target.parent.iterdir()] == ["dlq.jsonl"]


def test_a_symbolic_link_swapped_in_meanwhile_is_replaced_not_followed(target: Path) -> None:
    """A link put at the target while the export runs is replaced by the export; the file it
    points to is untouched."""
    victim = target.parent / "victim"
    victim.write_text("precious\n")
    with open_export(str(target)) as export:
        target.unlink()
        target.symlink_to(victim)
        export.file.write("the new export\n")
        export.keep = True
    assert not target.is_symlink()
    assert target.read_text() == "the new export\n"
    assert victim.read_text() == "precious\n"


def test_export_refusals_are_config_errors(tmp_path: Path) -> None:
    """A link, a directory or a missing directory: ConfigError (exit 2) before anything."""
    (tmp_path / "victim").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "victim")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    for path in ("link", "dangling", ".", "missing/dlq.jsonl"):
        with pytest.raises(ConfigError), open_export(str(tmp_path / path)):
            pytest.fail("opened")
    assert not (tmp_path / "nowhere").exists()


def test_a_failed_rename_is_an_export_write_failure(target: Path) -> None:
    """When the rename fails (a directory was put at the target meanwhile): ExportWriteFailed
    (exit 1, one line), the directory as it was and the temporary file gone."""
    with pytest.raises(ExportWriteFailed, match=r"cannot write .*left as it was"):
        export_to(target, keep_but_put_a_directory_there)
    assert (target / "inside").read_text() == "kept\n"
    assert [p.name for p in target.parent.iterdir()] == ["dlq.jsonl"]


class DeniedSources:
    """ListDeadLetterSourceQueues refused, as IAM refuses a role without the permission."""

    async def list_dead_letter_source_queues(self, **request: Any) -> dict[str, Any]:
        error = {"Error": {"Code": "AccessDenied", "Message": "not authorized"}}
        raise ClientError(error, "ListDeadLetterSourceQueues")  # type: ignore[arg-type]


async def test_a_refused_source_list_is_bad_configuration_naming_the_permission() -> None:
    """Without sqs:ListDeadLetterSourceQueues a replay to the source queues stops before
    reading (exit 2), saying which permission, or --queue-url, it needs."""
    config = ReplayConfig(scan=ScanConfig(dlq_url="https://sqs.x/123456789012/dlq"))
    with pytest.raises(ConfigError) as raised:
        await allowed_destinations(DeniedSources(), config)  # type: ignore[arg-type]
    assert "AccessDenied" in str(raised.value)
    assert "sqs:ListDeadLetterSourceQueues" in str(raised.value)
    assert "--queue-url" in str(raised.value)
