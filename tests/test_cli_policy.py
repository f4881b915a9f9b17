"""`meshguard policy ...` against a real gateway: list, show, apply, delete, allowed, and
`policy test` single and batch (exit 0 pass/allow, 1 fail/deny, 2 cannot run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import LiveGateway

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)

Run = Callable[..., subprocess.CompletedProcess[str]]

TESTER_POLICY = textwrap.dedent(
    """\
    name: tester-policy
    version: "2.0"
    appliesTo:
      tags: [tester]
    rules:
      - id: reads
        effect: allow
        actions: ["read:*"]
      - effect: deny
        actions: ["delete:*"]
        reason: Deletion not allowed
    humanInTheLoop:
      requireApproval: ["send:email"]
    defaultEffect: deny
    """
)


@pytest.fixture
def cli(gateway: LiveGateway, tmp_path: Path) -> Run:
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    env = {**base, "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
           "MESHGUARD_URL": gateway.url, "MESHGUARD_ADMIN_TOKEN": gateway.admin_token}  # fmt: skip

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


def policy_names(gateway: LiveGateway) -> list[str]:
    return sorted(p["name"] for p in gateway.admin("GET", "/admin/policies").json()["policies"])


def test_policy_list_and_show(cli: Run) -> None:
    r = cli("policy", "list")
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("autogpt-policy "))
    assert "tags=autogpt" in row and "deny" in row
    assert "autogpt-policy" in [p["name"] for p in json.loads(cli("policy", "list", "--json").stdout)["policies"]]

    r = cli("policy", "show", "autogpt-policy")
    assert r.returncode == 0, r.stderr
    assert "name: autogpt-policy" in r.stdout and 'execute:shell' in r.stdout  # the YAML source
    assert json.loads(cli("policy", "show", "autogpt-policy", "--json").stdout)["defaultEffect"] == "deny"

    r = cli("policy", "show", "nope")
    assert r.returncode == 1
    assert "no policy named 'nope'" in one_line_error(r)


def test_policy_apply_then_test_then_delete(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    f = tmp_path / "tester.yaml"
    f.write_text(TESTER_POLICY)
    r = cli("policy", "apply", str(f))
    assert r.returncode == 0, r.stderr
    assert "Applied policy tester-policy" in r.stdout and "new)" in r.stdout
    assert "tester-policy" in policy_names(gateway)
    r = cli("policy", "apply", str(f))
    assert r.returncode == 0 and "replacing the one in force" in r.stdout
    assert policy_names(gateway).count("tester-policy") == 1

    _, token = gateway.create_agent("tester-bot", ["tester"])
    assert gateway.check(token, "read:files").status_code == 200
    r = cli("policy", "test", "tester-bot", "delete:files")
    assert r.returncode == 1
    assert "Decision: DENY" in r.stdout and "Deletion not allowed" in r.stdout
    r = cli("policy", "test", "tester-bot", "send:email", "--json")
    assert r.returncode == 1
    assert json.loads(r.stdout)["decision"] == "approval_required"

    r = cli("policy", "delete", "tester-policy", "--yes")
    assert r.returncode == 0, r.stderr
    assert "tester-policy" not in policy_names(gateway)
    assert gateway.check(token, "read:files").status_code == 403  # no policy applies any more
    r = cli("policy", "delete", "tester-policy", "--yes")
    assert r.returncode == 1
    assert "no policy named 'tester-policy'" in one_line_error(r)


def test_policy_apply_an_invalid_directory_applies_nothing(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    d = tmp_path / "pols"
    d.mkdir()
    (d / "a-good.yaml").write_text(TESTER_POLICY)
    (d / "b-bad.yaml").write_text("name: bad\nrules:\n  - effect: allow\n    actions: ['read:*']\n    conditions: {sandbx: true}\n")
    before = policy_names(gateway)
    r = cli("policy", "apply", str(d))
    assert r.returncode == 1
    assert "b-bad.yaml:5" in r.stdout and "sandbx" in r.stdout
    assert "nothing was applied" in one_line_error(r)
    assert policy_names(gateway) == before


def test_policy_validate_needs_no_gateway_but_works_beside_one(cli: Run) -> None:
    r = cli("policy", "validate", str(ROOT / "policies" / "autogpt.yaml"))
    assert r.returncode == 0 and "1 policy valid." in r.stdout


def test_policy_allowed_lists_patterns(cli: Run, gateway: LiveGateway) -> None:
    gateway.create_agent("autogpt-agent", ["autogpt"])
    r = cli("policy", "allowed", "autogpt-agent")
    assert r.returncode == 0, r.stderr
    assert "Policy autogpt-policy" in r.stdout
    allowed = next(line for line in r.stdout.splitlines() if "allowed:" in line)
    denied = next(line for line in r.stdout.splitlines() if "denied:" in line)
    assert "browse:*" in allowed and "execute:shell" in denied
    assert "30 requests per minute" in r.stdout
    r = cli("policy", "allowed", "ghost")
    assert r.returncode == 1
    assert "ghost" in one_line_error(r)


def test_policy_test_single(cli: Run, gateway: LiveGateway) -> None:
    agent_id, _ = gateway.create_agent("autogpt-agent", ["autogpt"])
    r = cli("policy", "test", "autogpt-agent", "browse:web")
    assert r.returncode == 0, r.stderr
    assert "Decision: ALLOW" in r.stdout and "Policy:   autogpt-policy" in r.stdout

    r = cli("policy", "test", "--agent", agent_id, "--action", "execute:shell", "--resource", "rm -rf /", "--verbose")
    assert r.returncode == 1
    assert "Decision: DENY" in r.stdout
    assert "deny rule #4 (execute:shell) matched on pattern execute:shell" in r.stdout

    r = cli("policy", "test", "autogpt-agent", "write:workspace", "notes.txt", "--json")
    body = json.loads(r.stdout)
    assert (r.returncode, body["decision"], body["allowed"], body["resource"]) == (0, "allow", True, "notes.txt")

    # --policy: what that one policy says
    r = cli("policy", "test", "autogpt-agent", "read:web", "--policy", "autogpt-policy", "--json")
    assert (r.returncode, json.loads(r.stdout)["policy"]) == (0, "autogpt-policy")
    r = cli("policy", "test", "autogpt-agent", "read:web", "--policy", "autogpt-production")
    assert r.returncode == 2  # tagged autogpt only, so that policy does not apply
    assert "does not apply" in one_line_error(r)

    # consumes no rate-limit budget: far more than 30 tests in a minute stay allowed
    for _ in range(3):
        assert cli("policy", "test", "autogpt-agent", "browse:web", "-q").stdout == "allow\n"


def test_policy_test_unknown_agent_exits_2(cli: Run) -> None:
    r = cli("policy", "test", "ghost", "read:web")
    assert r.returncode == 2
    assert "no agent named or with id 'ghost'" in one_line_error(r)


def test_policy_test_batch_with_one_failing_case_exits_1(cli: Run, gateway: LiveGateway, tmp_path: Path) -> None:
    gateway.create_agent("autogpt-agent", ["autogpt"])
    (tmp_path / "tests.yaml").write_text(
        textwrap.dedent(
            """\
            - name: browse allowed
              agent: autogpt-agent
              action: browse:web
              resource: https://python.org
              expect: allow
            - name: shell denied
              agent: autogpt-agent
              action: execute:shell
              expect: deny
            - name: system writes denied
              agent: autogpt-agent
              action: write:system
              resource: /etc/passwd
              context: {sandbox: false}
              expect: deny
            - name: email allowed (wrong on purpose)
              agent: autogpt-agent
              action: send:email
              expect: allow
            """
        )
    )
    r = cli("policy", "test", "--file", "tests.yaml")
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.rstrip().splitlines()[-1] == "Results: 3 passed, 1 failed"
    row = next(line for line in r.stdout.splitlines() if line.startswith("email allowed"))
    assert "FAIL" in row and "deny" in row
    assert "FAIL email allowed (wrong on purpose): expected allow, got deny" in r.stdout

    r = cli("policy", "test", "--file", "tests.yaml", "--json")
    body = json.loads(r.stdout)
    assert (r.returncode, body["passed"], body["failed"]) == (1, 3, 1)
    assert [x["passed"] for x in body["results"]] == [True, True, True, False]

    (tmp_path / "ok.yaml").write_text("tests:\n  - {agent: autogpt-agent, action: read:web, expect: allow}\n")
    r = cli("policy", "test", "-f", "ok.yaml")
    assert (r.returncode, r.stdout.splitlines()[-1]) == (0, "Results: 1 passed, 0 failed")


def test_policy_test_batch_unknown_agent_and_malformed_file_exit_2(cli: Run, tmp_path: Path) -> None:
    (tmp_path / "ghost.yaml").write_text("- {name: g, agent: ghost, action: read:web, expect: allow}\n")
    r = cli("policy", "test", "--file", "ghost.yaml")
    assert r.returncode == 2
    assert "Results: 0 passed, 0 failed, 1 error" in r.stdout

    (tmp_path / "bad.yaml").write_text("- name: g\n  agent: a\n  action: read:web\n  expect: allow\n  bogus: 1\n")
    r = cli("policy", "test", "--file", "bad.yaml")
    assert r.returncode == 2
    assert "bad.yaml:1: test 1 (g): unknown key 'bogus'" in one_line_error(r)

    r = cli("policy", "test", "--file", "missing.yaml")
    assert r.returncode == 2
    assert "missing.yaml does not exist" in one_line_error(r)
