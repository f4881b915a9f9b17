"""Crash consistency: SIGKILL the gateway while clients stream checks; nothing acknowledged is lost.

A decision is committed before its answer leaves (docs/architecture.md), so every decision_id a
client received must be in the audit trail after a SIGKILL at any moment, every acknowledged
outcome record must be attached to its decision, the SQLite file must pass `PRAGMA
integrity_check`, and the restarted gateway (same database) must serve at once with the agents it
had. Default: a few crash/restart cycles; `--soak` (or MESHGUARD_SOAK=1): many.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveGateway
from tests.reliability.figures import record
from tests.reliability.soak import scale

POLICY = """\
name: crash-policy
version: "1.0"
description: Allows reads, denies the shell, no rate limits (so every check is a decision to keep).
appliesTo:
  tags: [crash]
rules:
  - effect: allow
    actions: ["read:*"]
  - effect: deny
    actions: ["execute:shell"]
defaultEffect: deny
"""
CLIENTS = 4


@dataclass
class Stream:
    """What the clients were told, shared between their threads."""

    decisions: dict[str, str] = field(default_factory=dict)  # decision_id -> decision
    records: dict[str, int] = field(default_factory=dict)  # decision_id -> acknowledged record id
    failures: int = 0
    unexpected: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def count(self) -> int:
        with self.lock:
            return len(self.decisions)


def client_loop(url: str, token: str, stream: Stream, seed: int) -> None:
    """Checks (and some outcome records) as fast as one keep-alive connection allows."""
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        n = 0
        while not stream.stop.is_set():
            n += 1
            action = "read:workspace" if rng.random() < 0.8 else "execute:shell"
            try:
                resp = client.post("/proxy/governance/check", json={"action": action, "resource": f"f{seed}-{n}.txt"})
            except httpx.HTTPError:
                with stream.lock:
                    stream.failures += 1
                time.sleep(0.01)
                continue
            if resp.status_code not in (200, 403):
                stream.unexpected.append(f"{resp.status_code} {resp.text[:200]}")
                continue
            body = resp.json()
            with stream.lock:
                stream.decisions[body["decision_id"]] = body["decision"]
            if resp.status_code == 200 and rng.random() < 0.2:
                try:
                    rec = client.post("/proxy/governance/record", json={
                        "action": action, "resource": f"f{seed}-{n}.txt", "status": "success",
                        "result": "ok", "duration_ms": 1.0, "decision_id": body["decision_id"]})  # fmt: skip
                except httpx.HTTPError:
                    continue
                if rec.status_code == 201:
                    with stream.lock:
                        stream.records[body["decision_id"]] = rec.json()["id"]


def audited(gw: LiveGateway) -> dict[str, dict[str, Any]]:
    """Every check in the audit trail, by decision_id, following the cursor from the start."""
    out: dict[str, dict[str, Any]] = {}
    after = 0
    while True:
        resp = gw.admin("GET", "/admin/audit", params={"kind": "check", "order": "asc", "after": after, "limit": 10000})
        assert resp.status_code == 200, resp.text
        body = resp.json()
        for entry in body["entries"]:
            out[entry["decision_id"]] = entry
        if not body["entries"]:
            return out
        after = body["next_cursor"]


def integrity(db: Path) -> str:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_decision(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cycles = scale(request.config, 3, 25)
    seed = int(os.environ.get("MESHGUARD_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"crash test seed {seed} (MESHGUARD_CRASH_SEED={seed} to repeat), {cycles} cycles")
    policy = tmp_path / "crash.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    db = tmp_path / "meshguard.db"

    gw = start_gateway(policy, db_path=db)
    _, token = gw.create_agent("crash-bot", tags=["crash"])
    received: dict[str, str] = {}
    records: dict[str, int] = {}
    totals = {"checks_received": 0, "records_acknowledged": 0, "client_errors_after_kill": 0, "rows_lost": 0,
              "crashes_survived": 0}
    try:
        _crash_cycles(start_gateway, gw, token, policy, db, rng, seed, cycles, received, records, totals)
    finally:
        record("crash", seed=str(seed), **totals)


def _crash_cycles(start_gateway: Callable[..., LiveGateway], gw: LiveGateway, token: str, policy: Path, db: Path,
                  rng: random.Random, seed: int, cycles: int, received: dict[str, str], records: dict[str, int],
                  totals: dict[str, int]) -> None:  # fmt: skip
    for cycle in range(cycles):
        stream = Stream()
        target = rng.randint(300, 2500)  # kill after this many answers ...
        extra = rng.uniform(0, 0.05)  # ... plus a random sliver, so the kill lands mid-batch
        threads = [threading.Thread(target=client_loop, args=(gw.url, token, stream, seed * 100 + cycle * 10 + i))
                   for i in range(CLIENTS)]  # fmt: skip
        for t in threads:
            t.start()
        deadline = time.monotonic() + 120
        while stream.count() < target and time.monotonic() < deadline and not stream.unexpected:
            time.sleep(0.005)
        time.sleep(extra)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait()
        time.sleep(0.2)
        stream.stop.set()
        for t in threads:
            t.join(30)
        assert not stream.unexpected, stream.unexpected[:5]
        assert stream.count() >= target, f"cycle {cycle}: only {stream.count()} answers before the deadline"
        received.update(stream.decisions)
        records.update(stream.records)
        totals["checks_received"] += len(stream.decisions)
        totals["records_acknowledged"] += len(stream.records)
        totals["client_errors_after_kill"] += stream.failures

        assert integrity(db) == "ok", f"cycle {cycle}: PRAGMA integrity_check failed after SIGKILL"

        gw = start_gateway(policy, db_path=db)  # the same database: the agent and the trail survive
        trail = audited(gw)
        lost = sorted(set(received) - set(trail))
        totals["rows_lost"] += len(lost)
        assert not lost, f"cycle {cycle}: {len(lost)} acknowledged decisions are not in the audit trail, e.g. {lost[:3]}"
        wrong = [d for d, decision in received.items() if trail[d]["decision"] != decision]
        assert not wrong, f"cycle {cycle}: audited decision differs from the answer for {wrong[:3]}"
        unlinked = [d for d in records if trail[d]["outcome"] is None]
        assert not unlinked, f"cycle {cycle}: acknowledged outcome records missing for {unlinked[:3]}"

        # it serves again, with the same agent and token, and the new decision is durable too
        again = gw.check(token, "read:workspace", "after-restart.txt")
        assert again.status_code == 200, again.text
        assert again.json()["decision_id"] in audited(gw)
        totals["crashes_survived"] += 1


LIMIT_POLICY = """\
name: limit-policy
version: "1.0"
appliesTo:
  tags: [crash]
