"""The audit chain against a real gateway and a real SQLite file: tampering done with sqlite3 (a row
deleted, a field edited, two rows swapped, a forged row inserted, the tail cut, an outcome deleted,
the metadata edited) is found by `meshguard audit verify`, which names the first broken row and
exits 1; restarts keep the chain continuous; retention moves the start to an anchor; an old (schema
v2) database is chained when first opened; an export is verified offline with the key; a batch
that fails falls back row by row without breaking the chain."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshguard_gateway.errors import ConflictError, StoreError
from meshguard_gateway.store import _MIGRATIONS, AgentRecord, AuditEvent, OutcomeRecord, SQLiteStore
from tests.conftest import AUDIT_CHAIN_KEY, LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)

Start = Callable[..., LiveGateway]


def cli(gw: LiveGateway, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "AUDIT_CHAIN_KEY"}
    env = {**base, "PYTHONPATH": str(ROOT), "HOME": str(home), "MESHGUARD_URL": gw.url,
           "MESHGUARD_ADMIN_TOKEN": gw.admin_token}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "meshguard_gateway", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def traffic(gw: LiveGateway, n: int = 12) -> str:
    """Checks (allowed and denied) with an outcome recorded for each allowed one. Returns the token."""
    _, token = gw.create_agent(f"agent-{time.monotonic_ns()}")
    for i in range(n):
        action = "execute:shell" if i % 4 == 3 else "read:workspace"
        resp = gw.check(token, action, f"f{i}.txt")
        assert resp.status_code in (200, 403), resp.text
        if resp.status_code == 200:
            rec = httpx.post(gw.url + "/proxy/governance/record", headers={"Authorization": f"Bearer {token}"},
                             json={"action": action, "resource": f"f{i}.txt", "status": "success",
                                   "decision_id": resp.json()["decision_id"]}, timeout=30)  # fmt: skip
            assert rec.status_code == 201, rec.text
    return token


def verify(gw: LiveGateway) -> dict[str, Any]:
    resp = gw.admin("GET", "/admin/audit/verify")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def tamper(db: Path, *sql: str) -> None:
    conn = sqlite3.connect(db)
    try:
        for statement in sql:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def max_id(db: Path, table: str = "audit_log") -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute(f"SELECT MAX(id) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_an_untouched_trail_verifies(gateway: LiveGateway, tmp_path: Path) -> None:
    traffic(gateway)
    body = verify(gateway)
    assert body["ok"] is True and body["problems"] == 0 and body["first_problem"] is None
    audit, records = body["tables"]
    assert audit["rows"] == max_id(gateway.db_path) and audit["start"].startswith("the first row ever written")
    assert audit["head"].startswith("matches") and records["rows"] == max_id(gateway.db_path, "records") > 0
    r = cli(gateway, tmp_path, "audit", "verify")
    assert r.returncode == 0, r.stderr
    assert "intact" in r.stdout


# (what to do to the database, the table and row verify must name first, words of its explanation)
CASES: dict[str, tuple[Callable[[int], list[str]], str, Callable[[int], int], str]] = {
    "delete a row": (lambda k: [f"DELETE FROM audit_log WHERE id = {k}"], "audit_log", lambda k: k + 1,
                     "deleted"),
    "edit a field": (lambda k: [f"UPDATE audit_log SET decision = CASE decision WHEN 'allow' THEN 'deny' ELSE "
                                f"'allow' END WHERE id = {k}"], "audit_log",
                     lambda k: k, "does not match its MAC"),
    "swap two rows": (lambda k: [f"UPDATE audit_log SET id = -1 WHERE id = {k}",
                                 f"UPDATE audit_log SET id = {k} WHERE id = {k + 1}",
                                 f"UPDATE audit_log SET id = {k + 1} WHERE id = -1"], "audit_log", lambda k: k,
                      "reordered"),
    "insert a forged row": (lambda k: [
        "INSERT INTO audit_log (id, ts, kind, agent_id, agent_name, action, resource, decision, enforced, reason, "
        "chain_prev, chain_mac) SELECT id + 1000, ts, kind, agent_id, agent_name, 'execute:shell', resource, "
        f"'allow', enforced, 'forged', chain_mac, chain_mac FROM audit_log WHERE id = {k}"],
        "audit_log", lambda k: k + 1000, "forged"),
    "delete an outcome": (lambda k: ["DELETE FROM records WHERE id = 2"], "records", lambda k: 3, "row 2 deleted"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampering_is_found_and_the_first_broken_row_named(start_gateway: Start, tmp_path: Path, case: str) -> None:
    gw = start_gateway()
    traffic(gw)
    k = max_id(gw.db_path) // 2
    statements, table, expected_id, words = CASES[case]
    tamper(gw.db_path, *statements(k))  # while the gateway runs: it keeps no lock between commits
    traffic(gw, 4)  # the gateway goes on writing after the tampering
    body = verify(gw)
    assert body["ok"] is False
    first = body["first_problem"]
    assert (first["table"], first["id"]) == (table, expected_id(k)), first
    assert words in first["problem"]
    r = cli(gw, tmp_path, "audit", "verify")
    assert r.returncode == 1
    assert f"first: {table} row" in r.stderr and f"row {expected_id(k)}" in r.stderr and words in r.stderr


def test_cutting_the_tail_is_found_through_the_head_kept_outside_the_database(start_gateway: Start) -> None:
    gw = start_gateway()
    traffic(gw)
    end = max_id(gw.db_path)
    gw.stop()
    # The rows cut off the end leave a valid, shorter chain: only the head file tells.
    tamper(gw.db_path, f"DELETE FROM audit_log WHERE id > {end - 3}",
           f"UPDATE sqlite_sequence SET seq = {end - 3} WHERE name = 'audit_log'")  # fmt: skip
    gw = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    assert "were cut off the end" in gw.log()
    body = verify(gw)
    assert body["ok"] is False
    first = body["first_problem"]
    assert first["table"] == "audit_log" and f"ends at row {end - 3}" in first["problem"] and f"row {end}" in first["problem"]


def test_cutting_the_tail_while_running_breaks_the_next_link(gateway: LiveGateway) -> None:
    traffic(gateway)
    end = max_id(gateway.db_path)
    tamper(gateway.db_path, f"DELETE FROM audit_log WHERE id > {end - 2}")
    body = verify(gateway)  # the head file still names row `end`
    assert body["ok"] is False and body["first_problem"]["id"] == end
    assert "cut" in body["first_problem"]["problem"]
    traffic(gateway, 2)  # the next row is chained after the deleted one
    body = verify(gateway)
    assert body["first_problem"]["id"] == end + 1 and "deleted" in body["first_problem"]["problem"]


def test_editing_the_chain_metadata_is_found(gateway: LiveGateway) -> None:
    traffic(gateway)
    tamper(gateway.db_path, "UPDATE audit_chain SET value = replace(value, '\"legacy\": {}', '\"legacy\": {\"x\": 1}')")
    body = verify(gateway)
    assert body["ok"] is False and "metadata" in body["first_problem"]["problem"]


def test_a_restart_keeps_the_chain_continuous(start_gateway: Start) -> None:
    gw = start_gateway()
    traffic(gw)
    end = max_id(gw.db_path)
    gw.stop()
    gw = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    traffic(gw, 4)
    body = verify(gw)
    assert body["ok"] is True, body
    conn = sqlite3.connect(gw.db_path)
    try:
        (before,), = conn.execute("SELECT chain_mac FROM audit_log WHERE id = ?", (end,)).fetchall()
        (after,), = conn.execute("SELECT chain_prev FROM audit_log WHERE id = ?", (end + 1,)).fetchall()
        ids = [r[0] for r in conn.execute("SELECT id FROM audit_log ORDER BY id")]
    finally:
        conn.close()
    assert after == before
    assert ids == list(range(1, len(ids) + 1))  # ids assigned by the chain: consecutive, no gaps


def test_the_gateway_refuses_a_database_chained_with_another_key(start_gateway: Start) -> None:
    gw = start_gateway()
    gw.stop()
    with pytest.raises(RuntimeError, match="chained with audit chain key"):
        start_gateway(gw.policies_dir, db_path=gw.db_path, env={"AUDIT_CHAIN_KEY": "another-key-" + "x" * 40})


def test_without_a_key_one_is_generated_into_the_state_folder(start_gateway: Start) -> None:
    gw = start_gateway(env={"AUDIT_CHAIN_KEY": ""})  # empty: not set
    key = gw.state_dir / "audit_chain_key"
    assert key.exists() and key.stat().st_mode & 0o777 == 0o600
    assert AUDIT_CHAIN_KEY not in key.read_text()
    assert key.read_text().strip() not in gw.log()
    assert verify(gw)["ok"] is True


def test_retention_starts_the_chain_at_an_anchor(start_gateway: Start) -> None:
    # 0.00002 days = 1.7 s: the purge that runs when the gateway starts deletes what is older
    gw = start_gateway(env={"AUDIT_RETENTION_DAYS": "0.00002"})
    traffic(gw)
    end = max_id(gw.db_path)
    time.sleep(2.0)
    gw.stop()
    gw = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir,
                       env={"AUDIT_RETENTION_DAYS": "0.00002"})  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        purged = gw.admin("GET", "/admin/audit", params={"decision": "audit_purged"}).json()["entries"]
        if purged:
            break
        time.sleep(0.2)
    assert purged and purged[0]["actor"] == "gateway"
    body = verify(gw)
    assert body["ok"] is True, body
    audit = body["tables"][0]
    assert audit["start"].startswith("the purge anchor") and audit["first_id"] > end - 1
    # deleting the oldest remaining row is still found
    first = audit["first_id"]
    tamper(gw.db_path, f"DELETE FROM audit_log WHERE id = {first}")
    body = verify(gw)
    assert body["ok"] is False and body["first_problem"]["id"] == first + 1


def _v2_database(path: Path) -> None:
    """A database as the previous gateway version left it (schema 2), with rows."""
    conn = sqlite3.connect(path)
    for script in _MIGRATIONS[:2]:
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 2")
    now = time.time()
    for i in range(5):
        conn.execute(
            "INSERT INTO audit_log (ts, kind, agent_id, agent_name, action, resource, decision, enforced, policy, "
            "rule, reason, trace_id, decision_id, approval_id, context) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (now - 100 + i, "check", "agent_old", "old", "read:workspace", f"f{i}", "allow", 1, "p", "r", "ok",
             "trace-old", f"dec_old{i}", None, None),
        )  # fmt: skip
    conn.execute("INSERT INTO records (ts, agent_id, decision_id, action, status) VALUES (?,?,?,?,?)",
                 (now - 99, "agent_old", "dec_old0", "read:workspace", "success"))  # fmt: skip
    conn.commit()
    conn.close()


def test_an_old_database_is_chained_when_first_opened(start_gateway: Start, tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    _v2_database(db)
    gw = start_gateway(db_path=db)
    traffic(gw, 4)
    body = verify(gw)
    assert body["ok"] is True, body
    notes = " ".join(body["tables"][0]["notes"])
    assert "rows up to 5 were written before the audit chain existed" in notes
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(_MIGRATIONS)
        assert conn.execute("SELECT COUNT(*) FROM audit_log WHERE chain_mac IS NULL").fetchone()[0] == 0
    finally:
        conn.close()
    # from now on the old rows are protected like the new ones
    tamper(db, "UPDATE audit_log SET decision = 'deny' WHERE id = 3")
    assert verify(gw)["first_problem"]["id"] == 3


@pytest.mark.parametrize("fmt", ["jsonl", "json"])
def test_an_export_is_verified_offline_with_the_key(gateway: LiveGateway, tmp_path: Path, fmt: str) -> None:
    traffic(gateway)
    out = tmp_path / f"audit.{fmt}"
    r = cli(gateway, tmp_path, "audit", "export", "--format", fmt, "--output", str(out))
    assert r.returncode == 0, r.stderr
    key = tmp_path / "chain.key"
    key.write_text(AUDIT_CHAIN_KEY + "\n")
    gateway.stop()  # offline: no gateway needed
    r = cli(gateway, tmp_path, "audit", "verify", "--file", str(out), "--key-file", str(key),
            "--head", str(gateway.state_dir / "audit_head"))  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "intact" in r.stdout and "matches" in r.stdout

    entries = [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if fmt == "jsonl" \
        else json.loads(out.read_text())  # fmt: skip
    original = [dict(e) for e in entries]
    victim = entries[5]
    victim["decision"] = "allow" if victim["decision"] != "allow" else "deny"
    edited = tmp_path / f"edited.{fmt}"
    edited.write_text("".join(json.dumps(e) + "\n" for e in entries) if fmt == "jsonl" else json.dumps(entries))
    r = cli(gateway, tmp_path, "audit", "verify", "--file", str(edited), "--key-file", str(key))
    assert r.returncode == 1 and f"row {victim['id']} does not match its MAC" in r.stderr

    wrong = tmp_path / "wrong.key"
    wrong.write_text("not-the-key-" + "y" * 40)
    r = cli(gateway, tmp_path, "audit", "verify", "--file", str(out), "--key-file", str(wrong))
    assert r.returncode == 1

    shortened = tmp_path / f"short.{fmt}"
    shortened.write_text("".join(json.dumps(e) + "\n" for e in original[:-2]) if fmt == "jsonl"
                         else json.dumps(original[:-2]))  # fmt: skip
    r = cli(gateway, tmp_path, "audit", "verify", "--file", str(shortened), "--key-file", str(key),
            "--head", str(gateway.state_dir / "audit_head"))  # fmt: skip
    assert r.returncode == 1 and "cut" in r.stderr


def test_a_failed_batch_falls_back_row_by_row_and_the_chain_holds(tmp_path: Path) -> None:
    """A bad row in a batch of audit rows (a value SQLite cannot bind) fails alone; a refused job
    (a name conflict) rolls back alone; the rows around them are chained as committed."""
    key = b"k" * 40

    def event(i: int, context: Any = None) -> AuditEvent:
        return AuditEvent(time.time(), "check", "agent_x", "x", "read:workspace", f"f{i}", "allow", True, "p", "r",
                          "ok", "t", f"dec_{i}", None, context)  # fmt: skip

    async def run() -> tuple[dict[str, Any], int, int]:
        store = SQLiteStore(tmp_path / "m.db", chain_key=key, head_path=tmp_path / "head")
        await store.open()
        try:
            agent = AgentRecord("agent_x", "x", "verified", (), "active", time.time())
            await store.insert_agent(agent)
            # only audit rows: one INSERT for the batch fails, the rows are retried one by one
            rows: list[Any] = [store.append_audit(event(i)) for i in range(20)]
            rows.insert(7, store.append_audit(event(99, context=object())))  # cannot be bound
            results = await asyncio.gather(*rows, return_exceptions=True)
            assert sum(isinstance(r, BaseException) for r in results) == 1 and isinstance(results[7], StoreError)
            written = len(results) - 1
            records = 0
            # rows and jobs: a refused job rolls back to its savepoint; a bad row fails its batch
            for _ in range(3):
                jobs: list[Any] = [store.append_audit(event(i)) for i in range(20)]
                jobs.insert(12, store.insert_agent(agent, event(98)))  # name conflict
                jobs.append(store.append_record(OutcomeRecord(time.time(), "agent_x", "read:workspace", "f1",
                                                              "success", None, 1.0, None), event(97)))  # fmt: skip
                jobs.insert(5, store.append_audit(event(99, context=object())))
                results = await asyncio.gather(*jobs, return_exceptions=True)
                assert isinstance(results[5], StoreError) and isinstance(results[13], (ConflictError, StoreError))
                written += sum(not isinstance(r, BaseException) for r in results)
                records += not isinstance(results[-1], BaseException)
            return await store.verify_chain(), written, records
        finally:
            await store.close()

    body, written, records = asyncio.run(run())
    assert body["ok"] is True, body
    assert (body["tables"][0]["rows"], body["tables"][1]["rows"]) == (written, records)


# --------------------------------------------------------------------------- review 3: H1, L3


def test_deleted_chain_metadata_refuses_start_instead_of_laundering_edits(start_gateway: Start) -> None:
    """With write access to the database only, deleting the metadata row must not get edited rows
    re-chained as "legacy": the gateway refuses to start, and only the operator's reset file (in the
    state folder, out of a database writer's reach) restarts the chain, with an audit row."""
    gw = start_gateway()
    traffic(gw, 6)
    gw.stop()
    tamper(gw.db_path, "UPDATE audit_log SET decision = 'allow', reason = 'ok' WHERE decision = 'deny'",
           "DELETE FROM audit_chain")  # fmt: skip
    with pytest.raises(RuntimeError, match="no audit chain metadata") as refused:
        start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    assert "audit_chain_reset" in str(refused.value)

    (gw.state_dir / "audit_chain_reset").write_text("restored by hand after incident 42\n")
    gw2 = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    assert not (gw2.state_dir / "audit_chain_reset").exists()  # used once
    body = verify(gw2)
    assert body["ok"] is True, body
    assert "re-chained by the operator's reset" in " ".join(body["tables"][0]["notes"])
    rows = gw2.admin("GET", "/admin/audit", params={"limit": 500}).json()["entries"]
    reset = [e for e in rows if e["decision"] == "audit_chain_reset"]
    assert reset and "incident 42" in reset[0]["reason"]


