"""End to end: MeshGuard's AutoGPT plugin in real AutoGPT 0.2.2 (PyPI agpt, .venv-autogpt), WITHOUT the launcher.

AutoGPT is started as a user who cannot change how it starts would have it: its own click entry point,
the plugin zip (built by `meshguard plugin build`) in ./plugins, the class allowlisted in
ALLOWLISTED_PLUGINS. No dispatcher patch is installed: only the plugin's pre_command stands between the
agent and its commands. The model is the launcher's scripted model (offline); everything else is
AutoGPT's own code, and the gateway is a real process (fixtures).
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autogpt_plugin.build import PLUGIN_CLASS, build_plugin
from meshguard_autogpt import EXIT_ERROR, EXIT_REVOKED, SEED_POLICY
from tests.autogpt_run import (AUTOGPT_PYTHON, REFUSAL, ROOT, AutoGPTRun, answer_approvals, autogpt_available, install_plugin,
                               prepare_run, step)
from tests.test_launcher_autogpt import APPROVAL_POLICY, RATE_POLICY
from tests.conftest import LiveGateway

pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]

# AutoGPT 0.2.2 started through its own entry point, no launcher and no dispatcher patch. Only the chat
# model is replaced (the launcher's scripted model, which also stands in for spacy/openapi-python-client).
RUNNER = '''\
import os, sys
sys.path.insert(0, os.environ["MESHGUARD_REPO"])
import meshguard_autogpt as scripted
scripted._prepare_scripted_environment()
scripted.install_scripted_model("0.2-0.4.0", scripted.ScriptedModel(sys.argv[1], sys.argv[2]))
from autogpt.cli import main
main.main(args=sys.argv[3:], prog_name="autogpt", standalone_mode=False)
'''


def plugin_command(run: AutoGPTRun, cycles: int = 20) -> list[str]:
    runner = run.dir / "run_autogpt.py"
    runner.write_text(RUNNER, encoding="utf-8")
    return [str(AUTOGPT_PYTHON), str(runner), str(run.dir / "script.json"), str(run.prompts_path),
            "--continuous", "--continuous-limit", str(cycles), "--skip-news", "--skip-reprompt",
            "--ai-settings", "ai_settings.yaml", "--use-memory", "no_memory"]  # fmt: skip


def with_plugin(run: AutoGPTRun, *also_allowed: str) -> AutoGPTRun:
    """The built zip in AutoGPT's plugins folder, its class allowlisted (as docs/plugin.md says)."""
    build_plugin(run.dir / "plugins")
    run.env.update(ALLOWLISTED_PLUGINS=",".join([PLUGIN_CLASS, *also_allowed]), MESHGUARD_REPO=str(ROOT))
    return run


