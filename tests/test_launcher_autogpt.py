"""End to end: real AutoGPT 0.2.2 (PyPI agpt, .venv-autogpt) under the launcher, a real gateway.

The model is the launcher's scripted model, so AutoGPT's real loop runs offline; everything else
(dispatcher, commands, workspace, file writes, shell) is AutoGPT's own code.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from meshguard_autogpt import EXIT_REVOKED, SEED_POLICY
from tests.autogpt_run import (REFUSAL, answer_approvals, autogpt_available, install_plugin, is_running, prepare_run,
                               step, stop_pid)
from tests.conftest import LiveGateway

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]


@pytest.fixture
def seed_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policies" / "autogpt.yaml"
    path.parent.mkdir()
    path.write_text(SEED_POLICY, encoding="utf-8")
    return path


@pytest.fixture
def seed_gateway(start_gateway: Callable[..., LiveGateway], seed_policy: Path) -> LiveGateway:
    return start_gateway(seed_policy)


def trace_entries(gw: LiveGateway, trace_id: str) -> list[dict[str, Any]]:
    resp = gw.admin("GET", "/admin/audit", params={"trace": trace_id, "order": "asc", "limit": 100})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


def trace_id_of(output: str) -> str:
    marker = "meshguard audit trace "
    assert marker in output, output
    return output.rsplit(marker, 1)[1].split()[0]


def test_autogpt_one_run_is_governed_end_to_end(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = tmp_path / "shell-ran"
    run_dir = tmp_path / "run"
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    run = prepare_run(run_dir, [
        step("write_to_file", filename="notes.txt", text="hello from the agent"),
        step("execute_shell", command_line=f"touch {marker}"),
        step("write_to_file", filename="../escaped.txt", text="out"),
        step("write_to_file", filename="link/through-symlink.txt", text="out"),
        step("frobnicate", level="max"),
    ], url=seed_gateway.url, token=token)  # fmt: skip
    (run.workspace / "link").symlink_to(outside, target_is_directory=True)

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    # allowed write: really written, by AutoGPT's own command
    assert (run.workspace / "notes.txt").read_text() == "hello from the agent"
    # denied shell: never ran, and the agent read why in its next prompt
    assert not marker.exists()
    assert f"{REFUSAL} 'execute_shell'" in run.prompt_text(3)
    assert "execute:shell" in run.prompt_text(3)
    # escapes from the workspace: refused as write:system, nothing written outside
    assert not (run_dir / "escaped.txt").exists()
    assert not (outside / "through-symlink.txt").exists()
    assert f"{REFUSAL} 'write_to_file' (action write:system" in run.prompt_text(4)
    assert f"{REFUSAL} 'write_to_file' (action write:system" in run.prompt_text(5)
    # unknown command: refused by default
    assert f"{REFUSAL} 'frobnicate' (action execute:frobnicate" in run.prompt_text(6)
    # one line per decision on the console, and the trace at the end
    assert "allowed write_to_file" in result.stdout
    assert "DENIED execute_shell" in result.stdout
    trace_id = trace_id_of(result.stdout)
    assert token not in result.stdout + result.stderr

    entries = trace_entries(seed_gateway, trace_id)
    decisions = [(e["action"], e["resource"], e["decision"]) for e in entries if not e["action"].startswith("lifecycle:")]
    assert decisions == [
        ("write:workspace", "notes.txt", "allow"),
        ("execute:shell", f"touch {marker}", "deny"),
        ("write:system", str((run_dir / "escaped.txt").resolve()), "deny"),
        ("write:system", str((outside / "through-symlink.txt").resolve()), "deny"),
        ("execute:frobnicate", None, "deny"),
    ]
    assert {e["trace_id"] for e in entries} == {trace_id}
    assert entries[0]["outcome"] is not None and entries[0]["outcome"]["status"] == "success"


def test_autogpt_audit_mode_runs_what_enforce_would_deny(start_gateway: Callable[..., LiveGateway],
                                                         seed_policy: Path, tmp_path: Path) -> None:  # fmt: skip
    """The control for the test above: the same shell command does run when nothing is enforced."""
    gw = start_gateway(seed_policy, mode="audit")
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    marker = tmp_path / "shell-ran"
    run = prepare_run(tmp_path / "run", [step("execute_shell", command_line=f"touch {marker}")], url=gw.url, token=token)

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()
    assert "audit mode: execute_shell" in result.stdout
    entries = trace_entries(gw, trace_id_of(result.stdout))
    assert [(e["action"], e["decision"], e["enforced"]) for e in entries if e["action"] == "execute:shell"] == [
        ("execute:shell", "deny", False)
    ]


def test_autogpt_revoked_mid_run_stops_before_next_command(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    go = tmp_path / "go"
    run = prepare_run(tmp_path / "run", [
        step("write_to_file", filename="first.txt", text="1"),
        step("write_to_file", wait_for_file=go, filename="second.txt", text="2"),
        step("write_to_file", filename="third.txt", text="3"),
    ], url=seed_gateway.url, token=token)  # fmt: skip

    proc = run.start()
    try:
        run.wait_for_cycle(2, proc)
        assert seed_gateway.admin("DELETE", "/admin/agents/autogpt-agent").status_code == 200
        go.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == EXIT_REVOKED, out + err
    assert (run.workspace / "first.txt").exists()
    assert not (run.workspace / "second.txt").exists()
    assert not (run.workspace / "third.txt").exists()
    assert len(run.prompts()) == 2  # AutoGPT never got to ask for another command
    assert "STOPPED" in err and "rejected this agent's token" in err
    assert token not in out + err


def test_autogpt_gateway_killed_mid_run_refuses_next_command(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    go = tmp_path / "go"
    run = prepare_run(tmp_path / "run", [
        step("write_to_file", filename="first.txt", text="1"),
        step("write_to_file", wait_for_file=go, filename="second.txt", text="2"),
    ], url=seed_gateway.url, token=token, extra_env={"MESHGUARD_TIMEOUT": "2"})  # fmt: skip

    proc = run.start()
    try:
        run.wait_for_cycle(2, proc)
        seed_gateway.stop(signal.SIGKILL)
        go.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 0, out + err
    assert (run.workspace / "first.txt").exists()
    assert not (run.workspace / "second.txt").exists()
    third = run.prompt_text(3)
    assert f"{REFUSAL} 'write_to_file'" in third
    assert "fail closed" in third


def test_autogpt_embedded_gateway_default(tmp_path: Path) -> None:
    """No gateway configured: the launcher starts one, keeps it for the CLI, and reuses it."""
    run = prepare_run(tmp_path / "run", [step("write_to_file", filename="notes.txt", text="x"),
                                         step("execute_shell", command_line="true")])  # fmt: skip
    state = run.dir / ".meshguard"
    pid = None
    try:
        first = run.run()
        assert first.returncode == 0, first.stdout + first.stderr
        info = json.loads((state / "gateway.json").read_text())
        pid = int(info["pid"])
        assert "started the embedded gateway" in first.stdout
        assert f"pid {pid}" in first.stdout and f"meshguard gateway stop --state-dir {state}" in first.stdout
        assert (run.workspace / "notes.txt").read_text() == "x"
        assert (state / "policies" / "autogpt.yaml").read_text() == SEED_POLICY
        # the gateway outlives AutoGPT: the audit trail of the run is still there to read
        admin = {"X-Admin-Token": (state / "admin_token").read_text().strip()}
        trace_id = trace_id_of(first.stdout)
        entries = httpx.get(info["url"] + "/admin/audit", params={"trace": trace_id, "order": "asc"},
                            headers=admin, timeout=10).json()["entries"]  # fmt: skip
        assert [(e["action"], e["decision"], e["agent_name"]) for e in entries if not e["action"].startswith("lifecycle:")] == [
            ("write:workspace", "allow", "autogpt-agent"),
            ("execute:shell", "deny", "autogpt-agent"),
        ]
        second = run.run()
        assert second.returncode == 0, second.stdout + second.stderr
        assert "reusing the embedded gateway" in second.stdout
        assert json.loads((state / "gateway.json").read_text())["pid"] == pid
        # revoked: the next start refuses and says how to start over
        assert httpx.delete(info["url"] + "/admin/agents/autogpt-agent", headers=admin, timeout=10).status_code == 200
        third = run.run()
        assert third.returncode == EXIT_REVOKED
        assert "revoked" in third.stderr and "remove" in third.stderr
        # the stop command the launcher printed works
        stop = subprocess.run([sys.executable, "-m", "meshguard_gateway", "gateway", "stop", "--state-dir", str(state)],
                              capture_output=True, text=True, timeout=60, env={**run.env})  # fmt: skip
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert not is_running(pid)
    finally:
        if pid is None and (state / "gateway.json").exists():
            pid = int(json.loads((state / "gateway.json").read_text())["pid"])
        if pid is not None:
            stop_pid(pid)


def test_autogpt_without_a_reachable_gateway_does_not_start(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    run = prepare_run(tmp_path / "run", [step("execute_shell", command_line=f"touch {marker}")],
                      url="http://127.0.0.1:9", token="not-a-token")  # fmt: skip
    result = run.run()
    assert result.returncode == 1
    assert "not reachable" in result.stderr
    assert not marker.exists() and run.prompts() == []


def test_autogpt_plugin_commands_pass_the_dispatcher_too(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    """Plugin commands never enter AutoGPT 0.2.2's registry, yet they are governed; the action map file
    (MESHGUARD_ACTION_MAP) names what a plugin command does."""
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    markers = tmp_path / "markers"
    markers.mkdir()
    action_map = tmp_path / "actions.json"
    action_map.write_text(json.dumps({"say_hello": {"action": "read:greeting", "resource": "name"}}))
    run = prepare_run(tmp_path / "run", [
        step("send_email", to="boss@example.com", subject="hi", body="..."),
        step("say_hello", name="world"),
        step("plugin_unmapped", x="1"),
    ], url=seed_gateway.url, token=token, extra_env={"MESHGUARD_ACTION_MAP": str(action_map)})  # fmt: skip
    install_plugin(run, markers)

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert "meshguard-test-plugin" in result.stdout  # AutoGPT loaded the plugin
    assert not (markers / "send_email").exists()
    assert f"{REFUSAL} 'send_email' (action send:email on 'boss@example.com')" in run.prompt_text(2)
    assert (markers / "say_hello").read_text() == "('world',)"
    assert not (markers / "plugin_unmapped").exists()
    assert f"{REFUSAL} 'plugin_unmapped' (action execute:plugin_unmapped" in run.prompt_text(4)
    entries = trace_entries(seed_gateway, trace_id_of(result.stdout))
    assert [(e["action"], e["decision"]) for e in entries if not e["action"].startswith("lifecycle:")] == [
        ("send:email", "deny"), ("read:greeting", "allow"), ("execute:plugin_unmapped", "deny")]


APPROVAL_POLICY = """\
name: careful
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["write:workspace/*", "read:*"]
defaultEffect: deny
humanInTheLoop:
  requireApproval: ["write:workspace/reports/*"]