def test_a_database_from_another_chain_refuses_start_and_fails_verify(start_gateway: Start, tmp_path: Path) -> None:
    """Another database chained with the same key, swapped in, is not accepted silently; a head
    file from another chain fails verify."""
    first, other = start_gateway(), start_gateway()
    traffic(first, 3)
    traffic(other, 3)
    other_head = (other.state_dir / "audit_head").read_bytes()
    (first.state_dir / "audit_head").write_bytes(other_head)  # while it runs: verify sees it at once
    body = verify(first)
    assert body["ok"] is False and "database replaced or head from another gateway" in body["first_problem"]["problem"]
    first.stop()
    other.stop()
    with pytest.raises(RuntimeError, match="database was replaced"):
        start_gateway(first.policies_dir, db_path=first.db_path, state_dir=first.state_dir)
    (first.state_dir / "audit_chain_reset").write_text("moved the state folder on purpose")
    again = start_gateway(first.policies_dir, db_path=first.db_path, state_dir=first.state_dir)
    assert verify(again)["ok"] is True


def test_a_malformed_anchor_is_a_verify_failure_and_a_clear_start_error(start_gateway: Start) -> None:
    gw = start_gateway()
    traffic(gw, 2)
    conn = sqlite3.connect(gw.db_path)
    doc = json.loads(conn.execute("SELECT value FROM audit_chain WHERE name = 'chain'").fetchone()[0])
    doc["anchors"] = {"audit_log": {"id": "abc", "mac": "x"}}
    conn.execute("UPDATE audit_chain SET value = ? WHERE name = 'chain'", (json.dumps(doc),))
    conn.commit()
    conn.close()
    body = verify(gw)
    assert body["ok"] is False and "malformed" in json.dumps(body)
    gw.stop()
    with pytest.raises(RuntimeError, match="malformed") as refused:
        start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    assert "Traceback" not in str(refused.value)