rules:
  - effect: allow
    actions: ["read:*"]
defaultEffect: deny
rateLimits:
  requestsPerMinute: 5
"""


def test_rate_limit_budget_survives_a_restart(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """An agent that used its per-minute budget must not get a new one because the gateway restarted
    (B7-3: the windows are rebuilt at start from the audit trail)."""
    policy = tmp_path / "limit.yaml"
    policy.write_text(LIMIT_POLICY, encoding="utf-8")
    db = tmp_path / "meshguard.db"
    gw = start_gateway(policy, db_path=db)
    _, token = gw.create_agent("limited-bot", tags=["crash"])
    before = [gw.check(token, "read:workspace", f"a{i}.txt").status_code for i in range(5)]
    assert before == [200] * 5
    assert gw.check(token, "read:workspace", "over.txt").status_code == 429
    os.kill(gw.proc.pid, signal.SIGKILL)
    gw.proc.wait()
    gw = start_gateway(policy, db_path=db)
    after = gw.check(token, "read:workspace", "after-restart.txt")
    assert after.status_code == 429, "the restarted gateway admitted a 6th request within the same minute"


@pytest.mark.slow
def test_rate_limit_holds_across_sigkills(start_gateway: Callable[..., LiveGateway], tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:  # fmt: skip
    """Within one window, across SIGKILLs at random moments and restarts, exactly the limit's number of
    requests are counted in total (allowed or denied: a denied request is still a request), as the
    audit trail records them: no committed decision is forgotten by the restarted gateway's counters,
    and none is granted twice."""
    limit = 300
    kills = scale(request.config, 2, 6)
    rng = random.Random()
    policy = tmp_path / "limit.yaml"
    # per hour, so that a slow machine cannot slide the window under the test
    policy.write_text(LIMIT_POLICY.replace("requestsPerMinute: 5", f"requestsPerHour: {limit}"), encoding="utf-8")
    db = tmp_path / "meshguard.db"
    gw = start_gateway(policy, db_path=db)
    agent_id, token = gw.create_agent("limited-bot", tags=["crash"])
    answered = 0  # decisions (allow or deny) the clients received
    for _ in range(kills):
        stream = Stream()
        target = answered + rng.randint(20, limit // (kills + 1))
        threads = [threading.Thread(target=client_loop, args=(gw.url, token, stream, rng.randrange(1 << 20)))
                   for _ in range(CLIENTS)]  # fmt: skip
        for t in threads:
            t.start()
        while answered + stream.count() < target:
            time.sleep(0.002)
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait()
        stream.stop.set()
        for t in threads:
            t.join(30)
        assert not stream.unexpected, stream.unexpected[:3]
        answered += stream.count()
        gw = start_gateway(policy, db_path=db)
    # spend the rest of the budget; then nothing more is admitted
    with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as client:
        statuses = [client.post("/proxy/governance/check", json={"action": "read:workspace", "resource": f"r{i}"}).status_code
                    for i in range(limit - answered + 20)]  # fmt: skip
    assert set(statuses) <= {200, 429}
    assert statuses[-20:] == [429] * 20
    counted = [e for e in audited_checks(gw, agent_id) if e["decision"] in ("allow", "deny")]
    assert len(counted) == limit, (len(counted), answered, statuses.count(200))
    assert answered + statuses.count(200) <= limit
    record("crash_rate_limit", kills=kills, limit=limit, counted=len(counted),
           answered=answered + statuses.count(200))  # fmt: skip


def audited_checks(gw: LiveGateway, agent_id: str) -> list[dict[str, Any]]:
    return [e for e in audited(gw).values() if e["agent_id"] == agent_id]
