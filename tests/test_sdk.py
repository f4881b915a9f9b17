"""MeshGuard's official Python SDK (meshguard==0.1.2), unchanged, as a client of our gateway."""

from __future__ import annotations

import pytest
from meshguard import AuthenticationError, MeshGuardClient, PolicyDeniedError, RateLimitError

from tests.conftest import LiveGateway


@pytest.fixture
def admin(gateway: LiveGateway) -> MeshGuardClient:
    return MeshGuardClient(gateway_url=gateway.url, admin_token=gateway.admin_token, timeout=10)


def agent_client(gateway: LiveGateway, admin: MeshGuardClient, name: str) -> MeshGuardClient:
    created = admin.create_agent(name, trust_tier="verified", tags=["autogpt"])
    assert created["name"] == name and created["id"].startswith("agent_") and created["token"]
    return MeshGuardClient(gateway_url=gateway.url, agent_token=created["token"], timeout=10, trace_id=f"sdk-{name}")


def test_sdk_check_enforce_govern(gateway: LiveGateway, admin: MeshGuardClient) -> None:
    client = agent_client(gateway, admin, "sdk-bot")
    assert client.is_healthy()

    ok = client.check("read:contacts")
    assert ok.allowed is True and ok.decision == "allow" and ok.policy == "autogpt-policy"

    no = client.check("execute:shell", resource="ls")
    assert no.allowed is False and no.decision == "deny" and no.policy == "autogpt-policy"
    assert no.rule and "denied" in (no.reason or "")

    assert client.enforce("browse:web").allowed
    with pytest.raises(PolicyDeniedError) as info:
        client.enforce("send:email")
    assert info.value.action == "send:email" and info.value.policy == "autogpt-policy" and info.value.rule
    assert "denied" in info.value.reason

    ran = []
    with client.govern("search:web") as decision:
        ran.append(decision.allowed)
    assert ran == [True]
    with pytest.raises(PolicyDeniedError):
        with client.govern("pay:invoice"):
            ran.append("must not run")
    assert ran == [True]

    entries = admin.get_audit_log(limit=50)
    assert [e["action"] for e in entries if e["kind"] == "check"][:3] == ["pay:invoice", "search:web", "send:email"]
    assert all(e["trace_id"] == "sdk-sdk-bot" for e in entries if e["kind"] == "check")
    denied = admin.get_audit_log(limit=10, decision="deny")
    assert {e["action"] for e in denied} == {"execute:shell", "send:email", "pay:invoice"}


def test_sdk_rate_limit_and_revocation(gateway: LiveGateway, admin: MeshGuardClient) -> None:
    client = agent_client(gateway, admin, "sdk-looper")
    for _ in range(30):
        assert client.check("read:web").allowed
    with pytest.raises(RateLimitError):
        client.check("read:web")

    agents = admin.list_agents()
    [me] = [a for a in agents if a.name == "sdk-looper"]
    assert me.trust_tier == "verified" and me.tags == ["autogpt"]
    admin.revoke_agent(me.id)
    with pytest.raises(AuthenticationError):
        client.check("read:web")
    with pytest.raises(AuthenticationError):
        MeshGuardClient(gateway_url=gateway.url, admin_token="wrong").list_agents()


def test_sdk_list_policies(gateway: LiveGateway, admin: MeshGuardClient) -> None:
    policies = admin.list_policies()
    assert sorted(p["name"] for p in policies) == ["autogpt-policy", "autogpt-production"]
    assert all("rules" in p and "appliesTo" in p for p in policies)
