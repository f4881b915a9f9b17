"""The seed document's governed command functions against real AutoGPT 0.2.2 and a real gateway.

Each scenario runs in AutoGPT's own environment (.venv-autogpt) through tests/seed_scenarios.py;
the audit trail is read back from the gateway.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.autogpt_run import AUTOGPT_PYTHON, ROOT, autogpt_available
from tests.conftest import POLICIES, LiveGateway

SCENARIOS = Path(__file__).with_name("seed_scenarios.py")
pytestmark = [
    pytest.mark.autogpt,
    pytest.mark.skipif(not autogpt_available(), reason="needs .venv-autogpt with AutoGPT 0.2.2 (scripts/setup.sh)"),
]


def autogpt_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TMPDIR")}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), OPENAI_API_KEY="sk-offline-test", MEMORY_BACKEND="no_memory",
               EXECUTE_LOCAL_COMMANDS="True",  # so that a shell command WOULD run if MeshGuard let it
               MESHGUARD_TIMEOUT="15", **extra)  # fmt: skip
    return env


def run_scenario(run_dir: Path, gw: LiveGateway, token: str, *args: str) -> dict[str, Any]:
    run_dir.mkdir(parents=True, exist_ok=True)
    env = autogpt_env(run_dir / "home", MESHGUARD_URL=gw.url, MESHGUARD_TOKEN=token)
    result = subprocess.run([str(AUTOGPT_PYTHON), str(SCENARIOS), *args], cwd=run_dir, env=env,
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def checks(gw: LiveGateway, trace_id: str) -> list[tuple[str, str | None, str]]:
    resp = gw.admin("GET", "/admin/audit", params={"trace": trace_id, "order": "asc", "limit": 100})
    assert resp.status_code == 200, resp.text
    return [(e["action"], e["resource"], e["decision"]) for e in resp.json()["entries"]]


def test_seed_dispatcher_command_calling_a_governed_module_function_is_checked_once(
    start_gateway: Callable[..., LiveGateway], tmp_path: Path
) -> None:
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")

    out = run_scenario(tmp_path / "run", gw, token, "nested")

    assert out["generation"] == "0.2-0.4.0"
    assert out["written"] == "File written to successfully."
    assert (tmp_path / "run" / "auto_gpt_workspace" / "notes.txt").read_text() == "hi"
    # patch_autogpt() put the seed's functions into AutoGPT's modules once AutoGPT had imported them ...
    assert out["governed_in_module"] is True
    assert "autogpt.commands.file_operations.read_file" in out["installed"]
    assert "autogpt.commands.file_operations.write_file" in out["installed"]
    # ... while the registry keeps AutoGPT's own command objects (the dispatcher governs those)
    assert out["registered_original"] is True and out["later_registry_ok"] is True
    # write_to_file read file_logger.txt through the governed read_file: not a second check. The
    # direct call of the module function afterwards is checked on its own.
    assert out["read_directly"] == "hi"
    assert checks(gw, out["trace_id"]) == [
        ("write:workspace", "notes.txt", "allow"),
        ("read:workspace", "notes.txt", "allow"),
    ]
    assert out["restored"] is True  # unpatch_autogpt() undid the module functions too



@pytest.mark.parametrize("mode", ["enforce", "audit"])
def test_seed_execute_shell_is_blocked_and_never_runs(start_gateway: Callable[..., LiveGateway], tmp_path: Path,
                                                      mode: str) -> None:  # fmt: skip
    """The seed's execute_shell and AutoGPT's own module function after patch_autogpt(): the seed's
    blocked dict, and the command never ran. Audit mode is the control: there the same command runs."""
    gw = start_gateway(POLICIES / "autogpt.yaml", mode=mode)
    _, token = gw.create_agent("autogpt-agent")
    marker = tmp_path / "shell-ran"

    out = run_scenario(tmp_path / "run", gw, token, "shell", str(marker))

    command = f"touch {marker}"
    assert checks(gw, out["trace_id"]) == [("execute:shell", command, "deny")] * 2
    if mode == "audit":
        assert marker.exists()
        return
    assert not marker.exists()
    for result in (out["seed"], out["module"]):
        assert result["status"] == "blocked" and result["action"] == "execute:shell"
        assert "denied" in result["reason"] and result["decision"] == "deny"


def test_seed_patch_autogpt_in_autogpt_as_installed(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """AutoGPT 0.2.2's modules import spacy and openapi_python_client at module level: with AutoGPT's
    environment as scripts/setup.sh installs it, patch_autogpt() and the launcher govern it (no stand-ins)."""
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")

    out = run_scenario(tmp_path / "run", gw, token, "patch")

    assert out == {"generation": "0.2-0.4.0", "target": "autogpt.agent.agent.execute_command",
                   "version": "agpt 0.2.2", "dispatcher_governed": True, "spacy_is_real": True}  # fmt: skip


def test_seed_patch_autogpt_names_a_missing_dependency(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """Without spacy (how requirements/autogpt-0.2.2.txt used to install AutoGPT), the launcher refuses to
    start AutoGPT ungoverned and says which of AutoGPT's dependencies to install."""
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")

    out = run_scenario(tmp_path / "run", gw, token, "patch_without", "spacy")

    assert out["error"] is not None
    assert "AutoGPT's own dependency 'spacy' is not installed" in out["error"]
    assert "pip install spacy" in out["error"] and "Refusing to start AutoGPT ungoverned" in out["error"]


def test_seed_main_runs_autogpt_governed(start_gateway: Callable[..., LiveGateway], tmp_path: Path) -> None:
    """`python meshguard_autogpt.py --help` with MESHGUARD_TOKEN set: the seed's __main__ flow reaches
    AutoGPT's own command line, governed (its --help answers without an LLM or network)."""
    gw = start_gateway(POLICIES / "autogpt.yaml")
    _, token = gw.create_agent("autogpt-agent")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    env = autogpt_env(run_dir / "home", MESHGUARD_URL=gw.url, MESHGUARD_TOKEN=token)

    result = subprocess.run([str(AUTOGPT_PYTHON), str(ROOT / "meshguard_autogpt.py"), "--help"], cwd=run_dir, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=180)  # fmt: skip

    assert result.returncode == 0, result.stdout + result.stderr
    assert "governing agpt 0.2.2 (autogpt.agent.agent.execute_command)" in result.stdout
    assert "--continuous" in result.stdout  # AutoGPT's own options, from its click command
    assert "PatchError" not in result.stdout + result.stderr
