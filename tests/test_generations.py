"""The launcher against every AutoGPT generation it claims to govern, through the stand-ins.

Each stand-in under tests/standins/ reproduces one generation's dispatcher shape (module paths, names,
signatures, sync/async, how the loop calls it, exception types, how a refusal reaches the agent); each
file names the real file and line it mirrors. Real AutoGPT (PyPI agpt 0.2.2) is covered end to end in
test_launcher_e2e; these tests prove the other generations: detection, the patch on the name the
caller really looks up, allow runs, deny never runs and the refusal has the form that generation
needs, lifecycle commands end the run as AutoGPT meant, idempotent patch, unpatch restores.

Every run is a separate process (the stand-ins all call themselves `autogpt`), against a real gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, LiveGateway

STANDINS = ROOT / "tests" / "standins"
LAUNCHER = ROOT / "meshguard_autogpt.py"

POLICY = """\
name: standin-policy
version: "1.0"
description: What the generation tests expect of every AutoGPT
appliesTo:
  tags: [autogpt]
rules:
  - effect: allow
    actions: ["write:workspace/*", "read:workspace/*"]
  - effect: deny
    actions: ["execute:shell", "write:system/*"]
defaultEffect: deny
"""


@dataclass(frozen=True)
class Gen:
    """One AutoGPT generation as its stand-in reproduces it."""

    standin: str
    target: str  # the dispatcher the launcher must patch: the name AutoGPT's caller looks up
    refusal: str  # "string" (returned, loop goes on) or "OperationNotAllowedError" (raised, loop goes on)
    write: tuple[str, str, str]  # command, path argument, content argument
    lifecycle: tuple[str, dict[str, Any]]  # ends the run the way this AutoGPT does
    workspace: str  # relative to the run directory
    has_plugins: bool = True  # plugin commands reach the dispatcher's fallback (PyPI 0.2.2 - v0.5.0)
    # v0.3.0-v0.4.4 resolve paths before dispatching; one they cannot resolve goes on raw and the command
    # opens it relative to the process cwd. Elsewhere the command joins it to the workspace root.
    escapes_from_cwd: bool = False
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)


OLD_WS = "auto_gpt_workspace"
NEW_WS = "data/agents/StandIn-1/workspace"
GENS = [
    Gen("v0_2_2_tag", "autogpt.agent.agent.execute_command", "string", ("write_to_file", "file", "text"),
        ("task_complete", {"reason": "done"}), OLD_WS, has_plugins=False),
    Gen("v0_3_0", "autogpt.agent.agent.execute_command", "string", ("write_to_file", "filename", "text"),
        ("task_complete", {"reason": "done"}), OLD_WS, escapes_from_cwd=True),
    Gen("v0_4_0", "autogpt.agent.agent.execute_command", "string", ("write_to_file", "filename", "text"),
        ("task_complete", {"reason": "done"}), OLD_WS, escapes_from_cwd=True),
    Gen("v0_4_4", "autogpt.app.execute_command", "string", ("write_file", "filename", "text"),
        ("goals_accomplished", {"reason": "done"}), OLD_WS, escapes_from_cwd=True),
    Gen("v0_4_5", "autogpt.agents.agent.execute_command", "string", ("write_to_file", "filename", "text"),
        ("goals_accomplished", {"reason": "done"}), OLD_WS),
    Gen("v0_4_7", "autogpt.agents.agent.execute_command", "string", ("create_file", "filename", "text"),
        ("goals_accomplished", {"reason": "done"}), OLD_WS),
    Gen("v0_5_0", "autogpt.agents.agent.execute_command", "OperationNotAllowedError",
        ("write_file", "filename", "contents"), ("finish", {"reason": "done"}), NEW_WS),
    Gen("v0_5_1", "autogpt.agents.agent.Agent._execute_tool", "OperationNotAllowedError",
        ("write_file", "filename", "contents"), ("finish", {"reason": "done"}), NEW_WS, has_plugins=False),
    Gen("classic", "autogpt.agents.agent.Agent._execute_tool", "OperationNotAllowedError",
        ("write_file", "filename", "contents"), ("finish", {"reason": "done"}), NEW_WS, has_plugins=False,
        args=("--component-config-file", "component_config.json")),
]  # fmt: skip
IDS = [g.standin for g in GENS]

# classic ships the shell off with an empty allowlist: AutoGPT itself would refuse it before MeshGuard
# is asked. Turn it on (denylist of nothing) so that only MeshGuard stands between the agent and the shell.
CLASSIC_COMPONENTS = {"CodeExecutorConfiguration": {"execute_local_commands": True,
                                                    "shell_command_control": "denylist", "shell_denylist": []}}  # fmt: skip


@dataclass
class Run:
    proc: subprocess.CompletedProcess[str]
    cwd: Path
    history: list[dict[str, Any]]
    trace: str

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def result_of(self, index: int) -> str:
        return str(self.history[index]["result"])


def _pythonpath(*dirs: Path) -> str:
    return os.pathsep.join([*(str(d) for d in dirs), str(STANDINS), str(ROOT)])


def _run_env(gen: Gen, tmp: Path, token: str, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGUARD_")}
    env.update(
        PYTHONPATH=_pythonpath(STANDINS / gen.standin),
        MESHGUARD_URL=url,
        MESHGUARD_TOKEN=token,
        EXECUTE_LOCAL_COMMANDS="True",
        STANDIN_SCRIPT=str(tmp / "script.json"),
        STANDIN_HISTORY=str(tmp / "history.jsonl"),
        STANDIN_PLUGIN_MARKER=str(tmp / "plugin_ran"),
        HOME=str(tmp / "home"),
        **gen.env,
    )
    return env


def run_launcher(gen: Gen, tmp: Path, gw: LiveGateway, token: str, script: list[dict[str, Any]],
                 *, pythonpath: str | None = None) -> Run:  # fmt: skip
    """`python meshguard_autogpt.py <AutoGPT args>` with the stand-in as the installed AutoGPT."""
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "script.json").write_text(json.dumps(script))
    (tmp / "component_config.json").write_text(json.dumps(CLASSIC_COMPONENTS))
    trace = f"gen-{gen.standin}-{uuid.uuid4().hex[:8]}"
    env = _run_env(gen, tmp, token, gw.url)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, str(LAUNCHER), "--meshguard-trace-id", trace,
           "--continuous", "--continuous-limit", "20", "--skip-news", *gen.args]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    hist_file = tmp / "history.jsonl"
    history = [json.loads(line) for line in hist_file.read_text().splitlines()] if hist_file.exists() else []
    return Run(proc, tmp, history, trace)


def audit(gw: LiveGateway, trace: str) -> list[dict[str, Any]]:
    resp = gw.admin("GET", "/admin/audit", params={"trace": trace, "order": "asc", "limit": 200})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["entries"])


@pytest.fixture
def policy_gateway(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> tuple[LiveGateway, str]:
    pol = tmp_path / "standin-policy.yaml"
    pol.write_text(POLICY)
    gw = start_gateway(pol)
    _, token = gw.create_agent("standin-agent", tags=["autogpt"])
    return gw, token


def assert_refused(gen: Gen, result: str, command: str) -> None:
    """The agent got a refusal it can read, in the form its generation turns into a failed step."""
    if gen.refusal == "string":
        # returned by the dispatcher: AutoGPT prefixes it like any result; not an exception turned
        # into "Error: ..." by the dispatcher's own except clause
        prefix = f"Command {command} returned: "
        assert result.startswith(prefix), result
        assert not result[len(prefix):].startswith("Error:"), result
    else:
        # raised as OperationNotAllowedError (an AgentException): Agent.execute made it ActionErrorResult
        assert result.startswith("Action failed: '"), result
    assert "MeshGuard" in result and "execute:shell" in result, result


@pytest.mark.parametrize("gen", GENS, ids=IDS)
def test_governed_run(gen: Gen, policy_gateway: tuple[LiveGateway, str], tmp_path: Path) -> None:
    """Allowed write runs, denied shell never runs, the loop goes on after the refusal, the lifecycle
    command ends the run as AutoGPT means it to, and every decision is audited under one trace."""
    gw, token = policy_gateway
    cmd, path_arg, text_arg = gen.write
    script = [
        {"name": cmd, "args": {path_arg: "notes/today.txt", text_arg: "allowed write"}},
        {"name": "execute_shell", "args": {"command_line": f"touch {tmp_path / 'shell_ran'}"}},
        {"name": cmd, "args": {path_arg: "after_refusal.txt", text_arg: "the loop went on"}},
        {"name": cmd, "args": {path_arg: "../escaped.txt", text_arg: "out of the workspace"}},
    ]
    if gen.has_plugins:
        script.append({"name": "plugin_echo", "args": {"text": "plugin ran"}})
    script += [
        {"name": gen.lifecycle[0], "args": gen.lifecycle[1]},
        {"name": cmd, "args": {path_arg: "after_lifecycle.txt", text_arg: "must never be written"}},
    ]
    run = run_launcher(gen, tmp_path, gw, token, script)
    ws = tmp_path / gen.workspace

    assert run.proc.returncode == 0, run.output
    # detection: the launcher says which dispatcher it governs
    assert gen.target in run.output, run.output
    # allowed: the file exists with its content
    assert (ws / "notes" / "today.txt").read_text() == "allowed write", run.output
    # denied: the shell command never ran, and the agent was told so in its generation's form
    assert not (tmp_path / "shell_ran").exists(), run.output
    assert_refused(gen, run.result_of(1), "execute_shell")
    # the loop continued after the refusal
    assert (ws / "after_refusal.txt").read_text() == "the loop went on"
    # a path out of the workspace is judged as write:system and refused
    assert not (ws.parent / "escaped.txt").exists() and not (tmp_path.parent / "escaped.txt").exists()
    # a plugin command passes the dispatcher too (unknown to the map: execute:plugin_echo, default deny)
    assert not (tmp_path / "plugin_ran").exists(), run.output
    # the lifecycle command ended the run (SystemExit / AgentTerminated / AgentFinished re-raised)
    assert not (ws / "after_lifecycle.txt").exists(), run.output
    assert all(h["command"] != gen.lifecycle[0] or "refused" not in h["result"] for h in run.history)

    entries = audit(gw, run.trace)
    decided = [(e["action"], e["resource"], e["decision"]) for e in entries if e["decision"] != "recorded"]
    assert ("write:workspace", "notes/today.txt", "allow") in decided, entries
    assert ("execute:shell", f"touch {tmp_path / 'shell_ran'}", "deny") in decided, entries
    assert ("write:workspace", "after_refusal.txt", "allow") in decided, entries
    # judged where AutoGPT would really have written it
    where = os.path.realpath((tmp_path if gen.escapes_from_cwd else ws) / ".." / "escaped.txt")
    assert ("write:system", where, "deny") in decided, entries
    if gen.has_plugins:
        assert ("execute:plugin_echo", None, "deny") in decided, entries
    assert not any(d[1] == "after_lifecycle.txt" for d in decided), entries
    assert {e["trace_id"] for e in entries} == {run.trace}


DRIVER = textwrap.dedent(
    """
    import importlib, json, os, sys
    import meshguard_autogpt as mg

    owner_name, attr = sys.argv[1].rsplit(".", 1)

    def owner():
        try:
            return importlib.import_module(owner_name)
        except ImportError:  # a class: module.Class
            module, _, name = owner_name.rpartition(".")
            return getattr(importlib.import_module(module), name)

    if owner_name == "autogpt.app":
        importlib.import_module("autogpt.agent.agent")  # AutoGPT's own import order
    before = getattr(owner(), attr)
    gw = mg.MeshGuardGateway(os.environ["MESHGUARD_URL"], os.environ["MESHGUARD_TOKEN"])
    first = mg.patch_autogpt(gw)
    wrapper = getattr(owner(), attr)
    second = mg.patch_autogpt(gw)
    after_second = getattr(owner(), attr)
    undone = mg.unpatch_autogpt()
    print(json.dumps({
        "target": first.target, "refusal": first.refusal, "already_patched": second.already_patched,
        "patched": wrapper is not before, "same_after_second_patch": after_second is wrapper,
        "undone": undone, "restored": getattr(owner(), attr) is before,
        "undone_again": mg.unpatch_autogpt(),
    }))
    """
)


@pytest.mark.parametrize("gen", GENS, ids=IDS)
def test_patch_is_idempotent_and_reversible(gen: Gen, policy_gateway: tuple[LiveGateway, str], tmp_path: Path) -> None:
    gw, token = policy_gateway
    env = _run_env(gen, tmp_path, token, gw.url)
    (tmp_path / "driver.py").write_text(DRIVER)
    proc = subprocess.run([sys.executable, str(tmp_path / "driver.py"), gen.target], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["target"] == gen.target
    assert got["refusal"] == gen.refusal
    assert got["patched"], got  # the name AutoGPT's caller looks up now leads to the governed wrapper
    assert got["already_patched"] and got["same_after_second_patch"], got  # patched once, not wrapped twice
    assert got["undone"] and got["restored"], got  # the very original object is back
    assert got["undone_again"] is False, got


def test_v051_with_newer_forge_installed_still_gets_its_own_exception(
    policy_gateway: tuple[LiveGateway, str], tmp_path: Path
) -> None:
    """~v0.5.1 depends on autogpt-forge from git without a pinned revision, so a later forge (which has
    forge.utils.exceptions) can sit next to it. The refusal must be v0.5.1's own
    autogpt.utils.exceptions.OperationNotAllowedError, or Agent.execute does not catch it and the run dies."""
    gw, token = policy_gateway
    gen = next(g for g in GENS if g.standin == "v0_5_1")
    script = [
        {"name": "execute_shell", "args": {"command_line": f"touch {tmp_path / 'shell_ran'}"}},
        {"name": "write_file", "args": {"filename": "after.txt", "contents": "went on"}},
        {"name": "finish", "args": {"reason": "done"}},
    ]
    # autogpt from the v0.5.1 stand-in, forge from the classic one
    path = os.pathsep.join([str(STANDINS / "v0_5_1"), str(tmp_path / "site"), str(STANDINS), str(ROOT)])
    (tmp_path / "site").mkdir()
    os.symlink(STANDINS / "classic" / "forge", tmp_path / "site" / "forge")
    run = run_launcher(gen, tmp_path / "run", gw, token, script, pythonpath=path)
    assert run.proc.returncode == 0, run.output
    assert not (tmp_path / "shell_ran").exists()
    assert_refused(gen, run.result_of(0), "execute_shell")
    assert (tmp_path / "run" / NEW_WS / "after.txt").read_text() == "went on", run.output


@pytest.mark.parametrize("gen", GENS, ids=IDS)
def test_revoking_the_agent_mid_run_stops_every_generation(
    gen: Gen, start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """The 401 after a revocation must get through each generation's own exception handling (AutoGPT
    wraps commands in `except Exception`, v0.5+ runs them in an asyncio task) and stop the run with the
    launcher's distinct exit status, before the next command runs."""
    pol = tmp_path / "standin-policy.yaml"
    pol.write_text(POLICY)
    gw = start_gateway(pol)
    agent_id, token = gw.create_agent("standin-revoked", tags=["autogpt"])
    cmd, path_arg, text_arg = gen.write
    go = tmp_path / "go"
    script = [
        {"name": cmd, "args": {path_arg: "before.txt", text_arg: "ran before the revocation"}},
        {"name": cmd, "args": {path_arg: "after.txt", text_arg: "must never be written"}, "wait_for_file": str(go)},
        {"name": "execute_shell", "args": {"command_line": f"touch {tmp_path / 'shell_ran'}"}},
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "script.json").write_text(json.dumps(script))
    (run_dir / "component_config.json").write_text(json.dumps(CLASSIC_COMPONENTS))
    env = _run_env(gen, run_dir, token, gw.url)
    cmd_line = [sys.executable, str(LAUNCHER), "--continuous", "--continuous-limit", "20", "--skip-news", *gen.args]
    proc = subprocess.Popen(cmd_line, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        before = run_dir / gen.workspace / "before.txt"
        for _ in range(600):
            if before.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert before.exists(), "the first (allowed) write never happened"
        assert gw.admin("DELETE", f"/admin/agents/{agent_id}").status_code == 200
        go.touch()
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, output  # EXIT_REVOKED: stopped, not a crash and not a normal end
    assert not (run_dir / gen.workspace / "after.txt").exists(), output
    assert not (tmp_path / "shell_ran").exists(), output


@pytest.mark.parametrize("gen", GENS, ids=IDS)
def test_gateway_gone_mid_run_fails_closed_in_each_generations_form(
    gen: Gen, start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """With the gateway stopped mid-run the next commands are refused (never run), the agent is told in
    its generation's refusal form, and the loop is not broken by it."""
    pol = tmp_path / "standin-policy.yaml"
    pol.write_text(POLICY)
    gw = start_gateway(pol)
    _, token = gw.create_agent("standin-faults", tags=["autogpt"])
    cmd, path_arg, text_arg = gen.write
    go = tmp_path / "go"
    script = [
        {"name": cmd, "args": {path_arg: "before.txt", text_arg: "gateway up"}},
        {"name": cmd, "args": {path_arg: "during.txt", text_arg: "must never be written"}, "wait_for_file": str(go)},
        {"name": "execute_shell", "args": {"command_line": f"touch {tmp_path / 'shell_ran'}"}},
    ]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "script.json").write_text(json.dumps(script))
    (run_dir / "component_config.json").write_text(json.dumps(CLASSIC_COMPONENTS))
    env = _run_env(gen, run_dir, token, gw.url)
    env["MESHGUARD_TIMEOUT"] = "2"
    cmd_line = [sys.executable, str(LAUNCHER), "--continuous", "--continuous-limit", "20", "--skip-news", *gen.args]
    proc = subprocess.Popen(cmd_line, cwd=run_dir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        before = run_dir / gen.workspace / "before.txt"
        for _ in range(600):
            if before.exists() or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert before.exists(), "the first (allowed) write never happened"
        gw.stop()
        go.touch()
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    assert not (run_dir / gen.workspace / "during.txt").exists(), output
    assert not (tmp_path / "shell_ran").exists(), output
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    assert [h["command"] for h in history] == [cmd, cmd, "execute_shell"], output
    for h in history[1:]:
        result = str(h["result"])
        if gen.refusal == "string":
            assert result.startswith(f"Command {h['command']} returned: MeshGuard"), result
        else:
            assert result.startswith("Action failed: 'MeshGuard"), result
        assert "gateway" in result.lower(), result  # the agent learns why: governance is unreachable


def test_v05_waiting_for_the_gateway_does_not_block_autogpts_event_loop(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    """v0.5+ dispatchers are coroutines on AutoGPT's event loop: while the launcher waits for a human
    approval (or a rate limit), the loop's other tasks must go on running (review L3)."""
    pol = tmp_path / "approval.yaml"
    pol.write_text("name: approval\nappliesTo:\n  tags: [autogpt]\ndefaultEffect: deny\nrules: []\n"
                   "humanInTheLoop:\n  requireApproval: [\"execute:pay_invoice\"]\n")  # fmt: skip
    gw = start_gateway(pol)
    _, token = gw.create_agent("standin-async", tags=["autogpt"])
    code = textwrap.dedent("""
        import asyncio, sys, types
        import meshguard_autogpt as mg
        import autogpt.agents.agent as agent_mod
        from autogpt.models.command_registry import CommandRegistry

        gw = mg.MeshGuardGateway(sys.argv[1], sys.argv[2], approval_timeout=3, verbose=False)
        info = mg.patch_autogpt(gw, {})
        agent = types.SimpleNamespace(command_registry=CommandRegistry(), _prompt_scratchpad=None)

        async def main():
            ticks = 0
            done = False

            async def other_task():  # e.g. AutoGPT's UI / server, or another agent's step
                nonlocal ticks
                while not done:
                    ticks += 1
                    await asyncio.sleep(0.01)

            task = asyncio.create_task(other_task())
            await asyncio.sleep(0)
            before = ticks
            try:
                await agent_mod.execute_command("pay_invoice", {"id": "inv-1"}, agent)
                outcome = "ran"
            except Exception as exc:
                outcome = type(exc).__name__
            during = ticks - before
            done = True
            await task
            print(info.generation, outcome, during)

        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", code, gw.url, token], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": _pythonpath(STANDINS / "v0_5_0")})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    generation, outcome, during = proc.stdout.split()
    assert (generation, outcome) == ("0.5.0", "OperationNotAllowedError")  # not approved: refused
    assert int(during) > 20, proc.stdout  # the other task kept running during the 3 s wait