"""


def test_autogpt_waits_for_a_human_approval(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    policy = tmp_path / "careful.yaml"
    policy.write_text(APPROVAL_POLICY)
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    run = prepare_run(tmp_path / "run", [
        step("write_to_file", filename="reports/approved.txt", text="yes"),
        step("write_to_file", filename="reports/rejected.txt", text="no"),
    ], url=gw.url, token=token, extra_env={"MESHGUARD_APPROVAL_TIMEOUT": "120"})  # fmt: skip

    proc = run.start()
    try:
        decided = answer_approvals(gw, proc, ["approve", "deny"])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 0, out + err
    assert (run.workspace / "reports" / "approved.txt").read_text() == "yes"
    assert not (run.workspace / "reports" / "rejected.txt").exists()
    for approval_id in decided:
        assert f"meshguard approval approve {approval_id}" in out
    assert f"{REFUSAL} 'write_to_file'" in run.prompt_text(3) and "denied" in run.prompt_text(3)


RATE_POLICY = """\
name: slow
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["write:workspace/*"]
defaultEffect: deny
rateLimits:
  requestsPerMinute: 2
"""


def test_autogpt_rate_limited_command_is_refused_in_deny_mode(start_gateway: Callable[..., LiveGateway],
                                                              tmp_path: Path) -> None:  # fmt: skip
    policy = tmp_path / "slow.yaml"
    policy.write_text(RATE_POLICY)
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    run = prepare_run(tmp_path / "run", [step("write_to_file", filename=f"{n}.txt", text=str(n)) for n in (1, 2, 3)],
                      url=gw.url, token=token, extra_env={"MESHGUARD_ON_RATE_LIMIT": "deny"})  # fmt: skip

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert (run.workspace / "1.txt").exists() and (run.workspace / "2.txt").exists()
    assert not (run.workspace / "3.txt").exists()
    assert "RATE LIMITED write_to_file" in result.stdout
    assert f"{REFUSAL} 'write_to_file'" in run.prompt_text(4) and "Slow down" in run.prompt_text(4)
