"""`meshguard audit ...` against a real gateway: tail (and -f following new commits with no gaps
and no duplicates, Ctrl-C exiting 0), query, trace, stats with the hourly chart, export."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)

Run = Callable[..., subprocess.CompletedProcess[str]]


def cli_env(gateway: LiveGateway, home: Path) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    return {**base, "PYTHONPATH": str(ROOT), "HOME": str(home),
            "MESHGUARD_URL": gateway.url, "MESHGUARD_ADMIN_TOKEN": gateway.admin_token}  # fmt: skip


@pytest.fixture
def cli(gateway: LiveGateway, tmp_path: Path) -> Run:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meshguard_gateway", *args],
            cwd=tmp_path, env=cli_env(gateway, tmp_path), capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    return run


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def checks(gateway: LiveGateway, token: str, *actions: str, trace: str | None = None) -> list[dict[str, Any]]:
    out = []
    for i, action in enumerate(actions):
        headers = {"Authorization": f"Bearer {token}"}
        if trace:
            headers["X-Trace-ID"] = trace
        resp = httpx.post(
            gateway.url + "/proxy/governance/check", json={"action": action, "resource": f"r{i}"},
            headers=headers, timeout=30,
        )  # fmt: skip
        assert resp.status_code in (200, 403, 429), resp.text
        out.append(resp.json())
    return out


def audit_rows(gateway: LiveGateway, **params: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = gateway.admin("GET", "/admin/audit", params={"limit": 10000, **params}).json()["entries"]
    return rows


# --------------------------------------------------------------------------- tail


class Follower:
    """`meshguard audit tail -f` in a subprocess, its stdout lines in a queue."""

    def __init__(self, gateway: LiveGateway, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshguard_gateway", "audit", "tail", "-f", "--interval", "0.1", *args],
            cwd=home, env=env or cli_env(gateway, home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.errors: queue.Queue[str] = queue.Queue()
        self.stderr = ""
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.errors), daemon=True).start()

    @staticmethod
    def _read(stream: Any, into: queue.Queue[str]) -> None:
        for line in stream:
            into.put(line.rstrip("\n"))

    def wait_following(self, timeout: float = 30) -> None:
        """Until the tail has read the trail once and announced that it follows (stderr)."""
        try:
            line = self.errors.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("audit tail -f did not start following") from None
        self.stderr += line + "\n"
        assert "Following the audit trail" in line, line

    def next(self, timeout: float = 30) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no line from audit tail -f within {timeout}s") from None

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        time.sleep(0.2)  # let the reader threads drain the pipes
        while not self.errors.empty():
            self.stderr += self.errors.get() + "\n"
        return rc, self.stderr


def test_audit_tail_shows_the_latest_entries(cli: Run, gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("tailed", ["autogpt"])
    checks(gateway, token, "read:web", "execute:shell", "browse:web")
    r = cli("audit", "tail", "-n", "2")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 2
    assert "deny" in lines[0] and "execute:shell" in lines[0] and "tailed" in lines[0]
    assert "allow" in lines[1] and "browse:web" in lines[1]

    r = cli("audit", "tail", "-n", "5", "--agent", "tailed")  # more asked than there are: all of them
    assert [line.split()[4] for line in r.stdout.splitlines()] == ["admin:agent", "read:web", "execute:shell", "browse:web"]

    r = cli("audit", "tail", "--decision", "deny", "--json")
    assert [json.loads(line)["action"] for line in r.stdout.splitlines()] == ["execute:shell"]


def test_audit_tail_follow_gets_new_commits_without_gaps_or_duplicates(gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("followed", ["autogpt"])
    checks(gateway, token, "read:web", "read:web", "read:web")
    before = [e["resource"] for e in audit_rows(gateway, agent="followed", order="asc") if e["kind"] == "check"]
    follower = Follower(gateway, tmp_path, "-n", "2", "--json", "--agent", "followed")
    try:
        first = [json.loads(follower.next()) for _ in range(2)]
        assert [e["resource"] for e in first] == before[-2:]
        follower.wait_following()
        # committed after the tail started
        checks(gateway, token, "read:web", "execute:shell", "write:workspace", "read:web", "delete:all")
        new = [json.loads(follower.next()) for _ in range(5)]
        assert [e["action"] for e in new] == ["read:web", "execute:shell", "write:workspace", "read:web", "delete:all"]
        ids = [e["id"] for e in first + new]
        assert ids == sorted(set(ids))  # in commit order, each once
        checks(gateway, token, "browse:web")
        last = json.loads(follower.next())
        assert last["action"] == "browse:web" and last["id"] > ids[-1]
        # the trail and what was shown agree: every entry after the first shown one, once
        expected = [e["id"] for e in audit_rows(gateway, agent="followed", order="asc") if e["id"] >= ids[0]]
        assert ids + [last["id"]] == expected
    finally:
        rc, stderr = follower.stop()
    assert follower.lines.empty()  # nothing shown twice while we waited
    assert rc == 0, stderr
    assert "Traceback" not in stderr and "Aborted" not in stderr


def test_audit_tail_follow_text_with_decision_filter(gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("watched", ["autogpt"])
    follower = Follower(gateway, tmp_path, "-n", "0", "--decision", "deny")
    try:
        follower.wait_following()
        checks(gateway, token, "read:web", "execute:shell")
        line = follower.next()
        assert "deny" in line and "execute:shell" in line and "watched" in line
        assert "denied by rule" in line
    finally:
        rc, stderr = follower.stop()
    assert rc == 0 and "Following the audit trail" in stderr and "Traceback" not in stderr


# --------------------------------------------------------------------------- query


def test_audit_query_filters(cli: Run, gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("queried", ["autogpt"])
    _, other = gateway.create_agent("bystander", ["autogpt"])
    checks(gateway, token, "read:web", "execute:shell", "send:email", "browse:web")
    checks(gateway, other, "execute:shell")

    r = cli("audit", "query", "--agent", "queried", "--decision", "deny", "--json")
    assert r.returncode == 0, r.stderr
    entries = json.loads(r.stdout)["entries"]
    assert sorted(e["action"] for e in entries) == ["execute:shell", "send:email"]
    assert {e["agent_name"] for e in entries} == {"queried"}

    r = cli("audit", "query", "--action", "execute:shell")
    rows = [line for line in r.stdout.splitlines() if "execute:shell" in line]
    assert len(rows) == 2 and any("bystander" in x for x in rows) and all("deny" in x for x in rows)
    assert r.stdout.splitlines()[0].split()[:4] == ["ID", "TIME", "AGENT", "ACTION"]

    r = cli("audit", "query", "--agent", "queried", "--kind", "check", "--decision", "allow,deny", "--json")
    entries = json.loads(r.stdout)["entries"]
    assert sorted(e["action"] for e in entries) == ["browse:web", "execute:shell", "read:web", "send:email"]
    r = cli("audit", "query", "--agent", "queried", "--kind", "admin", "--json")
    assert [e["decision"] for e in json.loads(r.stdout)["entries"]] == ["agent_created"]
    r = cli("audit", "query", "--kind", "bogus")
    assert r.returncode == 2 and "not an entry kind" in r.stderr

    r = cli("audit", "query", "--agent", "queried", "--limit", "1", "--json")
    assert len(json.loads(r.stdout)["entries"]) == 1

    r = cli("audit", "query", "--from", "2099-01-01", "--json")
    assert json.loads(r.stdout)["entries"] == []
    r = cli("audit", "query", "--from", "1h", "--agent", "queried", "--json")
    assert len(json.loads(r.stdout)["entries"]) >= 4

    r = cli("audit", "query", "--from", "last tuesday")
    assert r.returncode == 2 and "is not a time" in r.stderr
    r = cli("audit", "query", "--decision", "maybe")
    assert r.returncode == 2 and "is not a decision" in r.stderr


# --------------------------------------------------------------------------- trace


def test_audit_trace_shows_the_run_in_order_with_outcomes(cli: Run, gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("tracer", ["autogpt"])
    trace = "run-4242"
    answers = checks(gateway, token, "search:web", "write:workspace", "execute:shell", trace=trace)
    checks(gateway, token, "read:web", trace="another-run")
    resp = httpx.post(
        gateway.url + "/proxy/governance/record",
        json={"action": "search:web", "resource": "r0", "status": "success", "duration_ms": 12,
              "decision_id": answers[0]["decision_id"]},
        headers={"Authorization": f"Bearer {token}", "X-Trace-ID": trace}, timeout=30,
    )  # fmt: skip
    assert resp.status_code == 201, resp.text

    r = cli("audit", "trace", trace)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line[:1].isdigit()]
    assert [row.split()[3] for row in rows] == ["search:web", "write:workspace", "execute:shell"]
    assert "success 12 ms" in rows[0]
    assert "deny" in rows[2] and "denied by rule" in rows[2]
    assert "Summary: 2 allowed, 1 denied; outcomes: 1 success" in r.stdout
    assert "read:web" not in r.stdout

    body = json.loads(cli("audit", "trace", trace, "--json").stdout)
    assert [e["action"] for e in body["entries"]] == ["search:web", "write:workspace", "execute:shell"]

    r = cli("audit", "trace", "no-such-trace")
    assert r.returncode == 1
    assert "no audit entries for trace 'no-such-trace'" in one_line_error(r)


# --------------------------------------------------------------------------- stats


def test_audit_stats_totals_percentages_and_hourly_chart(cli: Run, gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("counted", ["autogpt"])
    checks(gateway, token, "read:web", "read:web", "read:web", "execute:shell")
    r = cli("audit", "stats", "--agent", "counted", "--json")
    body = json.loads(r.stdout)
    assert (body["total"], body["allowed"], body["denied"]) == (4, 3, 1)

    r = cli("audit", "stats", "--agent", "counted", "--period", "1")
    assert r.returncode == 0, r.stderr
    assert "for agent counted, last 1 hour" in r.stdout
    assert "Allowed:" in r.stdout and "(75.0%)" in r.stdout and "(25.0%)" in r.stdout
    top = next(line for line in r.stdout.splitlines() if line.startswith("execute:shell"))
    assert top.split()[-1] == "1"

    r = cli("audit", "stats", "--agent", "counted", "--period", "24", "--breakdown", "hourly")
    assert r.returncode == 0, r.stderr
    assert "Hourly breakdown (UTC)" in r.stdout
    bars = [line for line in r.stdout.splitlines() if "(3 allowed, 1 denied)" in line]
    assert len(bars) == 1 and ("█" * 30 in bars[0] or "#" * 30 in bars[0])

    r = cli("audit", "stats", "--period", "0")
    assert r.returncode == 2


# --------------------------------------------------------------------------- export


def test_audit_export_pages_through_everything(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("exported", ["autogpt"])
    checks(gateway, token, *(["read:web"] * 20 + ["execute:shell"] * 3))
    every = sorted(e["id"] for e in audit_rows(gateway))

    out = tmp_path / "audit.csv"
    r = cli("audit", "export", "--format", "csv", "--output", str(out), "--page-size", "7")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [int(x["id"]) for x in rows] == every  # all of them, in order, once
    assert {"timestamp", "agent_name", "action", "decision", "reason", "outcome_status"} <= set(rows[0])
    assert f"Exported {len(every)} entries to {out}" in r.stderr
    assert not list(tmp_path.glob("*.partial"))

    r = cli("audit", "export", "--format", "json", "--decision", "deny", "--page-size", "2")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [e["action"] for e in data] == ["execute:shell"] * 3

    r = cli("audit", "export", "--format", "jsonl", "--from", "1h", "--to", "now")
    assert [json.loads(line)["id"] for line in r.stdout.splitlines()] == every

    r = cli("audit", "export", "--from", "2099-01-01", "--format", "json")
    assert json.loads(r.stdout) == []


def test_audit_tail_follow_survives_a_gateway_restart(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """Found through its state folder, a gateway that comes back on another port is followed on;
    the cursor lives in the database, so nothing is lost or shown twice across the restart."""
    first = start_gateway()
    _, token = first.create_agent("phoenix", ["autogpt"])
    env = {**cli_env(first, tmp_path), "MESHGUARD_STATE_DIR": str(first.state_dir)}
    del env["MESHGUARD_URL"]
    follower = Follower(first, tmp_path, "-n", "0", "--json", "--action", "read:web", env=env)
    try:
        follower.wait_following()
        checks(first, token, "read:web")
        before = json.loads(follower.next())
        first.stop()
        second = start_gateway(state_dir=first.state_dir, db_path=first.db_path)
        _, token2 = second.create_agent("phoenix-2", ["autogpt"])
        checks(second, token2, "read:web", "read:web")
        after = [json.loads(follower.next()) for _ in range(2)]
        assert [e["agent_name"] for e in after] == ["phoenix-2", "phoenix-2"]
        ids = [before["id"]] + [e["id"] for e in after]
        assert ids == sorted(set(ids))
    finally:
        rc, stderr = follower.stop()
    assert rc == 0, stderr
    assert "Retrying every" in stderr and "answers again" in stderr
    assert follower.lines.empty()


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-01-31", False, "2026-01-31T00:00:00.000Z"),
        ("2026-01-31", True, "2026-02-01T00:00:00.000Z"),  # --to a date: the whole day
        ("now", True, "2026-11-24T08:30:15.123Z"),  # milliseconds kept: nothing of this second is cut off
        ("2h", False, "2026-11-24T06:30:15.123Z"),
        ("1.5d", False, "2026-11-22T20:30:15.123Z"),
        ("2026-01-27T09:30:00+02:00", False, "2026-01-27T07:30:00.000Z"),
    ],
)
def test_parse_when(text: str, end: bool, expected: str) -> None:
    from datetime import datetime, timezone

    from meshguard_gateway.cli.audit import parse_when

    now = datetime(2026, 11, 24, 8, 30, 15, 123456, tzinfo=timezone.utc)
    assert parse_when(text, now=now, end=end) == expected


def test_trace_summary_separates_checks_approvals_and_outcomes() -> None:
    from meshguard_gateway.cli.audit import trace_summary

    ok = {"status": "success", "result": None, "duration_ms": 3}
    entries = [
        {"kind": "check", "decision": "allow", "outcome": ok},
        {"kind": "check", "decision": "deny", "outcome": None},
        {"kind": "check", "decision": "approval_required", "outcome": None},
        {"kind": "approval", "decision": "approval_approved", "outcome": None},
        {"kind": "approval", "decision": "approval_used", "outcome": None},
        {"kind": "check", "decision": "allow", "outcome": {"status": "error"}},
        {"kind": "record", "decision": "recorded", "outcome": None},
    ]
    assert trace_summary(entries) == (
        "2 allowed, 1 denied, 1 needed approval; approvals: 1 approved, 1 used; "
        "1 outcome reported without a check; outcomes: 1 error, 1 success"
    )