# --------------------------------------------------------------------------- review 3: M3, M2


def test_a_negative_zero_duration_does_not_look_like_tampering(gateway: LiveGateway) -> None:
    """SQLite stores -0.0 as 0.0: the MAC must be sealed over what it gives back."""
    _, token = gateway.create_agent("zero")
    resp = httpx.post(gateway.url + "/proxy/governance/record", content='{"action":"read:workspace","duration_ms":-0.0}',
                      headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})  # fmt: skip
    assert resp.status_code == 201, resp.text
    body = verify(gateway)
    assert body["ok"] is True, body["first_problem"]


def test_a_number_that_overflows_is_refused_and_old_rows_with_one_still_list(start_gateway: Start,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    db = tmp_path / "old-inf.db"

    async def old_row() -> None:  # what an earlier gateway stored for {"x": 1e999}, sealed as it was then
        store = SQLiteStore(db, chain_key=AUDIT_CHAIN_KEY.encode())
        await store.open()
        try:
            await store.append_audit(AuditEvent(time.time(), "check", None, "old", "read:workspace", "a", "deny",
                                                True, "p", "r", "no", "t", "dec_inf", None, '{"x":Infinity}'))  # fmt: skip
        finally:
            await store.close()

    asyncio.run(old_row())
    gateway = start_gateway(db_path=db)
    _, token = gateway.create_agent("inf")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for body, field in (('{"action":"read:workspace","resource":"a","context":{"x":1e999}}', "context.x"),
                        ('{"action":"read:workspace","resource":"a","context":{"y":[1,-1e999]}}', "context.y[1]")):
        resp = httpx.post(gateway.url + "/proxy/governance/check", content=body, headers=headers)
        assert resp.status_code == 400 and f"'{field}'" in resp.json()["message"], resp.text
    listing = gateway.admin("GET", "/admin/audit", params={"limit": 100})
    assert listing.status_code == 200, listing.text
    assert [e["context"] for e in listing.json()["entries"] if e["decision_id"] == "dec_inf"] == ['{"x":Infinity}']
    out = tmp_path / "e.jsonl"
    r = cli(gateway, tmp_path, "audit", "export", "--format", "jsonl", "--output", str(out))
    assert r.returncode == 0, r.stderr
    key = tmp_path / "chain.key"
    key.write_text(AUDIT_CHAIN_KEY + "\n")
    r = cli(gateway, tmp_path, "audit", "verify", "--file", str(out), "--key-file", str(key))
    assert r.returncode == 0, r.stdout + r.stderr
