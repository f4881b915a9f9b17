"""The launcher's client and `governed` against a real gateway process (tests/conftest.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import meshguard_autogpt
from meshguard_autogpt import AgentRevokedError, MeshGuardGateway, governed
from tests.conftest import LiveGateway

POLICY = """\
name: custom-tools
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["report:*", "browse:web"]
  - effect: deny
    actions: ["send:email"]
    reason: no email from agents
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["pay:*"]
"""

RATE_LIMITED = """\
name: slow
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["browse:web"]
defaultEffect: deny
rateLimits:
  requestsPerMinute: 2
"""


@pytest.fixture
def custom_gateway(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> LiveGateway:
    path = tmp_path / "custom.yaml"
    path.write_text(POLICY)
    return start_gateway(path)


def make_client(gw: LiveGateway, **kwargs: object) -> MeshGuardGateway:
    _, token = gw.create_agent("tools-agent", tags=["autogpt"])
    kwargs.setdefault("timeout", 15.0)  # a loaded machine must not turn an allow into a refusal
    return MeshGuardGateway(gw.url, token, trace_id="trace-governed", verbose=False, **kwargs)  # type: ignore[arg-type]


def audit(gw: LiveGateway) -> list[dict]:
    resp = gw.admin("GET", "/admin/audit", params={"trace": "trace-governed", "order": "asc"})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


def test_governed_allowed_runs_and_is_recorded(custom_gateway: LiveGateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(meshguard_autogpt, "gateway", make_client(custom_gateway), raising=False)
    written: list[str] = []

    @governed("report:weekly", resource_key="title")
    def write_report(title: str, body: str) -> str:
        written.append(title)
        return f"report {title} saved"

    assert write_report(title="week 47", body="...") == "report week 47 saved"
    assert written == ["week 47"]
    entries = audit(custom_gateway)
    assert [(e["action"], e["resource"], e["decision"]) for e in entries] == [("report:weekly", "week 47", "allow")]
    assert entries[0]["outcome"]["status"] == "success"
    assert entries[0]["outcome"]["result"] == "report week 47 saved"


def test_governed_denied_never_runs_and_returns_the_blocked_result(custom_gateway: LiveGateway,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setattr(meshguard_autogpt, "gateway", make_client(custom_gateway), raising=False)
    sent: list[str] = []

    @governed("send:email", resource_key="to")
    def send_email(to: str, subject: str, body: str) -> str:
        sent.append(to)
        return "sent"

    result = send_email("boss@example.com", "hi", "...")
    assert sent == []
    assert result["status"] == "blocked" and result["action"] == "send:email"
    assert "no email from agents" in result["reason"]
    assert [(e["action"], e["decision"]) for e in audit(custom_gateway)] == [("send:email", "deny")]


def test_client_seed_answers(custom_gateway: LiveGateway) -> None:
    """The seed document's checks: allowed, and denied with a reason."""
    gw = make_client(custom_gateway)
    assert gw.check_permission("browse:web", "https://example.com")["allowed"] is True
    denied = gw.check_permission("send:email", "x@example.com")
    assert denied["allowed"] is False and denied["decision"] == "deny"
    assert denied["decision_id"] and denied["policy"] == "custom-tools"


def test_client_waits_for_a_human_approval(custom_gateway: LiveGateway) -> None:
    gw = make_client(custom_gateway, approval_timeout=60)
    results: list[dict] = []
    worker = threading.Thread(target=lambda: results.append(gw.decide("pay:invoice", "inv-42")))
    worker.start()
    approval_id = None
    deadline = time.monotonic() + 30
    while approval_id is None and time.monotonic() < deadline:
        pending = custom_gateway.admin("GET", "/admin/approvals", params={"status": "pending"}).json()["approvals"]
        approval_id = pending[0]["id"] if pending else None
        time.sleep(0.05)
    assert approval_id, "no pending approval appeared"
    resp = custom_gateway.admin("POST", f"/admin/approvals/{approval_id}/approve", json={"by": "test"})
    assert resp.status_code == 200, resp.text
    worker.join(60)
    assert results and results[0]["allowed"] is True


def test_client_approval_timeout_refuses(custom_gateway: LiveGateway) -> None:
    gw = make_client(custom_gateway, approval_timeout=1)
    result = gw.decide("pay:invoice", "inv-43")
    assert result["allowed"] is False and result["decision"] == "approval_required"
    assert "timed out" in result["reason"]


