"""`meshguard approval list|approve|deny` against a real gateway: who decided and why is
recorded, the agent's waiting request is released (once) or refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)

Run = Callable[..., subprocess.CompletedProcess[str]]

HITL_POLICY = textwrap.dedent(
    """\
    name: hitl
    appliesTo:
      tags: [autogpt]
    rules:
      - effect: allow
        actions: ["read:*", "send:email"]
    humanInTheLoop:
      requireApproval: ["send:email"]
    defaultEffect: deny
    """
)


@pytest.fixture
def hitl_gateway(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> LiveGateway:
    (tmp_path / "hitl.yaml").write_text(HITL_POLICY)
    return start_gateway(tmp_path / "hitl.yaml")


@pytest.fixture
def cli(hitl_gateway: LiveGateway, tmp_path: Path) -> Run:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    env = {**base, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path), "USER": "carol",
           "MESHGUARD_URL": hitl_gateway.url, "MESHGUARD_ADMIN_TOKEN": hitl_gateway.admin_token}  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "meshguard_gateway", *args],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    return run


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def ask(gw: LiveGateway, token: str, recipient: str, approval_id: str | None = None) -> httpx.Response:
    extra: dict[str, Any] = {"approval_id": approval_id} if approval_id else {}
    return gw.check(token, "send:email", recipient, **extra)


def agent_view(gw: LiveGateway, token: str, approval_id: str) -> dict[str, Any]:
    resp = httpx.get(f"{gw.url}/proxy/approvals/{approval_id}", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_approval_list_and_approve_releases_the_request_once(cli: Run, hitl_gateway: LiveGateway) -> None:
    gw = hitl_gateway
    _, token = gw.create_agent("mailer", ["autogpt"])
    refused = ask(gw, token, "boss@example.com")
    assert refused.status_code == 403 and refused.json()["decision"] == "approval_required"
    approval_id = refused.json()["approval_id"]

    r = cli("approval", "list")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith(approval_id))
    assert "mailer" in row and "send:email" in row and "boss@example.com" in row and "pending" in row
    assert [a["id"] for a in json.loads(cli("approval", "list", "--json").stdout)["approvals"]] == [approval_id]

    r = cli("approval", "approve", approval_id, "--reason", "quarterly report, checked")
    assert r.returncode == 0, r.stderr
    assert f"Approved {approval_id}" in r.stdout and "by carol" in r.stdout  # $USER
    seen = agent_view(gw, token, approval_id)
    assert (seen["status"], seen["decided_by"], seen["decision_reason"]) == (
        "approved", "carol", "quarterly report, checked",
    )  # fmt: skip

    assert ask(gw, token, "boss@example.com", approval_id).status_code == 200  # released, once
    assert ask(gw, token, "boss@example.com", approval_id).status_code == 403

    r = cli("approval", "list")
    assert approval_id not in r.stdout  # no longer pending
    r = cli("approval", "list", "--status", "all", "--json")
    assert {a["id"] for a in json.loads(r.stdout)["approvals"]} == {approval_id}

    r = cli("approval", "approve", approval_id)
    assert r.returncode == 1
    assert f"approval {approval_id} cannot be approved" in one_line_error(r)


def test_approval_deny_records_who_and_why(cli: Run, hitl_gateway: LiveGateway) -> None:
    gw = hitl_gateway
    _, token = gw.create_agent("mailer", ["autogpt"])
    approval_id = ask(gw, token, "everyone@example.com").json()["approval_id"]
    r = cli("approval", "deny", approval_id, "--reason", "mass mail", "--by", "alice", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "denied"
    seen = agent_view(gw, token, approval_id)
    assert (seen["status"], seen["decided_by"], seen["decision_reason"]) == ("denied", "alice", "mass mail")
    assert ask(gw, token, "everyone@example.com", approval_id).status_code == 403

    trail = gw.admin("GET", "/admin/audit", params={"limit": 100}).json()["entries"]
    assert any(e["kind"] == "approval" and e["approval_id"] == approval_id and "alice" in (e["reason"] or "")
               for e in trail), trail  # fmt: skip


def test_approval_unknown_id_exits_1(cli: Run) -> None:
    r = cli("approval", "approve", "apr_nope", "--reason", "x")
    assert r.returncode == 1
    assert "no approval with id 'apr_nope'" in one_line_error(r)
    r = cli("approval", "list")
    assert r.returncode == 0 and r.stdout == ""
