"""Every HTTP endpoint against a real gateway process: its happy path and its refusals."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest

from tests.conftest import JWT_SECRET, LiveGateway

APPROVAL_POLICY = """\
name: ops
appliesTo:
  tags: [ops]
rules:
  - effect: allow
    actions: ["read:*", "write:workspace/*"]
  - effect: deny
    actions: ["execute:shell"]
    reason: no shell for ops agents
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["execute:deploy"]
"""


def audit(gw: LiveGateway, **params: object) -> list[dict]:
    resp = gw.admin("GET", "/admin/audit", params=params)
    assert resp.status_code == 200, resp.text
    entries: list[dict] = resp.json()["entries"]
    return entries


# ---- public --------------------------------------------------------------------------------


def test_health_root_openapi(gateway: LiveGateway) -> None:
    health = httpx.get(gateway.url + "/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "healthy" and body["mode"] == "enforce" and body["policies"] == 2
    assert {"timestamp", "version"} <= body.keys()
    root = httpx.get(gateway.url + "/").json()
    assert root["name"] == "meshguard-gateway" and root["docs"] == "/docs"
    schema = httpx.get(gateway.url + "/openapi.json").json()
    for path in ("/proxy/governance/check", "/proxy/governance/record", "/proxy/check", "/admin/agents",
                 "/admin/audit", "/admin/approvals/{approval_id}/approve", "/proxy/approvals/{approval_id}"):
        assert path in schema["paths"], path
    assert "requestBody" in schema["paths"]["/proxy/governance/check"]["post"]


def test_health_is_503_without_policies(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    # The fixture waits for 200, so start with one policy and delete it through the API.
    gw2 = start_gateway(_policy_dir(tmp_path, APPROVAL_POLICY))
    assert gw2.admin("DELETE", "/admin/policies/ops").status_code == 200
    resp = httpx.get(gw2.url + "/health")
    assert resp.status_code == 503
    assert resp.json()["status"] == "unhealthy" and "no policies" in resp.json()["reason"]


def test_metrics_use_meshguard_names(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("metrics-bot")
    gateway.check(token, "read:web")
    gateway.check(token, "execute:shell")
    text = httpx.get(gateway.url + "/metrics").text
    assert 'meshguard_policy_checks_total{action="read:web",decision="allow"} 1.0' in text
    assert 'meshguard_policy_checks_total{action="execute:shell",decision="deny"} 1.0' in text
    assert "meshguard_request_duration_seconds_count 2.0" in text
    assert "meshguard_active_agents 1.0" in text
    assert "meshguard_audit_entries_total 2.0" in text


# ---- admin auth ----------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": ""}])
def test_admin_needs_the_admin_token(gateway: LiveGateway, headers: dict[str, str]) -> None:
    for method, path in [("GET", "/admin/agents"), ("POST", "/admin/agents"), ("GET", "/admin/audit"),
                         ("GET", "/admin/policies"), ("GET", "/admin/approvals")]:  # fmt: skip
        resp = httpx.request(method, gateway.url + path, headers=headers, json={"name": "x"})
        assert resp.status_code == 401, (method, path, resp.text)
        assert resp.json()["error"] == "unauthorized"
        assert "X-Admin-Token" in resp.json()["message"]
    assert gateway.admin("GET", "/admin/agents").json()["agents"] == []  # nothing was created


def test_agent_token_is_not_an_admin_token(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("sneaky")
    resp = httpx.get(gateway.url + "/admin/agents", headers={"X-Admin-Token": token})
    assert resp.status_code == 401


# ---- agents --------------------------------------------------------------------------------


def test_agent_lifecycle(gateway: LiveGateway) -> None:
    resp = gateway.admin("POST", "/admin/agents", json={"name": "bot", "trustTier": "trusted", "tags": ["autogpt", "x"]})
    assert resp.status_code == 201
    created = resp.json()
    assert created["id"].startswith("agent_") and created["token"] and created["expiresAt"]
    claims = jwt.decode(created["token"], JWT_SECRET, algorithms=["HS256"], issuer="meshguard")
    assert claims["sub"] == created["id"] and claims["name"] == "bot" and claims["tier"] == "trusted"
    assert claims["tags"] == ["autogpt", "x"] and claims["exp"] - claims["iat"] == 24 * 3600 and claims["jti"]

    listed = gateway.admin("GET", "/admin/agents").json()["agents"]
    assert [(a["id"], a["name"], a["trustTier"], a["status"]) for a in listed] == [
        (created["id"], "bot", "trusted", "active")
    ]
    assert gateway.admin("GET", "/admin/agents", params={"trust": "verified"}).json()["agents"] == []
    by_name = gateway.admin("GET", "/admin/agents/bot").json()
    by_id = gateway.admin("GET", f"/admin/agents/{created['id']}").json()
    assert by_name == by_id and by_name["tags"] == ["autogpt", "x"]

    patched = gateway.admin("PATCH", "/admin/agents/bot", json={"trustTier": "privileged", "tags": ["autogpt"]})
    assert patched.status_code == 200 and patched.json()["trustTier"] == "privileged"
    assert patched.json()["tags"] == ["autogpt"]

    fresh = gateway.admin("POST", "/admin/agents/bot/token")
    assert fresh.status_code == 200 and fresh.json()["token"] != created["token"]

    revoked = gateway.admin("DELETE", "/admin/agents/bot")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked" and revoked.json()["revokedAt"]
    assert gateway.admin("GET", "/admin/agents", params={"status": "revoked"}).json()["agents"][0]["name"] == "bot"
    for token in (created["token"], fresh.json()["token"]):
        denied = gateway.check(token, "read:web")
        assert denied.status_code == 401
        assert denied.json()["error"] == "unauthorized" and "revoked" in denied.json()["reason"]
    assert gateway.admin("POST", "/admin/agents/bot/token").status_code == 409
    assert gateway.admin("PATCH", "/admin/agents/bot", json={"trustTier": "verified"}).status_code == 409


def test_agent_refusals(gateway: LiveGateway) -> None:
    gateway.create_agent("taken")
    cases = [
        ({"name": "taken"}, 409, "conflict"),
        ({"trustTier": "verified"}, 400, "invalid_request"),
        ({"name": "bad name!"}, 400, "invalid_request"),
        ({"name": "ok", "trustTier": "god"}, 400, "invalid_request"),
        ({"name": "ok", "tags": "not-a-list-but-ok"}, 201, None),
        ({"name": "ok2", "tags": [1, 2]}, 400, "invalid_request"),
        ({"name": 42}, 400, "invalid_request"),
    ]
    for body, status, code in cases:
        resp = gateway.admin("POST", "/admin/agents", json=body)
        assert resp.status_code == status, (body, resp.text)
        if code:
            assert resp.json()["error"] == code and resp.json()["message"]
    assert gateway.admin("GET", "/admin/agents/nobody").status_code == 404
    assert gateway.admin("DELETE", "/admin/agents/nobody").status_code == 404
    assert gateway.admin("PATCH", "/admin/agents/taken", json={}).status_code == 400
    assert gateway.admin("GET", "/admin/agents", params={"status": "zombie"}).status_code == 400


def test_tier_change_takes_effect_on_next_request(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    policy = """\
name: trusted-only
appliesTo:
  trustTiers: [trusted]
