"""SQLiteStore on real SQLite files: schema, batching, isolation of refused jobs, retention."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import time
from pathlib import Path

import pytest

from meshguard_gateway.errors import ConflictError, NotFoundError, StoreError
from meshguard_gateway.store import (
    SCHEMA_VERSION,
    AgentRecord,
    Approval,
    AuditEvent,
    AuditQuery,
    OutcomeRecord,
    SQLiteStore,
)


def event(i: int = 0, *, ts: float | None = None, decision: str = "allow", agent: str = "agent_a",
          decision_id: str | None = None, kind: str = "check") -> AuditEvent:  # fmt: skip
    return AuditEvent(
        timestamp=ts if ts is not None else time.time(), kind=kind, agent_id=agent, agent_name="a",
        action=f"read:item{i}", resource=None, decision=decision, enforced=True, policy="p", rule="r",
        reason="because", trace_id="t", decision_id=decision_id or f"dec_{i}",
    )  # fmt: skip


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_open_creates_a_private_wal_database_at_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "m.db"

    async def go() -> None:
        store = SQLiteStore(path)
        await store.open()
        await store.append_audit(event())
        await store.close()

    run(go())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT COUNT(*) FROM audit_log").fetchone()[0] == 1


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer than this gateway"):
        SQLiteStore(path).open_sync()


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not usable"):
        SQLiteStore(path).open_sync()


def test_concurrent_appends_are_batched_and_ids_follow_commit_order(tmp_path: Path) -> None:
    async def go() -> list[int]:
        store = SQLiteStore(tmp_path / "m.db", synchronous="NORMAL")
        await store.open()
        ids = await asyncio.gather(*(store.append_audit(event(i)) for i in range(2000)))
        rows = await store.query_audit(AuditQuery(limit=5000, order="asc"))
        await store.close()
        assert [r.id for r in rows] == sorted(ids)
        assert [r.event.action for r in rows] == [f"read:item{i}" for i in range(2000)]  # submission order kept
        return ids

    ids = run(go())
    assert len(set(ids)) == 2000 and sorted(ids) == list(range(1, 2001))


def test_a_refused_job_leaves_nothing_and_spares_its_batch(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore(tmp_path / "m.db")
        await store.open()
        agent = AgentRecord("agent_a", "a", "verified", ("x",), "active", time.time())
        await store.insert_agent(agent)
        dup = AgentRecord("agent_b", "a", "verified", (), "active", time.time())
        results = await asyncio.gather(
            store.append_audit(event(1)),
            store.insert_agent(dup, event(99, kind="admin")),  # name taken: refused with its audit row
            store.append_record(OutcomeRecord(time.time(), "agent_a", "read:x", None, "success", None, None, "dec_x"),
                                None),  # no such decision  # fmt: skip
            store.append_audit(event(2)),
            return_exceptions=True,
        )
        assert isinstance(results[1], ConflictError) and isinstance(results[2], NotFoundError)
        assert isinstance(results[0], int) and isinstance(results[3], int)
        rows = await store.query_audit(AuditQuery(limit=10, order="asc"))
        assert [r.event.action for r in rows] == ["read:item1", "read:item2"]
        assert [a.id for a in await store.load_agents()] == ["agent_a"]
        await store.close()

    run(go())


def test_records_attach_to_their_decision(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore(tmp_path / "m.db")
        await store.open()
        await store.append_audit(event(1, decision_id="dec_1"))
        rid = await store.append_record(
            OutcomeRecord(time.time(), "agent_a", "read:item1", None, "error", "boom", 3.0, "dec_1"), None
        )
        assert rid == 1
        with pytest.raises(NotFoundError):  # another agent cannot claim the decision
            await store.append_record(
                OutcomeRecord(time.time(), "agent_b", "read:item1", None, "success", None, None, "dec_1"), None
            )
        [row] = await store.query_audit(AuditQuery())
        assert row.outcome is not None and (row.outcome.status, row.outcome.result) == ("error", "boom")
        await store.close()

    run(go())


def test_approval_transitions_are_compare_and_set(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore(tmp_path / "m.db")
        await store.open()
        now = time.time()
        apr = Approval("apr_1", "agent_a", "a", "execute:deploy", "prod", "{}", "pending", now, now + 300)
        await store.create_approval(apr, event(1))
        approved = Approval(**{**apr.__dict__, "status": "approved", "decided_by": "alice", "decided_at": now})
        used = Approval(**{**approved.__dict__, "status": "used", "used_at": now})
        ev = event(2, kind="approval")
        results = await asyncio.gather(
            store.transition_approval(approved, ("pending",), ev),
            store.transition_approval(approved, ("pending",), ev),
            return_exceptions=True,
        )
        assert sum(isinstance(r, ConflictError) for r in results) == 1
        results = await asyncio.gather(
            store.transition_approval(used, ("approved",), ev),
            store.transition_approval(used, ("approved",), ev),
            return_exceptions=True,
        )
        assert sum(isinstance(r, ConflictError) for r in results) == 1  # usable once, even when raced
        got = await store.get_approval("apr_1")
        assert got is not None and got.status == "used" and got.decided_by == "alice"
        kinds = [r.event.kind for r in await store.query_audit(AuditQuery(order="asc"))]
        assert kinds == ["check", "approval", "approval"]  # refused transitions wrote nothing
        assert await store.find_pending_approval("agent_a", "execute:deploy", "prod", "{}") is None
        await store.close()

    run(go())


def test_purge_removes_only_old_rows(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore(tmp_path / "m.db")
        await store.open()
        old, new = time.time() - 100 * 86400, time.time()
        await asyncio.gather(*(store.append_audit(event(i, ts=old)) for i in range(12000)))
        await store.append_audit(event(1, ts=new))
        deleted = await store.purge(time.time() - 90 * 86400)
        assert deleted == 12000
        rows = await store.query_audit(AuditQuery(limit=100))
        assert [r.event.timestamp for r in rows] == [new]
        await store.close()

    run(go())


def test_writes_after_close_fail_cleanly(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore(tmp_path / "m.db")
        await store.open()
        await store.close()
        with pytest.raises(StoreError):
            await store.append_audit(event())

    run(go())


def test_an_older_database_is_migrated_forward_keeping_its_rows(tmp_path: Path) -> None:
    from meshguard_gateway.store import _MIGRATIONS

    path = tmp_path / "v1.db"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[0])
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO audit_log (ts, kind, action, decision, enforced) VALUES (?, 'check', 'read:x', 'allow', 1)",
        (time.time(),),
    )
    conn.commit()
    conn.close()

    async def go() -> None:
        store = SQLiteStore(path)
        await store.open()
        rows = await store.query_audit(AuditQuery())
        stats = await store.audit_stats(0, None, hourly=True)
        await store.close()
        assert [r.event.action for r in rows] == ["read:x"] and stats.total == 1

    run(go())
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 2
    indexes = {r[1] for r in conn.execute("PRAGMA index_list(audit_log)")}
    assert "audit_log_ts_cover" in indexes and "audit_log_ts" not in indexes


def test_a_bad_row_in_a_batch_fails_alone(tmp_path: Path) -> None:
    async def go() -> None:
        store = SQLiteStore(tmp_path / "m.db")
        await store.open()
        bad = AuditEvent(**{**event(99).__dict__, "resource": "a\ud800"})  # not encodable: SQLite refuses it
        results = await asyncio.gather(
            *(store.append_audit(event(i)) for i in range(5)), store.append_audit(bad),
            *(store.append_audit(event(i)) for i in range(5, 10)), return_exceptions=True,
        )  # fmt: skip
        assert isinstance(results[5], StoreError)
        assert all(isinstance(r, int) for i, r in enumerate(results) if i != 5)
        rows = await store.query_audit(AuditQuery(limit=100, order="asc"))
        assert len(rows) == 10 and [r.id for r in rows] == sorted(r for r in results if isinstance(r, int))
        await store.close()

    run(go())
