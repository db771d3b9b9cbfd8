"""Text for people and scripts: values read from a DLQ shown as data, the console summaries print
on, JSON documents, how a reading ended."""

import json
import sys
from collections.abc import Mapping
from typing import Any, Final

from rich.console import Console
from rich.text import Text

from relay.terminal.shapes import ReadEndShown

SHOWN_MAX_CHARS: Final = 200
"""A value read from a DLQ is cut to this many characters in a table (an attribute may hold
256 KB); `--json` has them whole."""


def shown(value: object) -> Text:
    """A value read from a DLQ or an export file as literal text for a table or a line: no
    markup, control and format characters escaped (`\\x1b`, `\\u202e`), cut to a readable length."""
    text = str(value)
    if len(text) > SHOWN_MAX_CHARS:
        text = text[:SHOWN_MAX_CHARS] + "…"
    if not text.isprintable():
        # unicode_escape also writes lone surrogates, which no terminal encoding can carry.
        text = "".join(
            c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text
        )
    return Text(text)


def summary_console() -> Console:
    """stdout, for summaries: what it prints is data, so no markup, emoji codes or highlighting."""
    return Console(highlight=False, markup=False, emoji=False)


def print_json(document: Mapping[str, Any]) -> None:
    """One JSON object on one line of stdout (ASCII: any other character is escaped)."""
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


def ending_text(end: ReadEndShown) -> Text:
    """How the reading ended, in one line."""
    text = Text.assemble("read until: ", shown(end.stopped_by))
    if end.read_error:
        text.append_text(Text.assemble("; receive failed: ", shown(end.read_error)))
    if end.release_errors:
        text.append(
            f"; {end.release_errors} message(s) could not be made visible at once "
            "(back after their visibility timeout)"
        )
    return text


def unreadable_dates(count: int) -> str:
    return (
        f"{count} message(s) with a relay-dead-lettered-at that is not a readable time "
        "(counted as unknown)"
    )
