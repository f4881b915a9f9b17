"""What must survive a gateway restart: agents, revocations, approvals, audit rows."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import LiveGateway

POLICY = """\
name: deploys
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["read:*", "execute:deploy"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["execute:deploy"]
"""


def _restart(start_gateway: Callable[..., LiveGateway], old: LiveGateway, sig: int = signal.SIGTERM) -> LiveGateway:
    old.stop(sig)
    return start_gateway(old.policies_dir, db_path=old.db_path, state_dir=old.state_dir)


def test_revocation_survives_restart(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway()
    _, revoked_token = gw.create_agent("gone")
    _, kept_token = gw.create_agent("kept")
    assert gw.check(revoked_token, "read:web").status_code == 200
    gw.admin("DELETE", "/admin/agents/gone")
    for sig in (signal.SIGTERM, signal.SIGKILL):  # clean stop, then a crash
        gw = _restart(start_gateway, gw, sig)
        resp = gw.check(revoked_token, "read:web")
        assert resp.status_code == 401 and "revoked" in resp.json()["reason"]
        assert gw.check(kept_token, "read:web").status_code == 200  # tokens stay valid across restarts
        assert gw.admin("GET", "/admin/agents/gone").json()["status"] == "revoked"


def test_audit_rows_survive_restart_even_a_crash(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway()
    _, token = gw.create_agent("audited")
    answered = [gw.check(token, a).json()["decision_id"] for a in ("read:web", "execute:shell", "browse:x")]
    gw = _restart(start_gateway, gw, signal.SIGKILL)  # no shutdown code runs
    rows = gw.admin("GET", "/admin/audit", params={"kind": "check", "order": "asc"}).json()["entries"]
    assert [r["decision_id"] for r in rows] == answered
    assert [r["decision"] for r in rows] == ["allow", "deny", "allow"]
    # ids keep growing after the restart: a follower's cursor stays valid
    new_id = gw.check(token, "read:web").json()["decision_id"]
    after = gw.admin("GET", "/admin/audit", params={"after": rows[-1]["id"]}).json()["entries"]
    assert [r["decision_id"] for r in after if r["kind"] == "check"] == [new_id]


def test_approvals_survive_restart(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "deploys.yaml").write_text(POLICY)
    gw = start_gateway(folder)
    _, token = gw.create_agent("deployer")
    ask = {"action": "execute:deploy", "resource": "prod"}
    apr = gw.check(token, **ask).json()["approval_id"]
    apr_approved = gw.check(token, "execute:deploy", "staging").json()["approval_id"]
    gw.admin("POST", f"/admin/approvals/{apr_approved}/approve", json={"by": "alice"})

    gw = _restart(start_gateway, gw, signal.SIGKILL)
    pending = gw.admin("GET", "/admin/approvals", params={"status": "pending"}).json()["approvals"]
    assert [a["id"] for a in pending] == [apr]
    assert gw.check(token, **ask).json()["approval_id"] == apr  # still the same request
    # approved before the restart: usable once after it
    use = gw.check(token, "execute:deploy", "staging", approval_id=apr_approved)
    assert use.status_code == 200
    gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "bob"})

    gw = _restart(start_gateway, gw)
    assert gw.check(token, "execute:deploy", "staging", approval_id=apr_approved).status_code == 403  # used
    assert gw.check(token, "execute:deploy", "prod", approval_id=apr).status_code == 200
    assert gw.admin("GET", f"/admin/approvals/{apr}").json()["status"] == "used"


def test_clean_stop_removes_gateway_json_and_keeps_secrets(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway()
    info = gw.state_dir / "gateway.json"
    assert info.exists()
    gw.stop()
    assert gw.proc.returncode == 0
    assert not info.exists()
    assert "gateway stopped" in gw.log()
    gw2 = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir)
    assert httpx.get(gw2.url + "/health").status_code == 200


def test_retention_purges_old_rows_at_start(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway()
    _, token = gw.create_agent("old-timer")
    old = gw.check(token, "read:web").json()["decision_id"]
    time.sleep(1.5)
    gw.stop()
    # 0.00001 days = 0.864 s: everything written before the sleep is past retention
    gw = start_gateway(gw.policies_dir, db_path=gw.db_path, state_dir=gw.state_dir,
                       env={"AUDIT_RETENTION_DAYS": "0.00001"})  # fmt: skip
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and "retention: deleted" not in gw.log():
        time.sleep(0.1)
    entries = gw.admin("GET", "/admin/audit", params={"limit": 100}).json()["entries"]
    assert old not in {e["decision_id"] for e in entries}
    # what is left: this start's policy load and the purge's own entry (the audit chain's anchor moved)
    assert [e["decision"] for e in entries if e["kind"] == "admin"] == ["audit_purged", "policies_loaded"]
    assert [e for e in entries if e["kind"] != "admin"] == []
    assert gw.check(token, "read:web").status_code == 200  # agents are not subject to retention


def test_rate_limit_budget_survives_a_crash(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway()
    _, token = gw.create_agent("sprinter")
    assert [gw.check(token, "read:web").status_code for _ in range(30)] == [200] * 30
    gw = _restart(start_gateway, gw, signal.SIGKILL)
    resp = gw.check(token, "read:web")
    assert resp.status_code == 429, resp.text  # the windows were rebuilt from the audit trail
    assert "rate limits rebuilt" in gw.log()
