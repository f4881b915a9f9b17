"""`meshguard check`: a real, audited check as an agent from a shell script. Exit 0 allowed,
4 refused (MeshGuard's "policy denied"), 3 bad or revoked token, 5 no gateway."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def check(gateway: LiveGateway, home: Path, *args: str, token: str | None = None,
          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    full = {**base, "PYTHONPATH": str(ROOT), "HOME": str(home), "MESHGUARD_URL": gateway.url, **(env or {})}
    if token is not None:
        full["MESHGUARD_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", "check", *args],
        cwd=home, env=full, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_check_allows_and_refuses_with_exit_0_and_4(gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("scripted", ["autogpt"])
    r = check(gateway, tmp_path, "browse:web", "https://python.org", token=token)
    assert r.returncode == 0, r.stderr
    assert "Decision:    ALLOW" in r.stdout

    r = check(gateway, tmp_path, "execute:shell", "rm -rf /", "--json", "--trace-id", "script-1", token=token)
    assert r.returncode == 4
    body = json.loads(r.stdout)
    assert (body["decision"], body["policy"]) == ("deny", "autogpt-policy")
    trail = gateway.admin("GET", "/admin/audit", params={"trace": "script-1"}).json()["entries"]
    assert [(e["action"], e["decision"], e["decision_id"]) for e in trail] == [
        ("execute:shell", "deny", body["decision_id"])
    ]  # a real check: audited


def test_check_rate_limited_is_refused_with_4(gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = gateway.create_agent("hasty", ["autogpt"])
    for _ in range(30):  # autogpt-policy: 30 requests per minute
        assert gateway.check(token, "read:web").status_code == 200
    r = check(gateway, tmp_path, "read:web", token=token)
    assert r.returncode == 4
    assert "RATE_LIMITED" in r.stdout and "30 requests per minute" in r.stdout


def test_check_bad_missing_or_revoked_token_exits_3(gateway: LiveGateway, tmp_path: Path) -> None:
    agent_id, token = gateway.create_agent("doomed", ["autogpt"])
    r = check(gateway, tmp_path, "read:web")
    assert r.returncode == 3 and "no agent token" in r.stderr
    r = check(gateway, tmp_path, "read:web", token="not-a-token")
    assert r.returncode == 3 and "refused the agent token" in r.stderr
    gateway.admin("DELETE", f"/admin/agents/{agent_id}")
    r = check(gateway, tmp_path, "read:web", token=token)
    assert r.returncode == 3
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1


def test_check_bad_action_exits_2_and_no_gateway_exits_5(gateway: LiveGateway, tmp_path: Path) -> None:
    r = check(gateway, tmp_path, "shell", token="x")
    assert r.returncode == 2 and "not verb:object" in r.stderr
    r = check(gateway, tmp_path, "read:web", token="x", env={"MESHGUARD_URL": "http://127.0.0.1:9"})
    assert r.returncode == 5 and "http://127.0.0.1:9" in r.stderr
