"""Approvals: durable, bound to agent + action + resource + context, usable once, expiring, audited."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveGateway

POLICY = """\
name: deploys
appliesTo:
  tags: [ops]
rules:
  - effect: allow
    actions: ["read:*", "execute:deploy"]
  - effect: deny
    actions: ["execute:shell"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["execute:deploy", "execute:shell"]
"""


def policy_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "approval-policies"
    folder.mkdir(exist_ok=True)
    (folder / "deploys.yaml").write_text(POLICY)
    return folder


@pytest.fixture
def gw(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> LiveGateway:
    return start_gateway(policy_dir(tmp_path))


def ask(gw: LiveGateway, token: str, **body: object) -> httpx.Response:
    return httpx.post(gw.url + "/proxy/governance/check", json={"action": "execute:deploy", "resource": "prod",
                      "context": {"sandbox": False}, **body}, headers={"Authorization": f"Bearer {token}"})  # fmt: skip


def transitions(gw: LiveGateway, approval_id: str) -> list[str]:
    rows = gw.admin("GET", "/admin/audit", params={"kind": "approval", "order": "asc", "limit": 100}).json()["entries"]
    return [r["decision"] for r in rows if r["approval_id"] == approval_id]


def test_approval_required_is_a_403_never_a_200(gw: LiveGateway) -> None:
    _, token = gw.create_agent("deployer", tags=["ops"])
    resp = ask(gw, token)
    assert resp.status_code == 403
    body = resp.json()
    assert body["allowed"] is False and body["error"] == "approval_required"
    assert body["decision"] == "approval_required" and resp.headers["X-MeshGuard-Decision"] == "approval_required"
    apr = body["approval_id"]
    assert apr.startswith("apr_") and body["approval_url"] == f"/proxy/approvals/{apr}"
    assert body["approve_command"] == f"meshguard approval approve {apr}" and body["expires_at"]
    # Asking again for the same thing does not pile up approvals.
    assert ask(gw, token).json()["approval_id"] == apr
    assert ask(gw, token, resource="staging").json()["approval_id"] != apr
    pending = gw.admin("GET", "/admin/approvals", params={"status": "pending"}).json()["approvals"]
    assert {a["resource"] for a in pending} == {"prod", "staging"}
    # A deny rule is never turned into an approval.
    shell = httpx.post(gw.url + "/proxy/governance/check", json={"action": "execute:shell"},
                       headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    assert shell.status_code == 403 and shell.json()["decision"] == "deny"


def test_approve_then_use_once(gw: LiveGateway) -> None:
    _, token = gw.create_agent("deployer", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    approved = gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "alice", "reason": "release 1.2"})
    assert approved.status_code == 200
    assert approved.json()["status"] == "approved" and approved.json()["decided_by"] == "alice"
    assert approved.json()["decision_reason"] == "release 1.2"

    use = ask(gw, token, approval_id=apr)
    assert use.status_code == 200
    body = use.json()
    assert body["allowed"] is True and body["decision"] == "allow" and "alice" in body["reason"]
    assert body["approval_id"] == apr

    again = ask(gw, token, approval_id=apr)
    assert again.status_code == 403 and again.json()["decision"] == "deny"
    assert "already used" in again.json()["reason"]
    assert gw.admin("GET", f"/admin/approvals/{apr}").json()["status"] == "used"
    assert transitions(gw, apr) == ["approval_approved", "approval_used"]
    assert gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "bob"}).status_code == 409


def test_approval_is_bound_to_the_request(gw: LiveGateway) -> None:
    _, token = gw.create_agent("deployer", tags=["ops"])
    _, other = gw.create_agent("intruder", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "alice"})
    for body in ({"resource": "other"}, {"context": {"sandbox": True}}, {"context": {}}):
        resp = ask(gw, token, approval_id=apr, **body)
        assert resp.status_code == 403 and resp.json()["decision"] == "deny", body
        assert "not for this request" in resp.json()["reason"]
    stolen = ask(gw, other, approval_id=apr)
    assert stolen.status_code == 403 and "does not exist for this agent" in stolen.json()["reason"]
    peek = httpx.get(gw.url + f"/proxy/approvals/{apr}", headers={"Authorization": f"Bearer {other}"})
    assert peek.status_code == 404
    # still usable by its owner, for exactly what was approved
    assert ask(gw, token, approval_id=apr).status_code == 200


def test_deny_with_reason(gw: LiveGateway) -> None:
    _, token = gw.create_agent("deployer", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    denied = gw.admin("POST", f"/admin/approvals/{apr}/deny", json={"by": "bob", "reason": "not on friday"})
    assert denied.status_code == 200 and denied.json()["status"] == "denied"
    resp = ask(gw, token, approval_id=apr)
    assert resp.status_code == 403 and "denied by bob: not on friday" in resp.json()["reason"]
    assert gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "alice"}).status_code == 409
    assert transitions(gw, apr) == ["approval_denied"]


def test_agent_waits_on_its_approval(gw: LiveGateway) -> None:
    _, token = gw.create_agent("deployer", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    url = gw.url + f"/proxy/approvals/{apr}"
    auth = {"Authorization": f"Bearer {token}"}
    now = httpx.get(url, headers=auth).json()
    assert now["status"] == "pending" and now["action"] == "execute:deploy" and now["resource"] == "prod"
    short = httpx.get(url, params={"wait": 0.3}, headers=auth)
    assert short.json()["status"] == "pending"

    timer = threading.Timer(0.5, lambda: gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "carol"}))
    timer.start()
    try:
        waited = httpx.get(url, params={"wait": 30}, headers=auth, timeout=40).json()
    finally:
        timer.join()
    assert waited["status"] == "approved" and waited["decided_by"] == "carol"
    assert httpx.get(url).status_code == 401


def test_decide_refusals(gw: LiveGateway) -> None:
    _, token = gw.create_agent("deployer", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    assert gw.admin("POST", "/admin/approvals/apr_nope/approve", json={"by": "a"}).status_code == 404
    assert gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": ""}).status_code == 400
    assert gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": 5}).status_code == 400
    assert gw.admin("GET", "/admin/approvals", params={"status": "maybe"}).status_code == 400
    assert gw.admin("GET", f"/admin/approvals/{apr}").json()["status"] == "pending"  # unchanged
    assert ask(gw, token, approval_id="apr_nope").json()["decision"] == "deny"


def test_approvals_expire_into_a_deny(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    gw = start_gateway(policy_dir(tmp_path), env={"APPROVAL_TTL_SECONDS": "1"})
    _, token = gw.create_agent("deployer", tags=["ops"])
    body = ask(gw, token).json()
    apr = body["approval_id"]
    time.sleep(1.3)
    resp = ask(gw, token, approval_id=apr)
    assert resp.status_code == 403 and resp.json()["decision"] == "deny" and "expired" in resp.json()["reason"]
    assert gw.admin("GET", f"/admin/approvals/{apr}").json()["status"] == "expired"
    assert gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "late"}).status_code == 409
    assert transitions(gw, apr) == ["approval_expired"]
    # a new request asks anew
    assert ask(gw, token).json()["approval_id"] != apr

    # an approved one that is not used in time expires too
    apr2 = ask(gw, token, resource="b").json()["approval_id"]
    gw.admin("POST", f"/admin/approvals/{apr2}/approve", json={"by": "alice"})
    time.sleep(1.3)
    late = ask(gw, token, resource="b", approval_id=apr2)
    assert late.status_code == 403 and "expired" in late.json()["reason"]
    assert transitions(gw, apr2) == ["approval_approved", "approval_expired"]


def test_nobody_looking_still_expires(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    gw = start_gateway(policy_dir(tmp_path), env={"APPROVAL_TTL_SECONDS": "1"})
    _, token = gw.create_agent("deployer", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not transitions(gw, apr):
        time.sleep(0.2)  # the background sweep (every 5 s) writes the transition
    assert transitions(gw, apr) == ["approval_expired"]


def test_the_same_request_asked_at_once_gets_one_approval(gw: LiveGateway) -> None:
    from concurrent.futures import ThreadPoolExecutor

    _, token = gw.create_agent("eager", tags=["ops"])
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: ask(gw, token), range(24)))
    assert {a.status_code for a in answers} == {403}
    assert len({a.json()["approval_id"] for a in answers}) == 1
    assert len(gw.admin("GET", "/admin/approvals", params={"status": "pending"}).json()["approvals"]) == 1


def test_decider_name_cannot_forge_log_lines(gw: LiveGateway) -> None:
    """`by` follows the X-MeshGuard-Actor rule (printable ASCII): a newline or an escape sequence in
    it would write a fake line into the gateway's log, or into an operator's terminal."""
    _, token = gw.create_agent("deployer", tags=["ops"])
    apr = ask(gw, token).json()["approval_id"]
    forged = "bob\n2026-12-03 12:00:00,000 WARNING meshguard: agent revoked: deployer (forged)\x1b[2J"
    for by in (forged, "x\ty", "é", "a" * 129):
        resp = gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": by})
        assert resp.status_code == 400 and "'by'" in resp.json()["message"], (by, resp.text)
    assert gw.admin("GET", f"/admin/approvals/{apr}").json()["status"] == "pending"  # unchanged
    assert "forged" not in gw.log()
    assert gw.admin("POST", f"/admin/approvals/{apr}/approve", json={"by": "bob o'neil"}).status_code == 200
