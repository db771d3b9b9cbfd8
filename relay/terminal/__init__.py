"""What people and scripts see: the DLQ tools' progress on stderr, their summary tables and
JSON documents on stdout. The commands compute; this module only shows (the demo has a panel of
its own, `relay.demo.panel`).

Everything read from a DLQ or an export file was written by whoever may send to that queue, so
it is shown as data: consoles here parse no markup and no emoji codes (`[/]`, `[link=...]` and
`:x:` print as they are), and `shown` escapes control and format characters (an escape
sequence, a right-to-left override) before a value reaches the terminal. JSON documents are
ASCII (`json.dumps` escapes the rest).
"""

from relay.terminal.live import show_progress
from relay.terminal.summaries import print_export, print_purge, print_replay, print_stats
from relay.terminal.text import ending_text, print_json, shown

__all__ = [
    "ending_text",
    "print_export",
    "print_json",
    "print_purge",
    "print_replay",
    "print_stats",
    "show_progress",
    "shown",
]
