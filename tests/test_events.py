"""The live event feed: what alerts and the console listen to. Real Gateway core, real SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from meshguard_gateway.config import Settings, prepare_state
from meshguard_gateway.gateway import Gateway
from meshguard_gateway.store import SQLiteStore
from tests.conftest import ADMIN_TOKEN, JWT_SECRET, POLICIES


def _settings(tmp_path: Path) -> Settings:
    return prepare_state(Settings(state_dir=tmp_path / "s", policies_dir=POLICIES, jwt_secret=JWT_SECRET,
                                  admin_token=ADMIN_TOKEN, db_path=tmp_path / "m.db"))  # fmt: skip


def test_every_committed_change_reaches_a_listener_with_its_audit_row(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    async def go() -> list[tuple[str, str | None, int | None]]:
        gw = Gateway(settings, SQLiteStore(settings.database))
        await gw.start()
        sub = gw.events.subscribe("test")
        try:
            agent, _, _ = await gw.create_agent("listener", "verified", ["autogpt"])
            allowed = await gw.check(agent, "browse:web", "https://example.com")
            denied = await gw.check(agent, "execute:shell", "ls")
            await gw.record(agent, "browse:web", "https://example.com", "success", "ok", 1.0,
                            allowed.decision_id, allowed.trace_id)  # fmt: skip
            await gw.revoke_agent("listener")
            seen = []
            while not sub.queue.empty():
                e = await sub.get()
                seen.append((e.kind, e.audit.decision if e.audit else None, e.audit_id))
            assert (("audit", "allow", allowed.audit_id) in seen) and (("audit", "deny", denied.audit_id) in seen)
            return seen
        finally:
            sub.close()
            await gw.close()

    seen = asyncio.run(go())
    assert [k for k, _, _ in seen] == ["agent_created", "audit", "audit", "record", "agent_updated"]
    assert seen[-1][1] == "agent_revoked"
    # what the listener was told is what the database holds
    with sqlite3.connect(settings.database) as db:
        rows = dict(db.execute("SELECT id, decision FROM audit_log WHERE kind = 'check'").fetchall())
    assert rows == {audit_id: decision for kind, decision, audit_id in seen if kind == "audit"}


def test_a_stuck_listener_misses_events_but_never_holds_a_check_back(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    async def go() -> tuple[int, int, int]:
        gw = Gateway(settings, SQLiteStore(settings.database))
        await gw.start()
        stuck = gw.events.subscribe("stuck", maxsize=2)  # never read
        try:
            agent, _, _ = await gw.create_agent("busy", "verified", ["autogpt"])
            results = [await gw.check(agent, "read:workspace", f"f{i}.txt") for i in range(10)]
            return sum(r.allowed for r in results), stuck.queue.qsize(), stuck.missed
        finally:
            stuck.close()
            await gw.close()

    allowed, queued, missed = asyncio.run(go())
    assert allowed == 10  # every check answered
    assert queued == 2 and missed == 9  # agent_created + 1 check kept; the other 9 checks counted as missed
