"""Rendering: rich tables and colours for people on a terminal, plain text and JSON otherwise.

Colours appear only when the stream is a terminal (rich decides; NO_COLOR is honoured).
When stdout is a pipe, lines are not wrapped and carry no trailing blanks, so `grep`,
`cut` and `awk` see one record per line.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

DECISION_STYLES = {
    "allow": "green",
    "deny": "bold red",
    "rate_limited": "yellow",
    "approval_required": "magenta",
}
STATUS_STYLES = {
    "active": "green",
    "revoked": "red",
    "pending": "yellow",
    "approved": "green",
    "denied": "red",
    "expired": "dim",
    "used": "dim",
    "success": "green",
    "error": "red",
    "blocked": "red",
    "PASS": "green",
    "FAIL": "bold red",
    "ERROR": "bold red",
}

_consoles: dict[bool, Console] = {}


def console(stderr: bool = False) -> Console:
    """The rich console for stdout (or stderr); wide and plain when not a terminal."""
    if stderr not in _consoles:
        stream = sys.stderr if stderr else sys.stdout
        kwargs: dict[str, Any] = {"file": stream, "highlight": False}
        if not stream.isatty() and not os.environ.get("COLUMNS"):
            kwargs["width"] = 10_000
        _consoles[stderr] = Console(**kwargs)
    return _consoles[stderr]


def is_tty(stderr: bool = False) -> bool:
    return console(stderr).is_terminal


def print_json(data: Any) -> None:
    """JSON for scripts: indented, UTF-8, on stdout."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def print_json_line(data: Any) -> None:
    """One JSON object per line (streams: `audit tail -f --json`)."""
    click.echo(json.dumps(data, ensure_ascii=False, default=str, separators=(",", ":")))


def _emit(renderable: Any) -> None:
    out = console()
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as cap:
        out.print(renderable)
    text = "\n".join(line.rstrip() for line in cap.get().splitlines())
    click.echo(text)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """A table with a header row; cells may be str, None (shown as '-') or rich Text."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(cell_text(cell) for cell in row))
    _emit(table)


def print_fields(pairs: Sequence[tuple[str, Any]]) -> None:
    """`Key:   value` lines, aligned, for one object (agent show, policy test)."""
    width = max((len(k) for k, _ in pairs), default=0) + 1
    for key, value in pairs:
        line = Text(f"{key + ':':<{width}} ")
        line.append_text(cell_text(value))
        _emit(line)


def print_line(text: str | Text = "") -> None:
    _emit(text if isinstance(text, Text) else Text(text))


def cell_text(value: Any) -> Text:
    if isinstance(value, Text):
        return value
    if value is None or value == "":
        return Text("-", style="dim")
    if isinstance(value, (list, tuple, set, frozenset)):
        return Text(", ".join(str(v) for v in value) or "-")
    if isinstance(value, bool):
        return Text("yes" if value else "no")
    return Text(str(value))


def styled(value: Any, styles: dict[str, str] | None = None) -> Text:
    """The value coloured by its meaning (decision or status); plain off a terminal."""
    text = "-" if value is None or value == "" else str(value)
    table = DECISION_STYLES | STATUS_STYLES if styles is None else styles
    return Text(text, style=table.get(text, ""))


def decision_text(decision: Any) -> Text:
    return styled(decision, DECISION_STYLES)


def note(message: str, *, quiet: bool = False) -> None:
    """A remark for the person (progress, hints) on stderr; silenced by --quiet."""
    if not quiet:
        console(stderr=True).print(escape(message), soft_wrap=True)


def warn(message: str) -> None:
    """A warning on stderr, even with --quiet."""
    click.echo(f"Warning: {message}", err=True)


def format_time(value: Any) -> str:
    """A gateway timestamp (ISO-8601 or epoch seconds) as `YYYY-MM-DD HH:MM:SS` UTC."""
    if value is None or value == "":
        return "-"
    try:
        if isinstance(value, (int, float)):
            moment = datetime.fromtimestamp(float(value), tz=timezone.utc)
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
            if moment.tzinfo is not None:
                moment = moment.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_date(value: Any) -> str:
    text = format_time(value)
    return text[:10] if len(text) >= 10 and text[4] == "-" else text
