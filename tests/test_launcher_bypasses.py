"""Bypasses an adversarial review found, each closed: the effect that passed the governor never happens.

Real AutoGPT 0.2.2 (PyPI agpt) where the bypass lives in it; the classic stand-in (which mirrors classic's
source, file and line named in each stand-in file) where it lives in classic. Real gateway processes.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.autogpt_run import (REFUSAL, autogpt_available, install_plugin_source, plugin_source, prepare_run, step,
                               stop_pid)  # fmt: skip
from tests.conftest import LiveGateway
from tests.test_generations import GENS, run_launcher

needs_autogpt = pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)")
CLASSIC = next(g for g in GENS if g.standin == "classic")


def policy_gateway(start_gateway: Callable[..., LiveGateway], tmp_path: Path, text: str,
                   agent: str = "autogpt-agent") -> tuple[LiveGateway, str]:  # fmt: skip
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    gw = start_gateway(path)
    return gw, gw.create_agent(agent, tags=["autogpt"])[1]


# ---- 1. PyPI agpt 0.2.2 calls plugin commands positionally -----------------------------------------

EMAIL_POLICY = """\
name: email-to-boss-only
appliesTo: {tags: [autogpt]}
rules:
  - effect: allow
    actions: ["send:email"]
    conditions: {resourcePattern: "boss@example.com"}
