"""Races against a real gateway: rate limits across processes, two operators, revocation in flight.

- Many OS processes hammer one agent's per-minute limit at once: exactly the limit is admitted, and
  the audit trail says the same.
- Two operators approve and deny the same approval at the same instant: exactly one wins (the other
  gets 409), the approval's status and the audit trail agree with the winner; an approved approval
  presented twice at once allows exactly once.
- An agent is revoked while checks are in flight: no request sent after the revoke returned is
  allowed, and no allow in the audit trail is timed after the revoke committed.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveGateway
from tests.reliability.figures import record
from tests.reliability.soak import scale

LIMIT_POLICY = """\
name: limit-policy
version: "1.0"
appliesTo:
  tags: [race]
rules:
  - effect: allow
    actions: ["read:*"]
defaultEffect: deny
rateLimits:
  requestsPerMinute: {limit}
"""

APPROVAL_POLICY = """\
name: approval-policy
version: "1.0"
appliesTo:
  tags: [race]
rules:
  - effect: allow
    actions: ["read:*", "send:email"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["send:email"]
"""

# One OS process: wait for the common start instant, fire `n` checks on its own connection, print statuses.
HAMMER = r"""
import json, sys, time, httpx
url, token, n, start = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
with httpx.Client(base_url=url, headers={"Authorization": "Bearer " + token}, timeout=30) as c:
    c.get("/health")
    while time.time() < start:
        time.sleep(0.001)
    out = []
    for i in range(n):
        r = c.post("/proxy/governance/check", json={"action": "read:workspace", "resource": f"r{i}.txt"})
        out.append([r.status_code, r.json().get("decision"), r.json().get("decision_id")])
print(json.dumps(out))
"""


def ts(iso_text: str) -> float:
    return datetime.fromisoformat(iso_text.replace("Z", "+00:00")).timestamp()


def trail(gw: LiveGateway, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        resp = gw.admin("GET", "/admin/audit", params={"order": "asc", "after": after, "limit": 10000, **params})
        assert resp.status_code == 200, resp.text
        entries = resp.json()["entries"]
        if not entries:
            return out
        out += entries
        after = resp.json()["next_cursor"]


def test_many_processes_admit_exactly_the_per_minute_limit(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    limit = 50
    procs = scale(request.config, 8, 32)
    per_proc = scale(request.config, 15, 40)
    policy = tmp_path / "limit.yaml"
    policy.write_text(LIMIT_POLICY.format(limit=limit), encoding="utf-8")
    gw = start_gateway(policy)
    agent_id, token = gw.create_agent("race-bot", tags=["race"])
    start = time.time() + 2.0 + procs * 0.1  # every process is connected and waiting by then
    workers = [subprocess.Popen([sys.executable, "-c", HAMMER, gw.url, token, str(per_proc), str(start)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(procs)]  # fmt: skip
    answers: list[list[Any]] = []
    for w in workers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        answers += json.loads(out)

    statuses = [a[0] for a in answers]
    assert len(answers) == procs * per_proc
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert statuses.count(200) == limit
    assert statuses.count(429) == procs * per_proc - limit
    rows = [e for e in trail(gw, agent=agent_id, kind="check")]
    assert sorted(e["decision"] for e in rows) == sorted(a[1] for a in answers)
    assert sum(e["decision"] == "allow" for e in rows) == limit
    record("concurrency_rate_limit", processes=procs, requests=len(answers), limit=limit,
           admitted=statuses.count(200))  # fmt: skip


def _race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls in threads released at the same instant."""
    barrier = threading.Barrier(len(calls))
    results: list[httpx.Response | None] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(r is not None for r in results)
    return results  # type: ignore[return-value]


def test_two_operators_deciding_one_approval_at_once_leave_exactly_one_outcome(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rounds = scale(request.config, 12, 60)
    policy = tmp_path / "approval.yaml"
    policy.write_text(APPROVAL_POLICY, encoding="utf-8")
    gw = start_gateway(policy)
    _, token = gw.create_agent("race-bot", tags=["race"])
    outcomes = {"approved": 0, "denied": 0}
    clients = [httpx.Client(base_url=gw.url, headers={"X-Admin-Token": gw.admin_token}, timeout=30) for _ in range(2)]
    try:
        for n in range(rounds):
            asked = gw.check(token, "send:email", f"boss{n}@example.com")
            assert asked.status_code == 403 and asked.json()["decision"] == "approval_required", asked.text
            approval_id = asked.json()["approval_id"]
            first, second = ("approve", "deny") if n % 2 == 0 else ("deny", "approve")
            answers = _race([
                lambda: clients[0].post(f"/admin/approvals/{approval_id}/{first}", json={"by": "alice"}),
                lambda: clients[1].post(f"/admin/approvals/{approval_id}/{second}", json={"by": "bob"}),
            ])  # fmt: skip
            codes = sorted(r.status_code for r in answers)
            assert codes == [200, 409], [r.text for r in answers]
            winner = next(r.json() for r in answers if r.status_code == 200)
            loser = next(r.json() for r in answers if r.status_code == 409)
            assert loser["error"] == "conflict" and "already" in loser["message"]
            outcomes[winner["status"]] += 1
            shown = gw.admin("GET", f"/admin/approvals/{approval_id}").json()
            assert (shown["status"], shown["decided_by"]) == (winner["status"], winner["decided_by"])
            rows = [e for e in trail(gw, kind="approval") if e["approval_id"] == approval_id]
            decided = [e["decision"] for e in rows if e["decision"] in ("approval_approved", "approval_denied")]
            assert decided == [f"approval_{winner['status']}"], rows

            # the agent presents it twice at once: an approval allows at most once
            uses = _race([lambda: gw.check(token, "send:email", f"boss{n}@example.com", approval_id=approval_id)
                          for _ in range(2)])  # fmt: skip
            allowed = [u for u in uses if u.status_code == 200]
            assert len(allowed) == (1 if winner["status"] == "approved" else 0), [u.text for u in uses]
    finally:
        for c in clients:
            c.close()
    assert outcomes["approved"] and outcomes["denied"], outcomes  # both orders really raced
    record("concurrency_approvals", rounds=rounds, double_outcomes=0, **outcomes)


def test_revoke_while_checks_are_in_flight_allows_nothing_after_the_commit(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    rounds = scale(request.config, 3, 15)
    policy = tmp_path / "allow.yaml"
    policy.write_text(LIMIT_POLICY.replace("rateLimits:\n  requestsPerMinute: {limit}\n", ""), encoding="utf-8")
    gw = start_gateway(policy)
    figures = {"rounds": rounds, "checks": 0, "sent_after_revoke_and_allowed": 0, "allows_timed_after_commit": 0,
               "allow_rows_committed_after_revoke": 0, "allows_decided_after_revoke_began": 0}  # fmt: skip
    examples: list[Any] = []
    try:
        for n in range(rounds):
            _revoke_round(gw, n, figures, examples)
    finally:
        record("concurrency_revoke", **figures)
    assert figures["sent_after_revoke_and_allowed"] == 0, examples[:3]
    assert figures["allows_timed_after_commit"] == 0, examples[:3]


def _revoke_round(gw: LiveGateway, n: int, figures: dict[str, int], examples: list[Any]) -> None:
    """One agent, four threads checking, one revoke in the middle; adds what it saw to `figures`."""
    agent_id, token = gw.create_agent(f"revoke-bot-{n}", tags=["race"])
    log: list[tuple[float, float, int]] = []  # (sent, answered, status)
    lock = threading.Lock()
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=gw.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            i = 0
            while not stop.is_set():
                i += 1
                sent = time.time()
                r = c.post("/proxy/governance/check", json={"action": "read:workspace", "resource": f"x{i}"})
                with lock:
                    log.append((sent, time.time(), r.status_code))

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3 + 0.1 * (n % 10))
    revoke_sent = time.time()
    resp = gw.admin("DELETE", f"/admin/agents/{agent_id}")
    revoke_returned = time.time()
    assert resp.status_code == 200, resp.text
    time.sleep(0.4)
    stop.set()
    for t in threads:
        t.join(30)

    assert {s for _, _, s in log} <= {200, 401}
    assert any(s == 200 for sent, _, s in log if sent < revoke_sent), "no check was allowed before the revoke"
    assert any(sent > revoke_returned for sent, _, _ in log), "no check was sent after the revoke"
    late_allows = [(sent, s) for sent, _, s in log if sent > revoke_returned and s == 200]

    rows = trail(gw, agent=agent_id)
    revoke_rows = [e for e in rows if e["kind"] == "admin" and e["decision"] == "agent_revoked"]
    assert len(revoke_rows) == 1
    revoked_at, revoke_row_id = ts(revoke_rows[0]["timestamp"]), revoke_rows[0]["id"]
    allows = [e for e in rows if e["kind"] == "check" and e["decision"] == "allow"]
    assert allows
    # a decision timed after the revoke had committed (DELETE answered) must not be an allow
    after_commit = [e for e in allows if ts(e["timestamp"]) > revoke_returned]
    figures["checks"] += len(log)
    figures["sent_after_revoke_and_allowed"] += len(late_allows)
    figures["allows_timed_after_commit"] += len(after_commit)
    figures["allow_rows_committed_after_revoke"] += len([e for e in allows if e["id"] > revoke_row_id])
    figures["allows_decided_after_revoke_began"] += len([e for e in allows if ts(e["timestamp"]) > revoked_at])
    examples.extend(late_allows + after_commit)


def test_a_check_whose_body_arrives_after_the_revoke_is_refused(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """The deterministic form of the race above: the request is in flight (headers sent, token
    read) when the revoke commits; its body arrives afterwards. Deciding it then must not allow."""
    policy = tmp_path / "allow.yaml"
    policy.write_text(LIMIT_POLICY.replace("rateLimits:\n  requestsPerMinute: {limit}\n", ""), encoding="utf-8")
    gw = start_gateway(policy)
    agent_id, token = gw.create_agent("slow-body-bot", tags=["race"])
    assert gw.check(token, "read:workspace", "before.txt").status_code == 200
    body = json.dumps({"action": "read:workspace", "resource": "in-flight.txt"}).encode()
    host, port = gw.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(f"POST /proxy/governance/check HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body[:10])  # fmt: skip
        time.sleep(0.5)  # the gateway has the headers (and the token) and waits for the body
        revoked = gw.admin("DELETE", f"/admin/agents/{agent_id}")
        assert revoked.status_code == 200
        revoke_returned = time.time()
        conn.sendall(body[10:])
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    status = int(answer.split(b" ", 2)[1])
    rows = trail(gw, agent=agent_id, kind="check")
    late = [e for e in rows if e["decision"] == "allow" and ts(e["timestamp"]) > revoke_returned - 0.001]
    assert status == 401, f"a check decided after the revoke committed was answered {status}: {answer[:300]!r}"
    assert not late, late