def run_plugin(run: AutoGPTRun, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(plugin_command(run), cwd=run.dir, env=run.env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_plugin(run: AutoGPTRun) -> subprocess.Popen[str]:
    return subprocess.Popen(plugin_command(run), cwd=run.dir, env=run.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def run_acting_before_cycle(run: AutoGPTRun, cycle: int, go: Path, act: Callable[[], None]) -> tuple[int, str, str]:
    """Start AutoGPT; once it asked the model for `cycle`, `act` (stop the gateway, revoke the agent),
    then release the reply held on file `go`. Returns (exit status, stdout, stderr)."""
    proc = start_plugin(run)
    try:
        run.wait_for_cycle(cycle, proc)
        act()
        go.touch()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.fixture
def seed_gateway(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> LiveGateway:
    policy = tmp_path / "policies" / "autogpt.yaml"
    policy.parent.mkdir()
    policy.write_text(SEED_POLICY, encoding="utf-8")
    return start_gateway(policy)


def trace_entries(gw: LiveGateway, output: str) -> list[dict[str, Any]]:
    marker = "meshguard audit trace "
    assert marker in output, output
    trace_id = output.rsplit(marker, 1)[1].split()[0]
    resp = gw.admin("GET", "/admin/audit", params={"trace": trace_id, "order": "asc", "limit": 100})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


def test_plugin_governs_real_autogpt_without_the_launcher(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    marker = tmp_path / "shell-ran"
    markers = tmp_path / "markers"
    markers.mkdir()
    run = with_plugin(prepare_run(tmp_path / "run", [
        step("write_to_file", filename="notes.txt", text="hello from the agent"),
        step("execute_shell", command_line=f"touch {marker}"),
        step("write_to_file", filename="../escaped.txt", text="out"),
        step("send_email", to="boss@example.com", subject="hi", body="..."),
    ], url=seed_gateway.url, token=token), "MeshGuardTestPlugin")  # fmt: skip
    install_plugin(run, markers)  # another plugin's command, run by AutoGPT's dispatcher fallback
    run.env["ALLOWLISTED_PLUGINS"] = f"{PLUGIN_CLASS},MeshGuardTestPlugin"

    result = run_plugin(run)

    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert "MeshGuard: plugin governing AutoGPT's commands" in result.stdout  # AutoGPT loaded and started it
    assert "MeshGuard: governing" not in out  # the launcher's patch is not there: the plugin alone governs
    # allowed: written by AutoGPT's own command
    assert (run.workspace / "notes.txt").read_text() == "hello from the agent"
    # denied shell: never ran, and the agent read why in its next prompt
    assert not marker.exists(), out
    assert f"Command execute_shell returned: {REFUSAL} 'execute_shell' (action execute:shell" in run.prompt_text(3)
    # the path escaping the workspace is judged where it lands, as the launcher judges it
    assert not (run.dir / "escaped.txt").exists()
    assert f"{REFUSAL} 'write_to_file' (action write:system" in run.prompt_text(4)
    # another plugin's command is governed too (send:email is denied by the seed policy)
    assert not (markers / "send_email").exists()
    assert f"{REFUSAL} 'send_email' (action send:email on 'boss@example.com')" in run.prompt_text(5)
    assert "DENIED execute_shell" in result.stdout and "allowed write_to_file" in result.stdout
    assert token not in out

    entries = trace_entries(seed_gateway, result.stdout)
    decisions = [(e["action"], e["resource"], e["decision"]) for e in entries if e["kind"] == "check"]
    assert decisions == [
        ("write:workspace", "notes.txt", "allow"),
        ("execute:shell", f"touch {marker}", "deny"),
        ("write:system", str((run.dir / "escaped.txt").resolve()), "deny"),
        ("send:email", "boss@example.com", "deny"),
    ], entries
    # the allowed write's outcome is recorded, linked to its decision
    write = next(e for e in entries if e["action"] == "write:workspace")
    assert write["outcome"] is not None and write["outcome"]["status"] == "success", write
    # the scripted model's last reply, task_complete, is a lifecycle command: recorded, never refused
    assert any(e["action"] == "lifecycle:task_complete" for e in entries), entries


def test_plugin_in_audit_mode_lets_the_denied_shell_run(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """The control for the test above: the same shell command does run when the gateway enforces nothing,
    so it is the plugin that kept it from running there."""
    policy = tmp_path / "autogpt.yaml"
    policy.write_text(SEED_POLICY, encoding="utf-8")
    gw = start_gateway(policy, mode="audit")
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    marker = tmp_path / "shell-ran"
    run = with_plugin(prepare_run(tmp_path / "run", [step("execute_shell", command_line=f"touch {marker}")],
                                  url=gw.url, token=token))  # fmt: skip

    result = run_plugin(run)

    assert result.returncode == 0, result.stdout + result.stderr
    assert marker.exists()
    assert "audit mode: execute_shell" in result.stdout


def test_plugin_refuses_when_the_gateway_goes_down(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    go = tmp_path / "go"
    run = with_plugin(prepare_run(tmp_path / "run", [
        step("write_to_file", filename="first.txt", text="1"),
        step("write_to_file", wait_for_file=go, filename="second.txt", text="2"),
    ], url=seed_gateway.url, token=token, extra_env={"MESHGUARD_TIMEOUT": "2"}))  # fmt: skip

    returncode, out, err = run_acting_before_cycle(run, 2, go, lambda: seed_gateway.stop(signal.SIGKILL))

    assert returncode == 0, out + err
    assert (run.workspace / "first.txt").exists()
    assert not (run.workspace / "second.txt").exists(), out
    third = run.prompt_text(3)
    assert f"{REFUSAL} 'write_to_file'" in third and "fail closed" in third


def test_plugin_stops_autogpt_when_the_agent_is_revoked(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    go = tmp_path / "go"
    run = with_plugin(prepare_run(tmp_path / "run", [
        step("write_to_file", filename="first.txt", text="1"),
        step("write_to_file", wait_for_file=go, filename="second.txt", text="2"),
        step("write_to_file", filename="third.txt", text="3"),
    ], url=seed_gateway.url, token=token))  # fmt: skip

    def revoke() -> None:
        assert seed_gateway.admin("DELETE", "/admin/agents/autogpt-agent").status_code == 200

    returncode, out, err = run_acting_before_cycle(run, 2, go, revoke)

    assert returncode == EXIT_REVOKED, out + err
    assert (run.workspace / "first.txt").exists()
    assert not (run.workspace / "second.txt").exists() and not (run.workspace / "third.txt").exists()
    assert len(run.prompts()) == 2  # AutoGPT never asked for another command
    assert "STOPPED" in err and "rejected this agent's token" in err
    assert token not in out + err


def test_plugin_without_a_token_stops_autogpt_before_any_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    run = with_plugin(prepare_run(tmp_path / "run", [step("execute_shell", command_line=f"touch {marker}")]))

    result = run_plugin(run)

    assert result.returncode == EXIT_ERROR, result.stdout + result.stderr
    assert "MESHGUARD_TOKEN" in result.stderr
    assert not marker.exists() and run.prompts() == []


def test_plugin_stays_passive_under_the_launcher(seed_gateway: LiveGateway, tmp_path: Path) -> None:
    """Plugin and launcher together: the launcher's dispatcher patch governs, the plugin says so once and
    checks nothing, so each command is checked exactly once."""
    _, token = seed_gateway.create_agent("autogpt-agent", tags=["autogpt"])
    marker = tmp_path / "shell-ran"
    run = with_plugin(prepare_run(tmp_path / "run", [
        step("write_to_file", filename="notes.txt", text="x"),
        step("execute_shell", command_line=f"touch {marker}"),
    ], url=seed_gateway.url, token=token))  # fmt: skip

    result = run.run()  # the launcher, with the plugin zip in ./plugins and allowlisted

    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert result.stdout.count("the MeshGuard plugin stays passive") == 1, out
    assert (run.workspace / "notes.txt").read_text() == "x"
    assert not marker.exists()
    assert f"Command execute_shell returned: {REFUSAL} 'execute_shell'" in run.prompt_text(3)
    entries = trace_entries(seed_gateway, result.stdout)
    checks = [(e["action"], e["decision"]) for e in entries if e["kind"] == "check"]
    assert checks == [("write:workspace", "allow"), ("execute:shell", "deny")], entries
    write = next(e for e in entries if e["action"] == "write:workspace")
    assert write["outcome"] is not None and write["outcome"]["status"] == "success"
    records = [e for e in entries if e["kind"] == "record" and e["action"] == "write:workspace"]
    assert records == []  # recorded once, by the launcher, linked to its decision


def test_plugin_waits_for_a_human_approval(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    policy = tmp_path / "careful.yaml"
    policy.write_text(APPROVAL_POLICY)
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    run = with_plugin(prepare_run(tmp_path / "run", [
        step("write_to_file", filename="reports/approved.txt", text="yes"),
        step("write_to_file", filename="reports/rejected.txt", text="no"),
    ], url=gw.url, token=token, extra_env={"MESHGUARD_APPROVAL_TIMEOUT": "120"}))  # fmt: skip

    proc = start_plugin(run)
    try:
        decided = answer_approvals(gw, proc, ["approve", "deny"])
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()

    assert proc.returncode == 0, out + err
    assert (run.workspace / "reports" / "approved.txt").read_text() == "yes"
    assert not (run.workspace / "reports" / "rejected.txt").exists()
    assert f"{REFUSAL} 'write_to_file'" in run.prompt_text(3) and "not granted" in run.prompt_text(3)
    for approval_id in decided:  # the plugin said what it waits for and how to approve it
        assert f"meshguard approval approve {approval_id}" in out


def test_plugin_refuses_a_rate_limited_command_in_deny_mode(start_gateway: Callable[..., LiveGateway],
                                                            tmp_path: Path) -> None:  # fmt: skip
    """MESHGUARD_ON_RATE_LIMIT=deny refuses at once (the default, wait, is the launcher's same code path)."""
    policy = tmp_path / "slow.yaml"
    policy.write_text(RATE_POLICY)
    gw = start_gateway(policy)
    _, token = gw.create_agent("autogpt-agent", tags=["autogpt"])
    run = with_plugin(prepare_run(tmp_path / "run", [step("write_to_file", filename=f"{n}.txt", text=str(n)) for n in (1, 2, 3)],
                                  url=gw.url, token=token, extra_env={"MESHGUARD_ON_RATE_LIMIT": "deny"}))  # fmt: skip

    result = run_plugin(run)

    assert result.returncode == 0, result.stdout + result.stderr
    assert (run.workspace / "1.txt").exists() and (run.workspace / "2.txt").exists()
    assert not (run.workspace / "3.txt").exists()
    assert "RATE LIMITED write_to_file" in result.stdout
    assert f"{REFUSAL} 'write_to_file'" in run.prompt_text(4) and "Slow down" in run.prompt_text(4)