def test_client_rate_limited_deny_mode(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    path = tmp_path / "slow.yaml"
    path.write_text(RATE_LIMITED)
    gw = make_client(start_gateway(path), on_rate_limit="deny")
    assert gw.decide("browse:web", "a")["allowed"] and gw.decide("browse:web", "b")["allowed"]
    third = gw.decide("browse:web", "c")
    assert third["allowed"] is False and third["decision"] == "rate_limited"
    assert isinstance(third["retry_after"], (int, float)) and third["retry_after"] > 0


def test_client_revoked_agent_raises_and_stops(custom_gateway: LiveGateway) -> None:
    gw = make_client(custom_gateway)
    assert gw.decide("browse:web", "x")["allowed"]
    assert custom_gateway.admin("DELETE", "/admin/agents/tools-agent").status_code == 200
    with pytest.raises(AgentRevokedError):
        gw.decide("browse:web", "y")
    ran: list[int] = []
    with pytest.raises(AgentRevokedError):
        gw.execute("browse:web", "z", lambda: ran.append(1))
    assert ran == []


def test_main_refuses_to_start_with_a_revoked_token(custom_gateway: LiveGateway, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Exit 3 before AutoGPT is even looked for (this environment has no AutoGPT: a later failure would be 1)."""
    _, token = custom_gateway.create_agent("gone-agent", tags=["autogpt"])
    assert custom_gateway.admin("DELETE", "/admin/agents/gone-agent").status_code == 200
    before = custom_gateway.admin("GET", "/admin/audit").json()["entries"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHGUARD_TOKEN", token)
    monkeypatch.setenv("MESHGUARD_URL", custom_gateway.url)
    assert meshguard_autogpt.main([]) == meshguard_autogpt.EXIT_REVOKED
    err = capsys.readouterr().err
    assert "rejects this agent's token" in err and "not started" in err and token not in err
    assert custom_gateway.admin("GET", "/admin/audit").json()["entries"] == before  # the preflight audits nothing


def test_client_rate_limited_wait_mode_uses_the_gateways_retry_after(start_gateway: Callable[..., LiveGateway],
                                                                     tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "slow.yaml"
    path.write_text(RATE_LIMITED)
    pauses: list[float] = []
    gw = make_client(start_gateway(path), sleep=pauses.append, rate_limit_max_wait=150)
    assert gw.decide("browse:web", "a")["allowed"] and gw.decide("browse:web", "b")["allowed"]
    third = gw.decide("browse:web", "c")  # no real time passes: the gateway keeps saying 429
    assert third["allowed"] is False and "MESHGUARD_RATE_LIMIT_MAX_WAIT" in third["reason"]
    assert pauses and all(1 <= p <= 60 for p in pauses) and sum(pauses) <= 150


def test_governed_checks_the_default_value_of_the_resource_argument(start_gateway: Callable[..., LiveGateway],
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A resource argument left at its default is checked with that default, never as "*" (review H1)."""
    path = tmp_path / "files.yaml"
    path.write_text('name: files\nappliesTo:\n  tags: [autogpt]\ndefaultEffect: deny\nrules:\n'
                    '  - effect: allow\n    actions: ["read:file/*"]\n'
                    '  - effect: deny\n    actions: ["read:file/secrets/*"]\n')  # fmt: skip
    gw = start_gateway(path)
    monkeypatch.setattr(meshguard_autogpt, "gateway", make_client(gw), raising=False)
    opened: list[str] = []

    @governed("read:file", resource_key="filename")
    def read(mode: str = "r", filename: str = "secrets/key.pem") -> str:
        opened.append(filename)
        return "key material"

    result = read("r")
    assert opened == [], result
    assert result["status"] == "blocked"
    assert read(filename="notes.txt") == "key material" and opened == ["notes.txt"]
    assert [(e["action"], e["resource"], e["decision"]) for e in audit(gw)] == [
        ("read:file", "secrets/key.pem", "deny"), ("read:file", "notes.txt", "allow")]


def test_governed_without_the_resource_argument_refuses_without_asking(custom_gateway: LiveGateway,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A resource_key the function does not have cannot be checked: refused, never sent as "*"."""
    monkeypatch.setattr(meshguard_autogpt, "gateway", make_client(custom_gateway), raising=False)
    ran: list[str] = []

    @governed("report:weekly", resource_key="titel")  # typo: the function's argument is `title`
    def write_report(title: str) -> str:
        ran.append(title)
        return "saved"

    result = write_report("week 47")
    assert ran == [] and result["status"] == "blocked"
    assert "no argument 'titel'" in result["reason"]
    assert audit(custom_gateway) == []


def test_a_refused_request_says_what_the_gateway_said(custom_gateway: LiveGateway) -> None:
    """A 400 names its cause in the refusal, so the agent (and the user) can tell what to fix (review L1)."""
    gw = make_client(custom_gateway)
    refused = gw.check_permission("report:weekly", "x" * 5000)  # e.g. a very long shell command line
    assert refused["allowed"] is False and refused["status_code"] == 400
    assert "answered HTTP 400: " in refused["reason"] and "4096" in refused["reason"], refused["reason"]
    assert "refused (fail closed)" in refused["reason"]
