"""Every admin change is an audit row saying who made it and what changed, through the real HTTP API
and the real `meshguard` CLI against a real gateway: policies (apply, a refused apply, delete,
reload by API and by SIGHUP, the load at start, a failed reload), agents (create, update, revoke,
token) and approvals (approve, deny, expire)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(240)

POLICY_V1 = """\
name: extra
rules:
  - effect: allow
    actions: ["read:*"]
"""
POLICY_V2 = POLICY_V1 + """\
  - effect: deny
    actions: ["execute:shell"]
"""


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def cli(gw: LiveGateway, home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_")}
    full = {**base, "PYTHONPATH": str(ROOT), "HOME": str(home), "MESHGUARD_URL": gw.url,
            "MESHGUARD_ADMIN_TOKEN": gw.admin_token, "USER": "login-user", **(env or {})}  # fmt: skip
    return subprocess.run([sys.executable, "-m", "meshguard_gateway", *args], cwd=home, env=full,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def admin_rows(gw: LiveGateway, **params: Any) -> list[dict[str, Any]]:
    resp = gw.admin("GET", "/admin/audit", params={"kind": "admin", "order": "asc", "limit": 1000, **params})
    assert resp.status_code == 200, resp.text
    rows: list[dict[str, Any]] = resp.json()["entries"]
    return rows


def last(gw: LiveGateway, decision: str) -> dict[str, Any]:
    rows = [r for r in admin_rows(gw) if r["decision"] == decision]
    assert rows, f"no admin row {decision!r}: {[r['decision'] for r in admin_rows(gw)]}"
    return rows[-1]


def test_policy_changes_name_who_and_which_text(gateway: LiveGateway, tmp_path: Path) -> None:
    gw = gateway
    # The load at start: which texts were in force from the first moment (the gateway itself did it).
    start = admin_rows(gw)[0]
    assert start["decision"] == "policies_loaded" and start["actor"] == "gateway"
    on_disk = {p.name: p.read_text() for p in gw.policies_dir.glob("*.yaml")}
    assert sorted(start["context"]["after"].values()) == sorted(sha(t) for t in on_disk.values())
    assert start["context"]["trigger"] == "start"

    # apply (new) through the CLI, as bob
    (tmp_path / "extra.yaml").write_text(POLICY_V1)
    r = cli(gw, tmp_path, "policy", "apply", str(tmp_path / "extra.yaml"), "--as", "bob")
    assert r.returncode == 0, r.stderr
    row = last(gw, "policy_applied")
    assert row["actor"] == "admin:bob" and row["resource"] == "extra"
    assert row["context"]["sha256_before"] is None and row["context"]["sha256_after"] == sha(POLICY_V1)
    assert row["context"]["created"] is True

    # apply (replace) through the CLI, the name from MESHGUARD_ACTOR
    (tmp_path / "extra.yaml").write_text(POLICY_V2)
    r = cli(gw, tmp_path, "policy", "apply", str(tmp_path / "extra.yaml"), env={"MESHGUARD_ACTOR": "carol"})
    assert r.returncode == 0, r.stderr
    row = last(gw, "policy_applied")
    assert row["actor"] == "admin:carol"
    assert (row["context"]["sha256_before"], row["context"]["sha256_after"]) == (sha(POLICY_V1), sha(POLICY_V2))

    # a refused apply over HTTP: 400, the set in force unchanged, and a row that says so
    bad = POLICY_V1.replace("effect: allow", "effect: allw")
    resp = gw.admin("POST", "/admin/policies", content=bad.encode(),
                    headers={"Content-Type": "application/yaml", "X-MeshGuard-Actor": "mallory"})  # fmt: skip
    assert resp.status_code == 400
    row = last(gw, "policy_apply_failed")
    assert row["actor"] == "admin:mallory" and row["resource"] == "extra"
    assert row["context"]["sha256_sent"] == sha(bad) and row["context"]["in_force"] == sha(POLICY_V2)
    assert "allw" in row["context"]["errors"][0]

    # delete through the CLI ($USER when neither --as nor MESHGUARD_ACTOR is given)
    r = cli(gw, tmp_path, "policy", "delete", "extra", "--yes")
    assert r.returncode == 0, r.stderr
    row = last(gw, "policy_deleted")
    assert row["actor"] == "admin:login-user"
    assert (row["context"]["sha256_before"], row["context"]["sha256_after"]) == (sha(POLICY_V2), None)

    # reload over HTTP without a name: the principal alone
    (gw.policies_dir / "late.yaml").write_text(POLICY_V1.replace("extra", "late"))
    assert gw.admin("POST", "/admin/policies/reload").status_code == 200
    row = last(gw, "policies_reloaded")
    assert row["actor"] == "admin" and row["context"]["trigger"] == "api"
    assert row["context"]["after"]["late"] == sha(POLICY_V1.replace("extra", "late"))
    assert "late" not in row["context"]["before"] and "added: late" in row["reason"]

    # a failed reload: 400, and the row lists the texts that stay in force
    (gw.policies_dir / "broken.yaml").write_text("name: broken\nrules: 3\n")
    resp = gw.admin("POST", "/admin/policies/reload", headers={"X-MeshGuard-Actor": "dave"})
    assert resp.status_code == 400
    row = last(gw, "policy_reload_failed")
    assert row["actor"] == "admin:dave" and "late" in row["context"]["in_force"]
    (gw.policies_dir / "broken.yaml").unlink()

    # SIGHUP: the gateway reloads on its own
    (gw.policies_dir / "late.yaml").write_text(POLICY_V2.replace("extra", "late"))
    gw.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not [r for r in admin_rows(gw) if r["context"] and r["context"].get("trigger") == "signal"]:
        time.sleep(0.2)
    row = last(gw, "policies_reloaded")
    assert row["actor"] == "gateway" and row["context"]["trigger"] == "signal"
    assert row["context"]["after"]["late"] == sha(POLICY_V2.replace("extra", "late")) and "changed: late" in row["reason"]


def test_agent_changes_name_who(gateway: LiveGateway, tmp_path: Path) -> None:
    gw = gateway
    assert cli(gw, tmp_path, "agent", "create", "bot", "--tags", "autogpt", "--as", "alice").returncode == 0
    assert cli(gw, tmp_path, "agent", "update", "bot", "--trust", "trusted", "--as", "bob").returncode == 0
    assert cli(gw, tmp_path, "agent", "token", "bot", "-o", str(tmp_path / "bot.token")).returncode == 0
    assert cli(gw, tmp_path, "agent", "revoke", "bot", env={"MESHGUARD_ACTOR": "carol"}).returncode == 0
    rows = [(r["decision"], r["actor"], r["resource"]) for r in admin_rows(gw) if r["action"] == "admin:agent"]
    assert rows == [
        ("agent_created", "admin:alice", "bot"),
        ("agent_updated", "admin:bob", "bot"),
        ("token_issued", "admin:login-user", "bot"),
        ("agent_revoked", "admin:carol", "bot"),
    ]
    updated = last(gw, "agent_updated")
    assert "verified -> trusted" in updated["reason"]


def test_an_actor_name_that_cannot_be_recorded_is_refused_and_changes_nothing(gateway: LiveGateway) -> None:
    before = len(admin_rows(gateway))
    resp = gateway.admin("POST", "/admin/agents", json={"name": "x"}, headers={"X-MeshGuard-Actor": "a\tb"})
    assert resp.status_code == 400 and "X-MeshGuard-Actor" in resp.json()["message"]
    assert gateway.admin("GET", "/admin/agents/x").status_code == 404
    assert len(admin_rows(gateway)) == before


APPROVAL_POLICY = """\
name: deploys
appliesTo:
  tags: [ops]
