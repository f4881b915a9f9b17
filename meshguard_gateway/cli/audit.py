"""`meshguard audit ...`: read the audit trail while agents run, and afterwards.

Following and exporting page through ``GET /admin/audit?after=<id>&order=asc``: ids are
assigned in commit order, so resuming after the last id seen never skips an entry and
never shows one twice, and memory stays constant however long the trail is.
"""

from __future__ import annotations

import csv
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import click
from rich.text import Text

from meshguard_gateway.cli._errors import CLIError, NetworkError
from meshguard_gateway.cli._options import admin_client, common_options, flags, json_output, quiet
from meshguard_gateway.cli._output import (
    console,
    decision_text,
    format_time,
    note,
    print_fields,
    print_json,
    print_json_line,
    print_line,
    print_table,
    styled,
    warn,
)

DECISIONS = ("allow", "deny", "rate_limited", "approval_required")
KINDS = ("check", "record", "approval", "admin")
PAGE = 500
VERIFY_TIMEOUT = 900.0
RETRY_SECONDS = 1.0

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(value: str, *, now: datetime | None = None, end: bool = False) -> str:
    """`2026-01-27`, an ISO-8601 time, `now`, or an age like `15m`, `2h`, `7d` -> ISO-8601 UTC
    (milliseconds kept). As an end (``--to``), a bare date means the whole of that day."""
    now = now or datetime.now(timezone.utc)
    text = value.strip()
    match = _RELATIVE.match(text.lower())
    if match:
        moment = now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    elif text.lower() == "now":
        moment = now
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(
                f"{value!r} is not a time; use a date (2026-01-27), an ISO-8601 time (2026-01-27T09:30:00Z) "
                "or an age (15m, 2h, 7d)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        if end and _DATE_ONLY.match(text):
            moment += timedelta(days=1)
    moment = moment.astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return parse_when(value, end=param.name == "to") if value else None


def _decision(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """One decision or a comma-separated list (`deny,rate_limited`)."""
    if value is None:
        return None
    out = []
    for part in value.split(","):
        part = part.strip().lower().replace("-", "_")
        part = {"allowed": "allow", "denied": "deny", "approval": "approval_required"}.get(part, part)
        if part not in DECISIONS:
            raise click.BadParameter(f"{part!r} is not a decision; use one of: {', '.join(DECISIONS)}")
        out.append(part)
    return ",".join(out)


def _kind(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    parts = [p.strip().lower() for p in value.split(",") if p.strip()]
    for part in parts:
        if part not in KINDS:
            raise click.BadParameter(f"{part!r} is not an entry kind; use one of: {', '.join(KINDS)}")
    return ",".join(parts)


_KIND_HELP = "Only these kinds (comma-separated): check (decisions), record (outcomes), approval, admin."


def _filters(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def iter_entries(client: Any, filters: dict[str, Any], after: int = 0, page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every matching entry with id > after, oldest first, one page in memory at a time."""
    cursor = after
    while True:
        body = client.get("/admin/audit", after=cursor, order="asc", limit=page, **filters)
        entries = body.get("entries", []) if isinstance(body, dict) else []
        for entry in entries:
            yield entry
            cursor = max(cursor, _id(entry))
        if len(entries) < page:
            return


def _id(entry: dict[str, Any]) -> int:
    try:
        return int(entry.get("id") or 0)
    except (TypeError, ValueError):
        return 0


def _outcome(entry: dict[str, Any]) -> Text | None:
    outcome = entry.get("outcome")
    if not isinstance(outcome, dict) or not outcome.get("status"):
        return None
    text = styled(outcome["status"])
    if outcome.get("duration_ms") is not None:
        text.append(f" {_ms(outcome['duration_ms'])}")
    return text


def _ms(value: Any) -> str:
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def _agent(entry: dict[str, Any]) -> str:
    return str(entry.get("agent_name") or entry.get("agent_id") or "-")


def _rule(entry: dict[str, Any]) -> str | None:
    parts = [str(entry[k]) for k in ("policy", "rule") if entry.get(k)]
    return " / ".join(parts) or None


def entry_line(entry: dict[str, Any]) -> Text:
    """One entry on one line, for `audit tail`."""
    line = Text(f"{format_time(entry.get('timestamp'))}  ")
    decision = decision_text(entry.get("decision"))
    decision.pad_right(max(1, 18 - len(decision.plain)))
    line.append_text(decision)
    if entry.get("enforced") is False:
        line.append(" (audit mode)", style="dim")
    line.append(f" {_agent(entry)}  {entry.get('action') or '-'}")
    if entry.get("resource"):
        line.append(f"  {entry['resource']}")
    outcome = _outcome(entry)
    if outcome is not None:
        line.append("  -> ")
        line.append_text(outcome)
    if entry.get("decision") not in (None, "allow") and entry.get("reason"):
        line.append(f"  ({entry['reason']})", style="dim")
    return line


@click.group()
def cli() -> None:
    """Read the audit trail: tail, query, trace, stats, export."""


@cli.command()
@click.option("-n", "--lines", "count", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many recent entries to show first.")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries as they are committed (Ctrl-C stops).")
@click.option("--agent", help="Only this agent (name or id).")
@click.option("--action", help="Only this action.")
@click.option("--decision", callback=_decision, help=f"Only this decision: {', '.join(DECISIONS)}.")
@click.option("--kind", callback=_kind, help=_KIND_HELP)
@click.option("--interval", type=click.FloatRange(min=0.05), default=0.5, show_default=True, metavar="SECONDS",
              help="How often --follow asks for new entries.")
@common_options
def tail(
    count: int, follow: bool, agent: str | None, action: str | None, decision: str | None, kind: str | None,
    interval: float,
) -> None:  # fmt: skip
    """Show the latest entries; with -f, follow new ones as they are committed.

    \b
    meshguard audit tail -n 50
    meshguard audit tail --follow --agent autogpt-agent
    meshguard audit tail -f --decision deny
    """
    try:
        _tail(count, follow, _filters(agent=agent, action=action, decision=decision, kind=kind), interval)
    except KeyboardInterrupt:
        if not follow:
            raise
        # Ctrl-C is how one stops following, even before the first entry arrived: exit 0, quietly.


def _tail(count: int, follow: bool, filters: dict[str, Any], interval: float) -> None:
    client = admin_client()
    as_json = json_output()

    def show(entry: dict[str, Any]) -> None:
        if as_json:
            print_json_line(entry)
        else:
            print_line(entry_line(entry))

    body = client.get("/admin/audit", order="desc", limit=max(count, 1), **filters)
    recent = list(reversed(body.get("entries", []) if isinstance(body, dict) else []))
    cursor = max((_id(e) for e in recent), default=0)
    for entry in recent[-count:] if count else []:
        show(entry)
    if not follow:
        if not recent and not as_json:
            note("No audit entries yet.", quiet=quiet())
        return
    note(f"Following the audit trail of {client.url} (Ctrl-C to stop) ...", quiet=quiet())
    lost = False
    while True:
        got = 0
        try:
            for entry in iter_entries(client, filters, after=cursor):
                if lost:
                    lost = _back(client, cursor)
                show(entry)
                cursor = max(cursor, _id(entry))
                got += 1
        except NetworkError as exc:
            # Like `tail -F`: wait for the gateway to come back (ids live in its database,
            # so resuming after `cursor` still loses nothing and repeats nothing).
            if not lost:
                warn(f"{exc.message} Retrying every {RETRY_SECONDS:g} s; Ctrl-C to stop.")
                lost = True
            time.sleep(RETRY_SECONDS)
            client = _refollow(client)
            continue
        if lost:
            lost = _back(client, cursor)
        if got == 0:
            time.sleep(interval)


def _back(client: Any, cursor: int) -> bool:
    note(f"The gateway at {client.url} answers again; following on after entry {cursor}.", quiet=quiet())
    return False


def _refollow(client: Any) -> Any:
    """The client to retry with: a gateway found through a state folder may have come back on
    another port, so look again there; any other URL is retried as it is."""
    from meshguard_gateway.cli._client import AdminClient
    from meshguard_gateway.cli._settings import resolve

    if "state folder" not in client.settings.url.source:
        return client
    given = flags()
    fresh = resolve(url=given.url, admin_token=given.admin_token, timeout=given.timeout)
    if "state folder" not in fresh.url.source or fresh.url.value == client.url:
        return client
    client.close()
    return click.get_current_context().with_resource(AdminClient(fresh))


@cli.command()
@click.option("--agent", help="Agent name or id.")
@click.option("--action", help="Action (verb:object).")
@click.option("--decision", callback=_decision, help=f"One of: {', '.join(DECISIONS)}.")
@click.option("--kind", callback=_kind, help=_KIND_HELP)
@click.option("--trace", "trace_id", help="Trace id (see also `audit trace`).")
@click.option("--from", "from_", callback=_when, help="Start: a date, an ISO-8601 time, or an age (2h, 7d).")
@click.option("--to", callback=_when, help="End: a date, an ISO-8601 time, or an age.")
@click.option("--limit", type=click.IntRange(min=1, max=10_000), default=100, show_default=True)
@click.option("--order", type=click.Choice(["desc", "asc"]), default="desc", show_default=True,
              help="Newest first (desc) or oldest first (asc).")
@common_options
def query(
    agent: str | None,
    action: str | None,
    decision: str | None,
    kind: str | None,
    trace_id: str | None,
    from_: str | None,
    to: str | None,
    limit: int,
    order: str,
) -> None:
    """Search audit entries.

    \b
    meshguard audit query --decision deny --limit 20
    meshguard audit query --agent autogpt-agent --from 24h
    """
    filters = _filters(agent=agent, action=action, decision=decision, kind=kind, trace=trace_id,
                       **{"from": from_, "to": to})  # fmt: skip
    body = admin_client().get("/admin/audit", order=order, limit=limit, **filters)
    entries: list[dict[str, Any]] = body.get("entries", []) if isinstance(body, dict) else []
    if json_output():
        print_json(body)
        return
    if not entries:
        note("No audit entries match.", quiet=quiet())
        return
    print_table(
        ["ID", "TIME", "AGENT", "ACTION", "RESOURCE", "DECISION", "POLICY / RULE", "OUTCOME", "REASON"],
        [
            [
                str(e.get("id")),
                format_time(e.get("timestamp")),
                _agent(e),
                e.get("action"),
                e.get("resource"),
                decision_text(e.get("decision")),
                _rule(e),
                _outcome(e),
                e.get("reason") if e.get("decision") != "allow" else None,
            ]
            for e in entries
        ],
    )
    if not quiet() and len(entries) == limit:
        note(f"Showing {limit} entries; there may be more (raise --limit, narrow with --from/--to, or use `audit export`).")


@cli.command()
@click.argument("trace_id")
@common_options
def trace(trace_id: str) -> None:
    """Show a whole run (one trace id) in order, with each command's outcome."""
    client = admin_client()
    entries = list(iter_entries(client, {"trace": trace_id}))
    if json_output():
        print_json({"trace_id": trace_id, "entries": entries})
        if not entries:
            raise CLIError(f"no audit entries for trace {trace_id!r}")
        return
    if not entries:
        raise CLIError(
            f"no audit entries for trace {trace_id!r}; check the id (the launcher prints it at the end of a run)"
        )
    agents = sorted({_agent(e) for e in entries})
    first, last = entries[0].get("timestamp"), entries[-1].get("timestamp")
    n_checks = sum(1 for e in entries if e.get("kind", "check") == "check")
    if not quiet():
        extra = f" ({len(entries)} entries)" if n_checks != len(entries) else ""
        print_line(
            f"Trace {trace_id}: {n_checks} check{'s' if n_checks != 1 else ''}{extra} by {', '.join(agents)}, "
            f"{format_time(first)} to {format_time(last)} UTC"
        )
    print_table(
        ["#", "TIME", "AGENT", "ACTION", "RESOURCE", "DECISION", "OUTCOME", "REASON"],
        [
            [
                str(i),
                format_time(e.get("timestamp"))[11:] or format_time(e.get("timestamp")),
                _agent(e),
                e.get("action"),
                e.get("resource"),
                decision_text(e.get("decision")),
                _outcome(e),
                e.get("reason") if e.get("decision") != "allow" else None,
            ]
            for i, e in enumerate(entries, start=1)
        ],
    )
    print_line(f"Summary: {trace_summary(entries)}")


def _tally(values: list[str]) -> str:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


_WORDS = {"allow": "allowed", "deny": "denied", "rate_limited": "rate limited", "approval_required": "needed approval"}


def trace_summary(entries: list[dict[str, Any]]) -> str:
    """`6 allowed, 2 denied; approvals: 1 approved; outcomes: 5 success, 1 error`."""
    parts = []
    checks = [_WORDS.get(str(e.get("decision")), str(e.get("decision"))) for e in entries if e.get("kind", "check") == "check"]
    if checks:
        parts.append(_tally(checks))
    approvals = [str(e.get("decision")).removeprefix("approval_") for e in entries if e.get("kind") == "approval"]
    if approvals:
        parts.append("approvals: " + _tally(approvals))
    records = sum(1 for e in entries if e.get("kind") == "record")
    if records:
        parts.append(f"{records} outcome{'s' if records != 1 else ''} reported without a check")
    outcomes = [
        str(e["outcome"]["status"]) for e in entries if isinstance(e.get("outcome"), dict) and e["outcome"].get("status")
    ]
    if outcomes:
        parts.append("outcomes: " + _tally(outcomes))
    return "; ".join(parts) or "nothing decided"


def _pct(part: Any, total: Any) -> str:
    try:
        return f"{100.0 * float(part) / float(total):.1f}%" if float(total) else "0.0%"
    except (TypeError, ValueError):
        return "-"


def _bar_chars() -> str:
    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower()
    return "█" if "utf" in encoding else "#"


def hourly_chart(hours: list[dict[str, Any]], width: int = 40) -> list[Text]:
    """One bar per hour: allowed (green), denied (red), other refusals (yellow), scaled to the busiest."""
    block = _bar_chars()
    peak = max((int(h.get("total") or 0) for h in hours), default=0)
    span_days = len({str(h.get("hour"))[:10] for h in hours}) > 1
    lines: list[Text] = []
    for h in hours:
        total = int(h.get("total") or 0)
        allowed = int(h.get("allowed") or 0)
        denied = int(h.get("denied") or 0)
        other = max(total - allowed - denied, 0)
        cells = 0 if peak == 0 else max(1 if total else 0, round(width * total / peak))
        a = round(cells * allowed / total) if total else 0
        d = round(cells * denied / total) if total else 0
        if a + d > cells:
            d = cells - a
        o = cells - a - d
        label = format_time(h.get("hour"))
        label = label[5:16] if span_days else label[11:16]
        line = Text(f"{label}  ")
        line.append(block * a, style="green")
        line.append(block * d, style="red")
        line.append(block * o, style="yellow")
        line.append(" " * (width - cells))
        detail = f"  {total:>5}"
        if total:
            detail += f"  ({allowed} allowed, {denied} denied" + (f", {other} other)" if other else ")")
        line.append(detail)
        lines.append(line)
    return lines


@cli.command()
@click.option("--agent", help="Only this agent (name or id).")
@click.option("--period", type=click.FloatRange(min=0, min_open=True), default=24, show_default=True,
              metavar="HOURS", help="How many hours back.")
@click.option("--breakdown", type=click.Choice(["hourly"]), default=None, help="Add an hour-by-hour bar chart.")
@common_options
def stats(agent: str | None, period: float, breakdown: str | None) -> None:
    """Totals, allow/deny percentages, top denied actions, and an hourly chart.

    \b
    meshguard audit stats --agent autogpt-agent --period 1
    meshguard audit stats --period 24 --breakdown hourly
    """
    period_param: Any = int(period) if float(period).is_integer() else period
    body = admin_client().get("/admin/audit/stats", agent=agent, period=period_param, breakdown=breakdown)
    if json_output():
        print_json(body)
        return
    body = body if isinstance(body, dict) else {}
    total = body.get("total") or 0
    who = f" for agent {agent}" if agent else ""
    print_line(f"Audit statistics{who}, last {period:g} hour{'s' if period != 1 else ''}")
    print_line("")
    print_fields(
        [
            ("Total", f"{total:>7}"),
            ("Allowed", f"{body.get('allowed') or 0:>7}  ({_pct(body.get('allowed') or 0, total)})"),
            ("Denied", f"{body.get('denied') or 0:>7}  ({_pct(body.get('denied') or 0, total)})"),
            ("Rate limited", f"{body.get('rate_limited') or 0:>7}  ({_pct(body.get('rate_limited') or 0, total)})"),
            (
                "Approval required",
                f"{body.get('approval_required') or 0:>7}  ({_pct(body.get('approval_required') or 0, total)})",
            ),
        ]
    )
    top = body.get("top_denied") or []
    if top:
        print_line("")
        print_table(["TOP DENIED ACTION", "COUNT"], [[t.get("action"), str(t.get("count"))] for t in top])
    if breakdown == "hourly":
        hours = body.get("hourly") or []
        print_line("")
        print_line("Hourly breakdown (UTC)")
        if not hours or not any(int(h.get("total") or 0) for h in hours):
            print_line("  no activity in this period")
        for line in hourly_chart(hours):
            print_line(line)


CSV_FIELDS = (
    "id", "timestamp", "agent_id", "agent_name", "action", "resource", "decision", "enforced", "policy",
    "rule", "reason", "trace_id", "decision_id", "outcome_status", "outcome_result", "outcome_duration_ms",
    "actor", "chain_prev", "chain_mac",
)  # fmt: skip


def _csv_row(entry: dict[str, Any]) -> list[Any]:
    found = entry.get("outcome")
    outcome: dict[str, Any] = found if isinstance(found, dict) else {}
    row = dict(entry)
    row["outcome_status"] = outcome.get("status")
    row["outcome_result"] = outcome.get("result")
    row["outcome_duration_ms"] = outcome.get("duration_ms")
    chain = entry.get("chain") if isinstance(entry.get("chain"), dict) else {}
    row["chain_prev"], row["chain_mac"] = chain.get("prev"), chain.get("mac")
    return ["" if row.get(k) is None else row.get(k) for k in CSV_FIELDS]


class _Writer:
    """Streams entries as csv, a JSON array, or JSON lines; nothing is kept in memory."""

    def __init__(self, out: IO[str], fmt: str) -> None:
        self.out, self.fmt, self.count = out, fmt, 0
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv is not None:
            self.csv.writerow(CSV_FIELDS)
        elif fmt == "json":
            out.write("[")

    def write(self, entry: dict[str, Any]) -> None:
        if self.csv is not None:
            self.csv.writerow(_csv_row(entry))
        elif self.fmt == "json":
            self.out.write(("," if self.count else "") + "\n  " + json.dumps(entry, ensure_ascii=False, default=str))
        else:
            self.out.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")
        self.count += 1

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n" if self.count else "]\n")
        self.out.flush()


@cli.command()
@click.option("--from", "from_", callback=_when, help="Start: a date, an ISO-8601 time, or an age (default: all).")
@click.option("--to", callback=_when, help="End (default: now).")
@click.option("--format", "fmt", type=click.Choice(["csv", "json", "jsonl"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="File to write (default: stdout).")
@click.option("--agent", help="Only this agent (name or id).")
@click.option("--decision", callback=_decision, help=f"Only this decision: {', '.join(DECISIONS)}.")
@click.option("--kind", callback=_kind, help=_KIND_HELP)
@click.option("--page-size", type=click.IntRange(min=1, max=5000), default=1000, show_default=True, hidden=True)
@common_options
def export(
    from_: str | None, to: str | None, fmt: str, output: Path | None, agent: str | None, decision: str | None,
    kind: str | None, page_size: int,
) -> None:  # fmt: skip
    """Export audit entries for compliance or analysis, page by page (constant memory).

    \b
    meshguard audit export --from 2026-01-01 --to 2026-01-31 --format csv --output january.csv
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    client = admin_client()
    filters = _filters(agent=agent, decision=decision, kind=kind, **{"from": from_, "to": to})
    partial = output.with_name(output.name + ".partial") if output is not None else None
    handle: IO[str]
    if partial is not None:
        try:
            handle = open(partial, "w", encoding="utf-8", newline="")
        except OSError as exc:
            raise CLIError(f"cannot write {output}: {exc.strerror}") from None
    else:
        handle = sys.stdout
    show_progress = console(stderr=True).is_terminal and not quiet()
    writer = _Writer(handle, fmt)
    ok = False
    try:
        with Progress(
            SpinnerColumn(), TextColumn("Exporting audit entries"), BarColumn(), TextColumn("{task.completed:,} entries"),
            TimeElapsedColumn(), console=console(stderr=True), transient=True, disable=not show_progress,
        ) as progress:  # fmt: skip
            task = progress.add_task("export", total=None)
            for entry in iter_entries(client, filters, page=page_size):
                writer.write(entry)
                progress.advance(task)
        writer.close()
        ok = True
    finally:
        if partial is not None:
            handle.close()
            if ok:
                os.replace(partial, output)  # type: ignore[arg-type]
            else:
                partial.unlink(missing_ok=True)
    if output is not None and not quiet():
        note(f"Exported {writer.count:,} entr{'ies' if writer.count != 1 else 'y'} to {output} ({fmt}).")


# --------------------------------------------------------------------------- verify


@cli.command()
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Verify an export (json or jsonl from `audit export`) offline, instead of asking the gateway.")
@click.option("--key-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --file: the file holding the chain key (default: AUDIT_CHAIN_KEY, else audit_chain_key "
                   "in the state folder).")
@click.option("--head", "head_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="With --file: the gateway's audit_head file, to tell whether rows are missing at the end.")
@common_options
def verify(file_: Path | None, key_file: Path | None, head_file: Path | None) -> None:
    """Check the audit chain: no row deleted, edited, reordered or inserted. Exit 1 names the first broken row.

    \b
    meshguard audit verify
    meshguard audit verify --file audit.jsonl --key-file .meshguard/audit_chain_key
    """
    if file_ is None:
        if key_file is not None or head_file is not None:
            raise click.UsageError("--key-file and --head go with --file (the gateway has its own key and head)")
        client = admin_client()
        # it reads the whole trail (about 20 s per million rows on a small machine)
        body = client.request("GET", "/admin/audit/verify", timeout=max(client.settings.timeout, VERIFY_TIMEOUT))
    else:
        body = verify_export(file_, _offline_key(key_file), head_file)
    if not isinstance(body, dict):
        raise CLIError("the gateway's answer to GET /admin/audit/verify is not an object; is it a MeshGuard gateway?")
    if json_output():
        print_json(body)
    else:
        _print_verdict(body)
    if not body.get("ok"):
        first = body.get("first_problem") or {}
        n = int(body.get("problems") or 0)
        raise CLIError(f"the audit chain is broken ({n} problem{'s' if n != 1 else ''}); first: "
                       f"{first.get('table')} {first.get('problem')}")  # fmt: skip


def _print_verdict(body: dict[str, Any]) -> None:
    ok = bool(body.get("ok"))
    head = Text("Audit chain: ")
    head.append("intact" if ok else "BROKEN", style="green" if ok else "bold red")
    head.append(f" (chain key {body.get('key_id') or '?'})")
    print_line(head)
    for t in body.get("tables") or []:
        span = f"rows {t.get('first_id')}-{t.get('last_id')}" if t.get("rows") else "no rows"
        print_line(f"  {t.get('table')}: {t.get('rows', 0):,} rows ({span}); starts at {t.get('start')}")
        print_line(f"    end: {t.get('head')}")
        if t.get("first_problem"):
            p = t["first_problem"]
            print_line(Text(f"    first problem (of {t.get('problems')}): {p.get('problem')}", style="red"))
        for n in t.get("notes") or []:
            if n != t.get("head"):
                print_line(Text(f"    note: {n}", style="dim"))


def _offline_key(key_file: Path | None) -> bytes:
    """The chain key for checking a file: --key-file, AUDIT_CHAIN_KEY, or the state folder's."""
    if key_file is not None:
        path = key_file
    elif os.environ.get("AUDIT_CHAIN_KEY"):
        return os.environ["AUDIT_CHAIN_KEY"].encode()
    else:
        path = Path(os.environ.get("MESHGUARD_STATE_DIR") or ".meshguard") / "audit_chain_key"
        if not path.exists():
            raise CLIError(f"no chain key: pass --key-file (the gateway's {path.name}), or set AUDIT_CHAIN_KEY")
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"cannot read the chain key from {path}: {exc}") from None
    if not key:
        raise CLIError(f"{path} is empty; it should hold the gateway's audit chain key")
    return key.encode()


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        start = fh.read(1)
        while start.isspace():
            start = fh.read(1)
        if start == "[":
            fh.seek(0)
            try:
                data = json.load(fh)
            except ValueError as exc:
                raise CLIError(f"{path}: not valid JSON ({exc}); verify takes a json or jsonl export") from None
            yield from (e for e in data if isinstance(e, dict))
            return
        if start != "{":
            raise CLIError(f"{path} is not a json or jsonl export (a csv export cannot be verified: it leaves out "
                           "fields the chain seals); export with --format jsonl")  # fmt: skip
        fh.seek(0)
        for n, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    yield json.loads(line)
                except ValueError as exc:
                    raise CLIError(f"{path}:{n}: not valid JSON ({exc})") from None


def verify_export(path: Path, key: bytes, head_file: Path | None = None) -> dict[str, Any]:
    """Verify an exported file as the gateway verifies its database (the same report shape).
    The file must be a whole, unfiltered stretch of the trail: every row from its first to its last."""
    from meshguard_gateway import chain

    rows: list[chain.ChainRow] = []
    for entry in _read_export(path):
        try:
            rid, prev, mac, values = chain.entry_values(entry)
        except (ValueError, KeyError, TypeError) as exc:
            raise CLIError(f"{path}: entry {entry.get('id', '?')} cannot be verified: {exc}") from None
        rows.append(chain.ChainRow(rid, prev, mac, values))
    macs = {r.mac: r.id for r in rows if r.mac}
    first_prev = rows[0].prev if rows and rows[0].prev else chain.GENESIS
    if first_prev == chain.GENESIS:
        start = "the first row ever written (genesis)"
    else:
        start = (f"row {rows[0].id}, as exported: it was chained after a row that is not in the file (older rows "
                 "were not exported, or were purged)")  # fmt: skip
    rep = chain.verify_rows(key, "audit_log", rows, start_prev=first_prev, start_text=start, find_by_mac=macs.get)
    by_id = {r.id: r.mac for r in rows}
    head = None
    if head_file is not None:
        try:
            doc = json.loads(head_file.read_text(encoding="utf-8").strip() or "{}")
        except (OSError, ValueError) as exc:
            raise CLIError(f"cannot read the chain head {head_file}: {exc}") from None
        head = doc.get("audit_log") if isinstance(doc, dict) else None
    chain.check_head(rep, head, by_id.get, str(head_file) if head_file else "no --head given",
                     purged_through=(rows[0].id - 1) if rows else 0)  # fmt: skip
    rep.notes.append("outcome records are chained too, but an export carries only the audit_log chain; "
                     "`meshguard audit verify` against the gateway checks both")  # fmt: skip
    return {"ok": rep.ok, "problems": rep.problems, "first_problem": rep.first_problem,
            "key_id": chain.key_id(key), "file": str(path), "tables": [rep.to_dict()]}  # fmt: skip