rules:
  - effect: allow
    actions: ["read:*"]
"""
    gw = start_gateway(_policy_dir(tmp_path, policy))
    _, token = gw.create_agent("climber", trust="verified")
    assert gw.check(token, "read:web").status_code == 403
    gw.admin("PATCH", "/admin/agents/climber", json={"trustTier": "trusted"})
    assert gw.check(token, "read:web").status_code == 200


def test_allowed_lists_patterns_per_policy(gateway: LiveGateway) -> None:
    gateway.create_agent("lister", tags=["autogpt"])
    body = gateway.admin("GET", "/admin/agents/lister/allowed").json()
    assert body["agent"]["name"] == "lister"
    [pol] = body["policies"]
    assert pol["name"] == "autogpt-policy"
    assert "read:*" in pol["allowed"] and "execute:shell" in pol["denied"] and pol["defaultEffect"] == "deny"


# ---- the check ------------------------------------------------------------------------------


def test_check_allow_answer_and_headers(gateway: LiveGateway) -> None:
    agent_id, token = gateway.create_agent("reader")
    resp = httpx.post(
        gateway.url + "/proxy/governance/check",
        json={"action": "read:workspace", "resource": "notes.txt"},
        headers={"Authorization": f"Bearer {token}", "X-Trace-ID": "trace-abc"},
    )
    assert resp.status_code == 200
    body = resp.json()
    assert body["allowed"] is True and body["decision"] == "allow" and body["enforced"] is True
    assert body["policy"] == "autogpt-policy" and body["rule"] and body["reason"]
    assert body["decision_id"].startswith("dec_") and body["trace_id"] == "trace-abc"
    assert body["agent_id"] == agent_id and body["mode"] == "enforce"
    assert resp.headers["X-MeshGuard-Decision"] == "allow"
    assert resp.headers["X-MeshGuard-Policy"] == "autogpt-policy"
    assert resp.headers["X-MeshGuard-Trace-Id"] == "trace-abc"
    assert resp.headers["X-MeshGuard-Agent-Id"] == agent_id
    [row] = audit(gateway, trace="trace-abc")
    assert row["decision_id"] == body["decision_id"] and row["decision"] == "allow" and row["enforced"] is True
    assert (row["agent_id"], row["agent_name"], row["action"], row["resource"]) == (
        agent_id, "reader", "read:workspace", "notes.txt"
    )  # fmt: skip


def test_check_deny_answer(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("shelly")
    resp = httpx.post(
        gateway.url + "/proxy/governance/check",
        json={"action": "execute:shell", "resource": "rm -rf /"},
        headers={"Authorization": f"Bearer {token}", "X-MeshGuard-Trace-ID": "t-deny"},
    )
    assert resp.status_code == 403
    body = resp.json()
    assert body["allowed"] is False and body["error"] == "forbidden" and body["decision"] == "deny"
    assert "denied" in body["reason"] and body["message"] == body["reason"]
    assert body["policy"] == "autogpt-policy" and body["rule"] and body["action"] == "execute:shell"
    assert body["trace_id"] == "t-deny" and body["decision_id"]
    assert resp.headers["X-MeshGuard-Decision"] == "deny"
    assert audit(gateway, trace="t-deny")[0]["decision"] == "deny"


def test_check_rate_limited_answer(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("looper")
    statuses = [gateway.check(token, "read:web").status_code for _ in range(30)]
    assert statuses == [200] * 30
    resp = gateway.check(token, "read:web")
    assert resp.status_code == 429
    body = resp.json()
    assert body["error"] == "rate_limited" and body["decision"] == "rate_limited" and body["allowed"] is False
    assert body["message"] == "Rate limit exceeded" and "rate" in body["reason"].lower()
    assert body["limit"] == "30 requests per minute"
    assert isinstance(body["retry_after"], int) and 1 <= body["retry_after"] <= 60
    assert resp.headers["Retry-After"] == str(body["retry_after"])
    assert resp.headers["X-MeshGuard-Decision"] == "rate_limited"


def test_check_bad_tokens_get_401_with_the_reason(gateway: LiveGateway) -> None:
    agent_id, token = gateway.create_agent("victim")
    now = int(time.time())
    base = {"sub": agent_id, "name": "victim", "tier": "verified", "tags": ["autogpt"], "iss": "meshguard"}
    expired = jwt.encode({**base, "iat": now - 100, "exp": now - 10}, JWT_SECRET, algorithm="HS256")
    forged = jwt.encode({**base, "iat": now, "exp": now + 60}, "x" * 40, algorithm="HS256")
    unknown = jwt.encode({**base, "sub": "agent_0000", "iat": now, "exp": now + 60}, JWT_SECRET, algorithm="HS256")
    other_issuer = jwt.encode({**base, "iss": "evil", "iat": now, "exp": now + 60}, JWT_SECRET, algorithm="HS256")
    cases = {
        None: "missing",
        "Bearer not.a.jwt": "malformed",
        "Basic abc": "malformed",
        f"Bearer {expired}": "expired",
        f"Bearer {forged}": "bad signature",
        f"Bearer {unknown}": "unknown agent",
        f"Bearer {other_issuer}": "malformed",
    }
    for header, reason in cases.items():
        headers = {"Authorization": header} if header else {}
        resp = httpx.post(gateway.url + "/proxy/governance/check", json={"action": "read:web"}, headers=headers)
        assert resp.status_code == 401, (header, resp.text)
        body = resp.json()
        assert body["error"] == "unauthorized" and body["message"] == "Invalid or expired token"
        assert body["reason"].startswith(reason), (reason, body)
    assert gateway.check(token, "read:web").status_code == 200
    assert len(audit(gateway, kind="check")) == 1  # refused tokens write no decision


def test_sdk_header_form(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("sdk-form")
    for method in ("GET", "POST"):
        ok = httpx.request(method, gateway.url + "/proxy/check",
                           headers={"Authorization": f"Bearer {token}", "X-MeshGuard-Action": "read:contacts"})  # fmt: skip
        assert ok.status_code == 200 and ok.json()["policy"] == "autogpt-policy"
    no = httpx.get(gateway.url + "/proxy/check",
                   headers={"Authorization": f"Bearer {token}", "X-MeshGuard-Action": "send:email"})  # fmt: skip
    assert no.status_code == 403
    assert no.json()["error"] == "Forbidden" and no.json()["action"] == "send:email" and no.json()["rule"]
    missing = httpx.get(gateway.url + "/proxy/check", headers={"Authorization": f"Bearer {token}"})
    assert missing.status_code == 400 and "X-MeshGuard-Action" in missing.json()["message"]


def test_audit_mode_answers_200_and_says_what_would_happen(start_gateway: Callable[..., LiveGateway]) -> None:
    gw = start_gateway(mode="audit")
    _, token = gw.create_agent("observed")
    resp = gw.check(token, "execute:shell")
    assert resp.status_code == 200
    body = resp.json()
    assert body["allowed"] is True and body["enforced"] is False and body["decision"] == "deny"
    assert body["mode"] == "audit" and resp.headers["X-MeshGuard-Decision"] == "deny"
    [row] = audit(gw, kind="check")
    assert row["decision"] == "deny" and row["enforced"] is False
    for _ in range(31):
        last = gw.check(token, "read:web")
    assert last.status_code == 200 and last.json()["decision"] == "rate_limited" and "Retry-After" not in last.headers


# ---- record ---------------------------------------------------------------------------------


def test_record_links_outcome_to_decision(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("recorder")
    decision = gateway.check(token, "write:workspace", "out.txt").json()
    resp = httpx.post(
        gateway.url + "/proxy/governance/record",
        json={"action": "write:workspace", "resource": "out.txt", "status": "success", "result": "x" * 5000,
              "duration_ms": 12.5, "decision_id": decision["decision_id"]},
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    assert resp.status_code == 201
    assert resp.json()["recorded"] is True and resp.json()["decision_id"] == decision["decision_id"]
    [row] = audit(gateway, kind="check")
    assert row["outcome"]["status"] == "success" and row["outcome"]["duration_ms"] == 12.5
    assert row["outcome"]["result"] == "x" * 1000


def test_record_without_decision_and_refusals(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("r1")
    _, other = gateway.create_agent("r2")
    foreign = gateway.check(other, "read:web").json()["decision_id"]
    url = gateway.url + "/proxy/governance/record"
    auth = {"Authorization": f"Bearer {token}"}
    # The seed document's plugin sends no status and no decision id.
    seed = httpx.post(url, json={"action": "browse_website", "resource": "autogpt-output", "result": "ok"}, headers=auth)
    assert seed.status_code == 201
    [row] = audit(gateway, kind="record")
    assert row["action"] == "browse_website" and row["agent_name"] == "r1"
    refusals = [
        ({"action": "read:web", "decision_id": foreign}, 404),
        ({"action": "read:web", "decision_id": "dec_nope"}, 404),
        ({"resource": "x"}, 400),
        ({"action": "read:web", "duration_ms": "fast"}, 400),
        ({"action": "read:web", "duration_ms": -1}, 400),
        ({"action": "read:web", "status": 3}, 400),
    ]
    for body, status in refusals:
        resp = httpx.post(url, json=body, headers=auth)
        assert resp.status_code == status, (body, resp.text)
    assert httpx.post(url, json={"action": "read:web"}).status_code == 401
    assert len(audit(gateway, kind="record")) == 1  # nothing from the refusals


# ---- policies -------------------------------------------------------------------------------


def _policy_dir(tmp_path: Path, *texts: str) -> Path:
    folder = tmp_path / f"policies-{time.monotonic_ns()}"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"p{i}.yaml").write_text(text)
    return folder


def test_policies_list_show(gateway: LiveGateway) -> None:
    names = [p["name"] for p in gateway.admin("GET", "/admin/policies").json()["policies"]]
    assert sorted(names) == ["autogpt-policy", "autogpt-production"]
    one = gateway.admin("GET", "/admin/policies/autogpt-policy").json()
    assert one["defaultEffect"] == "deny" and one["appliesTo"] == {"tags": ["autogpt"]}
    assert "name: autogpt-policy" in one["yaml"] and one["rules"]
    missing = gateway.admin("GET", "/admin/policies/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


def test_policy_apply_writes_file_and_takes_effect(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("opsbot", tags=["ops"])
    assert gateway.check(token, "read:web").status_code == 403  # no policy applies yet
    resp = gateway.admin("POST", "/admin/policies", content=APPROVAL_POLICY,
                         headers={"Content-Type": "application/yaml"})  # fmt: skip
    assert resp.status_code == 201, resp.text
    assert resp.json()["name"] == "ops" and resp.json()["created"] is True
    assert (gateway.policies_dir / "ops.yaml").read_text() == APPROVAL_POLICY
    assert gateway.check(token, "read:web").status_code == 200
    # JSON form, replacing the same policy in its file
    changed = APPROVAL_POLICY.replace('"read:*", ', "")
    again = gateway.admin("POST", "/admin/policies", json={"yaml": changed})
    assert again.status_code == 201 and again.json()["created"] is False
    assert (gateway.policies_dir / "ops.yaml").read_text() == changed
    assert gateway.check(token, "read:web").status_code == 403
    deleted = gateway.admin("DELETE", "/admin/policies/ops")
    assert deleted.status_code == 200 and not (gateway.policies_dir / "ops.yaml").exists()
    assert gateway.admin("DELETE", "/admin/policies/ops").status_code == 404


def test_policy_apply_invalid_changes_nothing(gateway: LiveGateway) -> None:
    before = sorted(p.name for p in gateway.policies_dir.iterdir())
    bad = "name: broken\nrules:\n  - effect: block\n    actions: [\"read:*\"]\n    conditions: {sandbx: true}\n"
    resp = gateway.admin("POST", "/admin/policies", content=bad, headers={"Content-Type": "application/yaml"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["error"] == "invalid_policy" and len(body["errors"]) >= 2
    assert any("sandbx" in e for e in body["errors"]) and any("block" in e for e in body["errors"])
    assert sorted(p.name for p in gateway.policies_dir.iterdir()) == before
    assert len(gateway.admin("GET", "/admin/policies").json()["policies"]) == 2
    empty = gateway.admin("POST", "/admin/policies", content="", headers={"Content-Type": "application/yaml"})
    assert empty.status_code == 400
    not_yaml = gateway.admin("POST", "/admin/policies", content="{{{", headers={"Content-Type": "application/yaml"})
    assert not_yaml.status_code == 400 and not_yaml.json()["error"] == "invalid_policy"


def test_policy_test_counts_nothing_and_audits_nothing(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("tested")
    for _ in range(5):
        resp = gateway.admin("POST", "/admin/policies/test", json={"agent": "tested", "action": "read:web"})
        assert resp.status_code == 200
    body = resp.json()
    assert body["decision"] == "allow" and body["policy"] == "autogpt-policy" and body["details"]
    adhoc = gateway.admin("POST", "/admin/policies/test",
                          json={"agent": {"name": "x", "tags": ["autogpt"]}, "action": "execute:shell"})  # fmt: skip
    assert adhoc.json()["decision"] == "deny"
    only = gateway.admin("POST", "/admin/policies/test",
                         json={"agent": "tested", "action": "read:web", "policy": "nope"})  # fmt: skip
    assert only.status_code == 404
    assert audit(gateway, kind="check") == []
    assert [gateway.check(token, "read:web").status_code for _ in range(30)] == [200] * 30  # full budget left
    for only in (None, "autogpt-policy"):  # the test sees the live counters, also for one policy
        spent = gateway.admin("POST", "/admin/policies/test",
                              json={"agent": "tested", "action": "read:web", "policy": only})  # fmt: skip
        assert spent.json()["decision"] == "rate_limited", spent.json()
    assert gateway.admin("POST", "/admin/policies/test", json={"agent": "nobody", "action": "read:web"}).status_code == 404
    assert gateway.admin("POST", "/admin/policies/test", json={"agent": "tested"}).status_code == 400


def test_sighup_reloads_with_last_good_semantics(gateway: LiveGateway) -> None:
    _, token = gateway.create_agent("hupbot", tags=["ops"])
    (gateway.policies_dir / "ops.yaml").write_text(APPROVAL_POLICY)
    gateway.proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: gateway.check(token, "read:web").status_code == 200)
    (gateway.policies_dir / "broken.yaml").write_text("name: broken\nrules: 7\n")
    gateway.proc.send_signal(signal.SIGHUP)
    _wait_for(lambda: "policy reload failed" in gateway.log())
    assert "broken.yaml" in gateway.log()
    assert gateway.check(token, "read:web").status_code == 200  # the last good set is still in force
    assert len(gateway.admin("GET", "/admin/policies").json()["policies"]) == 3


def _wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


# ---- audit ----------------------------------------------------------------------------------


def test_audit_filters_cursor_and_stats(gateway: LiveGateway) -> None:
    _, a = gateway.create_agent("alpha")
    _, b = gateway.create_agent("beta")
    for _ in range(3):
        gateway.check(a, "read:web")
    gateway.check(a, "execute:shell")
    gateway.check(b, "send:email")
    httpx.post(gateway.url + "/proxy/governance/check", json={"action": "read:news"},
               headers={"Authorization": f"Bearer {b}", "X-Trace-ID": "tr-1"})  # fmt: skip

    checks = audit(gateway, kind="check")
    assert len(checks) == 6
    assert [e["id"] for e in checks] == sorted((e["id"] for e in checks), reverse=True)  # newest first
    assert {e["agent_name"] for e in audit(gateway, agent="alpha", kind="check")} == {"alpha"}
    assert len(audit(gateway, decision="deny")) == 2
    assert len(audit(gateway, action="read:*", kind="check")) == 4
    assert [e["action"] for e in audit(gateway, trace="tr-1")] == ["read:news"]
    assert audit(gateway, to="2000-01-01T00:00:00Z") == []
    assert len(audit(gateway, **{"from": "1h"}, kind="check")) == 6

    # follow with a cursor: pages in order, no gaps, no duplicates
    seen: list[int] = []
    cursor = 0
    while True:
        body = gateway.admin("GET", "/admin/audit", params={"after": cursor, "limit": 2}).json()
        if not body["entries"]:
            assert body["next_cursor"] == cursor
            break
        seen += [e["id"] for e in body["entries"]]
        cursor = body["next_cursor"]
    all_ids = sorted(e["id"] for e in audit(gateway, limit=1000))
    assert seen == all_ids

    stats = gateway.admin("GET", "/admin/audit/stats", params={"period": 1, "breakdown": "hourly"}).json()
    assert stats["total"] == 6 and stats["allowed"] == 4 and stats["denied"] == 2 and stats["period"] == "1h"
    assert {d["action"] for d in stats["top_denied"]} == {"execute:shell", "send:email"}
    assert sum(h["total"] for h in stats["hourly"]) == 6
    per_agent = gateway.admin("GET", "/admin/audit/stats", params={"agent": "beta"}).json()
    assert per_agent["total"] == 2
    assert gateway.admin("GET", "/admin/audit", params={"limit": 0}).status_code == 400
    assert gateway.admin("GET", "/admin/audit", params={"from": "yesterday-ish"}).status_code == 400
    assert gateway.admin("GET", "/admin/audit/stats", params={"breakdown": "daily"}).status_code == 400
    assert json.loads(json.dumps(stats))  # plain JSON


def test_framework_routes_answer_like_the_fast_path(tmp_path: Path) -> None:
    """In a running gateway `FastPath` serves the agent routes; the FastAPI routes behind it (which
    document them) must give the same answers, e.g. when the app is mounted elsewhere."""
    import asyncio

    from meshguard_gateway.app import FastPath, create_app
    from meshguard_gateway.config import Settings, prepare_state
    from meshguard_gateway.gateway import Gateway
    from meshguard_gateway.store import SQLiteStore
    from tests.conftest import ADMIN_TOKEN, POLICIES

    settings = prepare_state(Settings(state_dir=tmp_path / "s", policies_dir=POLICIES, jwt_secret=JWT_SECRET,
                                      admin_token=ADMIN_TOKEN, db_path=tmp_path / "m.db"))  # fmt: skip

    async def answers(asgi: object, token: str) -> list[tuple[int, str]]:
        out = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(asgi), base_url="http://gw") as c:  # type: ignore[arg-type]
            auth = {"Authorization": f"Bearer {token}"}
            for resp in [
                await c.post("/proxy/governance/check", json={"action": "read:web"}, headers=auth),
                await c.post("/proxy/governance/check", json={"action": "execute:shell"}, headers=auth),
                await c.post("/proxy/governance/check", content=b"{", headers=auth),
                await c.post("/proxy/governance/check", json={"action": "read:web"}),
                await c.get("/proxy/check", headers={**auth, "X-MeshGuard-Action": "send:email"}),
                await c.get("/proxy/governance/check", headers=auth),
                await c.post("/proxy/governance/record", json={"action": "read:web"}, headers=auth),
            ]:
                out.append((resp.status_code, resp.json().get("decision") or resp.json().get("error")))
        return out

    async def go() -> None:
        gw = Gateway(settings, SQLiteStore(settings.database))
        await gw.start()
        try:
            app = create_app(gw)
            _, token, _ = await gw.create_agent("inproc", "verified", ["autogpt"])
            plain = await answers(app, token)
            fast = await answers(FastPath(app), token)
            assert plain == fast == [
                (200, "allow"), (403, "deny"), (400, "invalid_request"), (401, "unauthorized"),
                (403, "deny"), (405, "method_not_allowed"), (201, None),
            ], (plain, fast)
        finally:
            await gw.close()

    asyncio.run(go())


def test_health_is_503_when_the_database_is_not_usable(tmp_path: Path) -> None:
    import asyncio

    from meshguard_gateway.app import create_app
    from meshguard_gateway.config import Settings, prepare_state
    from meshguard_gateway.gateway import Gateway
    from meshguard_gateway.store import SQLiteStore
    from tests.conftest import ADMIN_TOKEN, POLICIES

    settings = prepare_state(Settings(state_dir=tmp_path / "s", policies_dir=POLICIES, jwt_secret=JWT_SECRET,
                                      admin_token=ADMIN_TOKEN, db_path=tmp_path / "m.db"))  # fmt: skip

    async def go() -> None:
        gw = Gateway(settings, SQLiteStore(settings.database))
        await gw.start()
        _, token, _ = await gw.create_agent("orphan", "verified", ["autogpt"])
        app = create_app(gw)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://gw") as c:
            assert (await c.get("/health")).status_code == 200
            await gw.store.close()  # the database goes away under a running app
            health = await c.get("/health")
            assert health.status_code == 503 and health.json()["status"] == "unhealthy"
            assert "database" in health.json()["reason"]
            check = await c.post("/proxy/governance/check", json={"action": "read:web"},
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            assert check.status_code == 503 and check.json()["error"] == "store_unavailable"  # fail closed

    asyncio.run(go())


def test_reload_endpoint_with_last_good_semantics(gateway: LiveGateway) -> None:
    (gateway.policies_dir / "ops.yaml").write_text(APPROVAL_POLICY)
    ok = gateway.admin("POST", "/admin/policies/reload")
    assert ok.status_code == 200 and sorted(ok.json()["policies"]) == ["autogpt-policy", "autogpt-production", "ops"]
    (gateway.policies_dir / "ops.yaml").write_text(APPROVAL_POLICY.replace("effect: deny", "effect: maybe"))
    bad = gateway.admin("POST", "/admin/policies/reload")
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_policy"
    assert any("ops.yaml" in e and "maybe" in e for e in bad.json()["errors"])
    listed = gateway.admin("GET", "/admin/policies").json()
    names = [p["name"] for p in listed["policies"]]
    assert sorted(names) == ["autogpt-policy", "autogpt-production", "ops"]  # still the last good set
    assert any("maybe" in e for e in listed["last_reload_error"])
    health = httpx.get(gateway.url + "/health")
    assert health.status_code == 200 and any("maybe" in e for e in health.json()["last_reload_error"])
    (gateway.policies_dir / "ops.yaml").write_text(APPROVAL_POLICY)
    assert gateway.admin("POST", "/admin/policies/reload").status_code == 200
    assert "last_reload_error" not in httpx.get(gateway.url + "/health").json()


def test_revocation_while_the_body_is_still_arriving_refuses(gateway: LiveGateway) -> None:
    """The token is checked when the headers arrive; a revoke that commits before the body has
    arrived must still refuse the request (the decision uses the agent as it is then)."""
    import socket
    from urllib.parse import urlsplit

    agent_id, token = gateway.create_agent("slowpoke")
    body = b'{"action": "read:web"}'
    host, port = urlsplit(gateway.url).hostname, urlsplit(gateway.url).port
    with socket.create_connection((host, port), timeout=10) as sock:
        head = (f"POST /proxy/governance/check HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        sock.sendall(head.encode() + body[:5])
        time.sleep(0.3)  # the gateway has authenticated and waits for the rest of the body
        assert gateway.admin("DELETE", f"/admin/agents/{agent_id}").status_code == 200
        sock.sendall(body[5:])
        answer = sock.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 401"), answer[:200]
    assert "revoked" in answer
    assert [e for e in audit(gateway, kind="check")] == []  # nothing was decided for it