rules:
  - effect: allow
    actions: ["execute:deploy"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["execute:deploy"]
"""


def test_approval_decisions_name_who(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    folder = tmp_path / "pol"
    folder.mkdir()
    (folder / "deploys.yaml").write_text(APPROVAL_POLICY)
    # long enough for two CLI runs on a busy machine, short enough to watch the third one expire
    gw = start_gateway(folder, env={"APPROVAL_TTL_SECONDS": "10"})
    _, token = gw.create_agent("deployer", tags=["ops"])

    def ask(resource: str) -> str:
        resp = httpx.post(gw.url + "/proxy/governance/check", json={"action": "execute:deploy", "resource": resource},
                          headers={"Authorization": f"Bearer {token}"}, timeout=30)  # fmt: skip
        assert resp.status_code == 403, resp.text
        return str(resp.json()["approval_id"])

    a1, a2, a3 = ask("one"), ask("two"), ask("three")
    assert cli(gw, tmp_path, "approval", "approve", a1, "--as", "dave").returncode == 0  # --by defaults to --as
    resp = gw.admin("POST", f"/admin/approvals/{a2}/deny", json={"by": "erin", "reason": "no"})
    assert resp.status_code == 200
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and gw.admin("GET", f"/admin/approvals/{a3}").json()["status"] != "expired":
        time.sleep(0.3)
    rows: dict[str, dict[str, Any]] = {}
    for r in gw.admin("GET", "/admin/audit", params={"kind": "approval", "order": "asc", "limit": 100}).json()["entries"]:
        rows.setdefault(r["approval_id"], r)  # each approval's first transition
    assert (rows[a1]["decision"], rows[a1]["actor"]) == ("approval_approved", "admin:dave")
    assert gw.admin("GET", f"/admin/approvals/{a1}").json()["decided_by"] == "dave"
    assert (rows[a2]["decision"], rows[a2]["actor"]) == ("approval_denied", "admin:erin")
    assert (rows[a3]["decision"], rows[a3]["actor"]) == ("approval_expired", "gateway")
