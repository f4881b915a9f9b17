"""The seed document's human-in-the-loop snippet ("Security Considerations") against a real gateway.

The snippet reads ``requires_approval`` and ``approval_id`` from ``gateway.check_permission(...)``
inside a ``@governed("send:email", "recipient")`` function. Outside a governed call it learns that a
human must approve; inside a governed call whose approval a human granted (through the real
`meshguard` CLI here), asking again must neither open a second approval nor leave one pending.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import meshguard_autogpt as mg
from tests.conftest import LiveGateway

# The seed's "Recommended Policy Settings", except that send:email needs a human instead of being
# denied: there a deny of send:* always wins over humanInTheLoop (deny > approval required).
PRODUCTION_STYLE_POLICY = """\
name: autogpt-production
version: "1.0"
appliesTo:
  tags: [autogpt, production]
rules:
  - effect: allow
    actions: ["browse:web", "search:web"]
  - effect: deny
    actions: ["execute:shell", "delete:*", "pay:*", "admin:*"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["send:email", "post:social", "pay:*"]
"""

# Verbatim from the seed document; `governed` and `gateway` are the launcher's.
SEED_SNIPPET = '''
class HumanApprovalRequired(Exception):
    pass

@governed("send:email", "recipient")
def send_email(recipient: str, subject: str, body: str):
    # Check if human approval is needed
    decision = gateway.check_permission("send:email", recipient)
    
    if decision.get("requires_approval"):
        raise HumanApprovalRequired(
            f"Email to {recipient} requires human approval. "
            f"Approval ID: {decision.get('approval_id')}"
        )
    
    # Proceed with sending
    ...
'''


@pytest.fixture
def approvals_gateway(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> LiveGateway:
    policy = tmp_path / "autogpt-production.yaml"
    policy.write_text(PRODUCTION_STYLE_POLICY)
    return start_gateway(policy)


@pytest.fixture
def agent_gateway(approvals_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch) -> mg.MeshGuardGateway:
    """The launcher's module-level `gateway`, acting as a production AutoGPT agent."""
    _, token = approvals_gateway.create_agent("autogpt-prod", tags=["autogpt", "production"])
    gw = mg.MeshGuardGateway(approvals_gateway.url, token, approval_timeout=60, verbose=False)
    monkeypatch.setattr(mg, "gateway", gw, raising=False)
    return gw


def seed_snippet(gw: mg.MeshGuardGateway) -> dict[str, Any]:
    namespace: dict[str, Any] = {"governed": mg.governed, "gateway": gw}
    exec(SEED_SNIPPET, namespace)
    return namespace


def approvals(gw: LiveGateway) -> list[dict[str, Any]]:
    resp = gw.admin("GET", "/admin/approvals")  # every status
    assert resp.status_code == 200, resp.text
    return list(resp.json()["approvals"])


def approve_with_cli(gw: LiveGateway, deadline: float = 60) -> str:
    """Wait for the agent's pending approval, then approve it as a person would: `meshguard approval approve`."""
    end = time.monotonic() + deadline
    while True:
        pending = [a for a in approvals(gw) if a["status"] == "pending"]
        if pending:
            break
        assert time.monotonic() < end, "the agent never asked for an approval"
        time.sleep(0.05)
    approval_id = str(pending[0]["id"])
    env = {**gw.env, "MESHGUARD_URL": gw.url, "MESHGUARD_ADMIN_TOKEN": gw.admin_token}
    done = subprocess.run([sys.executable, "-m", "meshguard_gateway", "approval", "approve", approval_id,
                           "--by", "alice", "--reason", "newsletter"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return approval_id


def test_seed_snippet_outside_a_governed_call_learns_a_human_must_approve(agent_gateway: mg.MeshGuardGateway,
                                                                         approvals_gateway: LiveGateway) -> None:  # fmt: skip
    decision = agent_gateway.check_permission("send:email", "bob@example.com")

    assert decision["allowed"] is False and decision["requires_approval"] is True
    assert decision["approval_id"] == approvals(approvals_gateway)[0]["id"]
    allowed = agent_gateway.check_permission("browse:web", "https://example.com")
    assert allowed["allowed"] is True and allowed["requires_approval"] is False
    denied = agent_gateway.check_permission("execute:shell", "ls")
    assert denied["allowed"] is False and denied["requires_approval"] is False


def test_seed_snippet_approved_call_uses_one_approval(agent_gateway: mg.MeshGuardGateway,
                                                     approvals_gateway: LiveGateway) -> None:  # fmt: skip
    send_email = seed_snippet(agent_gateway)["send_email"]
    outcome: dict[str, Any] = {}

    def agent() -> None:
        try:
            outcome["result"] = send_email("bob@example.com", "Hello", "Our newsletter")
        except Exception as exc:  # HumanApprovalRequired: the bug this test is about
            outcome["error"] = exc

    worker = threading.Thread(target=agent)
    worker.start()
    approval_id = approve_with_cli(approvals_gateway)
    worker.join(90)

    assert not worker.is_alive()
    assert "error" not in outcome, outcome
    assert outcome["result"] is None  # the snippet's body ran to its end (`...`), not the blocked dict
    rows = approvals(approvals_gateway)
    assert [(a["id"], a["status"]) for a in rows] == [(approval_id, "used")]  # one approval, none left pending
    audit = approvals_gateway.admin("GET", "/admin/audit",
                                    params={"trace": agent_gateway.trace_id, "kind": "check", "order": "asc"}).json()  # fmt: skip
    assert [(e["action"], e["decision"]) for e in audit["entries"]] == [
        ("send:email", "approval_required"),
        ("send:email", "allow"),
    ]


def test_seed_check_inside_an_approved_call_carries_its_approval(agent_gateway: mg.MeshGuardGateway,
                                                                approvals_gateway: LiveGateway) -> None:  # fmt: skip
    """What the snippet's body sees: allowed, no approval required, the granted approval's id; a
    different request asked from inside still goes to the gateway."""
    seen: dict[str, Any] = {}

    @mg.governed("send:email", "recipient")
    def send_email(recipient: str) -> str:
        seen["same"] = agent_gateway.check_permission("send:email", recipient)
        seen["other"] = agent_gateway.check_permission("send:email", "eve@example.com")
        return "sent"

    worker = threading.Thread(target=lambda: seen.setdefault("result", send_email("bob@example.com")))
    worker.start()
    approval_id = approve_with_cli(approvals_gateway)
    worker.join(90)

    assert seen["result"] == "sent"
    assert seen["same"]["allowed"] is True and seen["same"]["requires_approval"] is False
    assert seen["same"]["approval_id"] == approval_id
    assert seen["other"]["requires_approval"] is True and seen["other"]["approval_id"] != approval_id
    statuses = sorted(a["status"] for a in approvals(approvals_gateway))
    assert statuses == ["pending", "used"]  # eve's was really asked; bob's was used once


def test_a_different_governed_call_inside_an_allowed_one_is_checked_on_its_own(
        agent_gateway: mg.MeshGuardGateway, approvals_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the very command already checked is not checked again. A user's own @governed function
    called from inside another allowed command is its own decision (here denied), so nesting can
    never skip a deny or an approval."""
    monkeypatch.setattr(mg, "_default_gateway", lambda: agent_gateway)
    ran: list[str] = []

    @mg.governed("execute:shell", "command")
    def shell(command: str) -> str:
        ran.append(command)
        return "ran"

    @mg.governed("browse:web", "url")
    def browse(url: str) -> Any:
        ran.append(url)
        return browse_again(url), shell("rm -rf /tmp/x")

    @mg.governed("browse:web", "url")
    def browse_again(url: str) -> str:  # the same action and resource: part of the call already checked
        return "same"

    same, refused = browse("https://example.com")
    assert same == "same" and isinstance(refused, dict) and refused["status"] == "blocked"
    assert ran == ["https://example.com"]  # the shell body never ran
    audit = approvals_gateway.admin("GET", "/admin/audit", params={"agent": "autogpt-prod", "kind": "check"}).json()
    checks = sorted((e["action"], e["decision"]) for e in audit["entries"])
    assert checks == [("browse:web", "allow"), ("execute:shell", "deny")]
