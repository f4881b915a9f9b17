"""`meshguard policy validate` and `policy test --offline`: local policy files, the real engine,
no gateway (what a repository's CI runs). Exit 0 pass/allow, 1 fail/deny, 2 cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
POLICIES = ROOT / "policies"

SANDBOX_POLICY = textwrap.dedent(
    """\
    name: sandbox-policy
    appliesTo:
      tags: [coder]
    rules:
      - id: python-in-sandbox
        effect: allow
        actions: ["execute:python"]
        conditions:
          sandbox: true
      - effect: allow
        actions: ["read:*"]
    humanInTheLoop:
      requireApproval: ["send:email"]
    defaultEffect: deny
    """
)

TESTS = textwrap.dedent(
    """\
    agents:
      autogpt-agent: {trust: verified, tags: [autogpt]}
      stranger: {trust: verified, tags: [other]}
    tests:
      - name: browsing is allowed
        agent: autogpt-agent
        action: browse:web
        resource: https://example.com
        expect: allow
      - name: shell is denied
        agent: autogpt-agent
        action: execute:shell
        resource: ls -la
        expect: deny
      - name: workspace writes are allowed
        agent: autogpt-agent
        action: write:workspace
        resource: notes/today.txt
        expect: allow
      - name: no policy applies to strangers
        agent: stranger
        action: read:web
        expect: deny
    """
)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_") and k != "COLUMNS"}
    env.update(HOME=str(cwd), PYTHONPATH=str(ROOT), MESHGUARD_URL="http://127.0.0.1:9")  # no gateway there
    return subprocess.run(
        [sys.executable, "-m", "meshguard_gateway", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_validate_accepts_the_shipped_policies(tmp_path: Path) -> None:
    r = run_cli("policy", "validate", str(POLICIES), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "autogpt-policy" in r.stdout
    assert "policies valid." in r.stdout


def test_validate_reports_every_problem_with_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nrules:\n  - effect: block\n    actions: ['read:*']\n    conditions: {sandbx: true}\n")
    r = run_cli("policy", "validate", str(bad), cwd=tmp_path)
    assert r.returncode == 1
    assert f"{bad}:3" in r.stdout and "block" in r.stdout
    assert "sandbx" in r.stdout
    assert "nothing was loaded" in one_line_error(r)

    r = run_cli("policy", "validate", str(bad), "--json", cwd=tmp_path)
    body = json.loads(r.stdout)
    assert body["valid"] is False and len(body["errors"]) >= 2


def test_validate_an_empty_directory_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    r = run_cli("policy", "validate", str(tmp_path / "empty"), cwd=tmp_path)
    assert r.returncode == 1
    assert "holds no policy files" in one_line_error(r)


def test_offline_single_allow_and_deny(tmp_path: Path) -> None:
    common = ["--offline", "--policies", str(POLICIES), "--trust", "verified", "--agent-tags", "autogpt"]
    r = run_cli("policy", "test", "autogpt-agent", "browse:web", *common, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Decision: ALLOW" in r.stdout and "autogpt-policy" in r.stdout

    r = run_cli("policy", "test", "autogpt-agent", "execute:shell", "ls -la", *common, "--verbose", cwd=tmp_path)
    assert r.returncode == 1
    assert "Decision: DENY" in r.stdout
    assert "Rule:     #4 (execute:shell)" in r.stdout
    assert "deny rule #4 (execute:shell) matched on pattern execute:shell" in r.stdout  # --verbose


def test_offline_json_answer(tmp_path: Path) -> None:
    r = run_cli(
        "policy", "test", "--agent", "a", "--action", "write:system", "--resource", "/etc/passwd",
        "--policies", str(POLICIES), "--agent-tags", "autogpt", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 1
    body = json.loads(r.stdout)
    assert body["decision"] == "deny" and body["allowed"] is False
    assert body["policy"] == "autogpt-policy"


def test_offline_context_and_approval(tmp_path: Path) -> None:
    pol = tmp_path / "pol"
    pol.mkdir()
    (pol / "sandbox.yaml").write_text(SANDBOX_POLICY)
    common = ["--policies", str(pol), "--agent-tags", "coder"]
    r = run_cli("policy", "test", "bot", "execute:python", *common, "--context", '{"sandbox": true}', cwd=tmp_path)
    assert (r.returncode, "Decision: ALLOW" in r.stdout) == (0, True), r.stdout + r.stderr
    r = run_cli("policy", "test", "bot", "execute:python", *common, "--context", '{"sandbox": false}', "-v", cwd=tmp_path)
    assert r.returncode == 1
    assert "does not apply" in r.stdout  # the sandbox condition did not hold
    r = run_cli("policy", "test", "bot", "send:email", *common, "--quiet", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (1, "approval_required\n")


def test_offline_batch_with_one_failing_case_exits_1(tmp_path: Path) -> None:
    tests = tmp_path / "tests.yaml"
    tests.write_text(TESTS + "  - name: shell allowed (wrong)\n    agent: autogpt-agent\n    action: execute:shell\n"
                     "    expect: allow\n")  # fmt: skip
    r = run_cli("policy", "test", "--offline", "--policies", str(POLICIES), "--file", str(tests), cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("Results: 4 passed, 1 failed")
    fail_rows = [line for line in r.stdout.splitlines() if line.startswith("shell allowed (wrong)")]
    assert len(fail_rows) == 1 and "FAIL" in fail_rows[0] and "deny" in fail_rows[0]
    assert "FAIL shell allowed (wrong): expected allow, got deny" in r.stdout

    r = run_cli("policy", "test", "--policies", str(POLICIES), "--file", str(tests), "--json", cwd=tmp_path)
    body = json.loads(r.stdout)
    assert (body["passed"], body["failed"], body["errors"]) == (4, 1, 0)
    assert [x["result"] for x in body["results"]] == ["pass", "pass", "pass", "pass", "fail"]


def test_offline_batch_all_passing_exits_0_and_uses_policies_dir_by_default(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    for f in POLICIES.glob("*.yaml"):
        (tmp_path / "policies" / f.name).write_text(f.read_text())
    (tmp_path / "tests.yaml").write_text(TESTS)
    r = run_cli("policy", "test", "--offline", "--file", "tests.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Results: 4 passed, 0 failed" in r.stdout


def test_offline_policy_option_narrows_to_one_policy(tmp_path: Path) -> None:
    r = run_cli("policy", "test", "a", "read:web", "--policies", str(POLICIES), "--agent-tags", "autogpt",
                "--policy", "no-such-policy", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2
    assert "no policy named 'no-such-policy'" in one_line_error(r)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("tests:\n  - name: x\n    agent: a\n    action: [unclosed\n", "flow sequence at line 4"),
        ("tests:\n  - name: x\n    agent: a\n    expect: allow\n", "tests.yaml:2: test 1 (x): missing 'action'"),
        ("tests:\n  - agent: a\n    action: read:web\n    expect: maybe\n", "expect 'maybe' is not one of"),
        ("tests:\n  - agent: a\n    action: read:web\n    expect: allow\n    contex: {}\n", "unknown key 'contex'"),
        ("tests:\n  - agent: a\n    action: read:web\n", "missing 'expect'"),
        ("just a string\n", "expected a list of test cases"),
        ("tests: []\n", "expected a list of test cases"),
    ],
)
def test_malformed_test_file_exits_2_with_one_line(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "tests.yaml").write_text(content)
    r = run_cli("policy", "test", "--policies", str(POLICIES), "--file", "tests.yaml", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in one_line_error(r)


def test_offline_undescribed_agent_and_bad_context_exit_2(tmp_path: Path) -> None:
    r = run_cli("policy", "test", "ghost", "read:web", "--offline", "--policies", str(POLICIES), cwd=tmp_path)
    assert r.returncode == 2
    assert "agent 'ghost' is not described" in one_line_error(r)
    r = run_cli("policy", "test", "a", "read:web", "--policies", str(POLICIES), "--agent-tags", "x",
                "--context", "{sandbox: true}", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 2
    assert "--context is not valid JSON" in one_line_error(r)
    r = run_cli("policy", "test", "a", cwd=tmp_path)
    assert r.returncode == 2
    assert "give an agent and an action" in one_line_error(r)


def test_offline_batch_undescribed_agent_is_an_error_row(tmp_path: Path) -> None:
    (tmp_path / "tests.yaml").write_text(TESTS + "  - {name: ghost, agent: ghost, action: read:web, expect: allow}\n")
    r = run_cli("policy", "test", "--policies", str(POLICIES), "--file", "tests.yaml", cwd=tmp_path)
    assert r.returncode == 2
    assert "Results: 4 passed, 0 failed, 1 error" in r.stdout
    assert "ERROR ghost: agent 'ghost' is not described" in r.stdout


def test_offline_needs_no_gateway_and_invalid_policies_exit_2(tmp_path: Path) -> None:
    pol = tmp_path / "pol"
    pol.mkdir()
    (pol / "broken.yaml").write_text("name: broken\nrules: 3\n")
    r = run_cli("policy", "test", "a", "read:web", "--policies", str(pol), "--agent-tags", "x", cwd=tmp_path)
    assert r.returncode == 2
    assert "do not load" in one_line_error(r) and "broken.yaml" in r.stderr


def test_offline_inline_agents_and_trust_tier_selectors(tmp_path: Path) -> None:
    pol = tmp_path / "pol"
    pol.mkdir()
    (pol / "tiers.yaml").write_text(
        "name: trusted-only\nappliesTo:\n  trustTiers: [trusted, privileged]\nrules:\n"
        "  - effect: allow\n    actions: ['deploy:*']\n"
    )
    (tmp_path / "t.yaml").write_text(textwrap.dedent(
        """\
        - name: trusted may deploy
          agent: {name: senior, trust: trusted, tags: []}
          action: deploy:prod
          expect: allow
        - name: basic (unverified) may not
          agent: {name: junior, trust: basic}
          action: deploy:prod
          expect: deny
        """
    ))  # fmt: skip
    r = run_cli("policy", "test", "--policies", str(pol), "--file", "t.yaml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Results: 2 passed, 0 failed" in r.stdout