defaultEffect: deny
"""

EMAIL_PLUGIN = plugin_source("MeshGuardEmailPlugin", "meshguard-email", helpers='''
def send_email(to, subject, body):
    with open(os.path.join(os.environ["PLUGIN_MARKER_DIR"], "sent"), "a") as out:
        out.write(repr((to, subject, body)) + "\\n")
    return "sent to " + to
''', commands='''\
        prompt.add_command("Send an email", "send_email", {"to": "<to>", "subject": "<s>", "body": "<b>"}, send_email)''')


@pytest.mark.autogpt
@needs_autogpt
def test_positional_plugin_call_with_reordered_keys_is_refused(start_gateway: Callable[..., LiveGateway],
                                                                tmp_path: Path) -> None:  # fmt: skip
    """The approved recipient is boss@example.com, but function(*arguments.values()) would hand the
    first value (here the attacker's address, written under "body") to the `to` parameter."""
    gw, token = policy_gateway(start_gateway, tmp_path, EMAIL_POLICY)
    markers = tmp_path / "markers"
    markers.mkdir()
    run = prepare_run(tmp_path / "run", [
        step("send_email", body="evil@attacker.example", to="boss@example.com", subject="report"),
        step("send_email", to="boss@example.com", subject="report", body="the weekly report"),
    ], url=gw.url, token=token, extra_env={"PLUGIN_MARKER_DIR": str(markers)})  # fmt: skip
    install_plugin_source(run, "MeshGuardEmailPlugin", EMAIL_PLUGIN)

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    sent = (markers / "sent").read_text().splitlines() if (markers / "sent").exists() else []
    assert sent == [repr(("boss@example.com", "report", "the weekly report"))]  # only the call in declared order
    assert f"{REFUSAL} 'send_email'" in run.prompt_text(2) and "declared order" in run.prompt_text(2)


# ---- 2. classic: clone_repository's clone_path is relative to AutoGPT's working directory ------------

WORKSPACE_ONLY = """\
name: workspace-only
appliesTo: {tags: [autogpt]}
rules:
  - effect: allow
    actions: ["write:workspace/*", "read:workspace/*"]
  - effect: deny
    actions: ["write:system/*"]
defaultEffect: deny
"""


def test_classic_clone_repository_outside_the_workspace_is_checked_as_a_system_write(
        start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:  # fmt: skip
    gw, token = policy_gateway(start_gateway, tmp_path, WORKSPACE_ONLY, "standin-agent")
    run = run_launcher(CLASSIC, tmp_path / "run", gw, token, [
        {"name": "clone_repository", "args": {"url": "https://example.invalid/x.git", "clone_path": "cloned"}},
        {"name": "finish", "args": {"reason": "done"}},
    ])  # fmt: skip

    assert run.proc.returncode == 0, run.output
    assert not (run.cwd / "cloned").exists()  # git would have cloned next to AutoGPT, not in its workspace
    assert "Action failed" in run.result_of(0) and "write:system" in run.result_of(0)


# ---- 3. v0.5.0 / ~v0.5.1 / classic: open_file creates a missing file --------------------------------

READ_ONLY = """\
name: read-only
appliesTo: {tags: [autogpt]}
rules:
  - effect: allow
    actions: ["read:workspace/*"]
defaultEffect: deny
"""


def test_classic_open_file_of_a_missing_file_is_a_write(start_gateway: Callable[..., LiveGateway],
                                                        tmp_path: Path) -> None:  # fmt: skip
    gw, token = policy_gateway(start_gateway, tmp_path, READ_ONLY, "standin-agent")
    run = run_launcher(CLASSIC, tmp_path / "run", gw, token, [
        {"name": "open_file", "args": {"file_path": "created.md"}},
        {"name": "finish", "args": {"reason": "done"}},
    ])  # fmt: skip

    assert run.proc.returncode == 0, run.output
    assert not (run.cwd / CLASSIC.workspace / "created.md").exists()
    assert "Action failed" in run.result_of(0) and "write:workspace" in run.result_of(0)


# ---- 6. the embedded default keeps its secrets out of the agent's reach ------------------------------

SANDBOX_ONLY_PYTHON = """\
name: python-in-a-sandbox-only
appliesTo: {tags: [autogpt]}
rules:
  - effect: allow
    actions: ["execute:python"]
    conditions: {sandbox: true}
  - effect: allow
    actions: ["write:workspace/*", "read:workspace/*"]
defaultEffect: deny
"""


@pytest.mark.autogpt
@needs_autogpt
@pytest.mark.skipif(not os.path.exists("/.dockerenv"), reason="AutoGPT runs Python on the host only when it sees /.dockerenv")
def test_python_that_autogpt_runs_next_to_itself_is_not_sandboxed(start_gateway: Callable[..., LiveGateway],
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """AutoGPT 0.2.2 sees /.dockerenv and runs execute_python_file as a plain subprocess in its own
    container (where the launcher and its secrets are): a policy that wants a sandbox refuses it."""
    gw, token = policy_gateway(start_gateway, tmp_path, SANDBOX_ONLY_PYTHON)
    marker = tmp_path / "python-ran"
    run = prepare_run(tmp_path / "run", [
        step("write_to_file", filename="job.py", text=f"open({str(marker)!r}, 'w').write('ran')\n"),
        step("execute_python_file", filename="job.py"),
    ], url=gw.url, token=token)  # fmt: skip

    result = run.run()

    assert result.returncode == 0, result.stdout + result.stderr
    assert (run.workspace / "job.py").exists()
    assert not marker.exists()
    assert f"{REFUSAL} 'execute_python_file'" in run.prompt_text(3)


@pytest.mark.autogpt
@needs_autogpt
def test_embedded_state_is_outside_autogpt_owner_only_and_off_limits(tmp_path: Path) -> None:
    """The seed policy allows read:* (so read:system), and AutoGPT's own workspace restriction is off:
    still the agent cannot read the embedded gateway's admin token."""
    state_home = tmp_path / "xdg-state"
    run = prepare_run(tmp_path / "run", [], extra_env={"XDG_STATE_HOME": str(state_home),
                                                        "RESTRICT_TO_WORKSPACE": "False"})  # fmt: skip
    found = lambda: sorted((state_home / "meshguard").glob("*"))  # noqa: E731
    pid = None
    try:
        first = run.run()  # starts the embedded gateway
        assert first.returncode == 0, first.stdout + first.stderr
        assert not (run.dir / ".meshguard").exists()
        [state] = found()
        assert state.name.startswith("run-")
        info = json.loads((state / "gateway.json").read_text())
        pid = int(info["pid"])
        assert stat.S_IMODE(state.stat().st_mode) == 0o700
        private = [p for p in state.rglob("*") if p.is_file()]
        assert {p.name for p in private} >= {"admin_token", "jwt_secret", "gateway.json", "gateway.log", "autogpt.yaml"}
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in private} == {p.name: "0o600" for p in private}
        assert stat.S_IMODE((state / "policies").stat().st_mode) == 0o700
        admin_token = (state / "admin_token").read_text().strip()

        (run.dir / "script.json").write_text(json.dumps([
            step("read_file", filename=str(state / "admin_token")),
            step("read_file", filename=str(state / "policies" / "autogpt.yaml")),
            step("write_to_file", filename=str(state / "policies" / "open.yaml"), text="rules: []"),
        ]))  # fmt: skip
        run.prompts_path.unlink()
        second = run.run()

        assert second.returncode == 0, second.stdout + second.stderr
        assert admin_token not in (run.prompts_path.read_text() + second.stdout + second.stderr)
        for cycle in (2, 3, 4):
            assert REFUSAL in run.prompt_text(cycle) and "may never touch" in run.prompt_text(cycle)
        assert not (state / "policies" / "open.yaml").exists()
        admin = {"X-Admin-Token": admin_token}
        trace = second.stdout.rsplit("meshguard audit trace ", 1)[1].split()[0]
        entries = httpx.get(info["url"] + "/admin/audit", params={"trace": trace, "order": "asc"}, headers=admin,
                            timeout=10).json()["entries"]  # fmt: skip
        blocked = [e for e in entries if e.get("outcome") is None and e["action"] in ("read:system", "write:system")]
        assert len(blocked) == 3, entries  # the launcher's refusals are in the audit trail
    finally:
        if pid is not None:
            stop_pid(pid)
